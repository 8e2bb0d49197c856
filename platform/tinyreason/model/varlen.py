"""Padding-free attention without the flash-attn package: `model.attn_implementation: sdpa_varlen`.

A padding-free micro-batch is one row holding several packed examples back to back, with
position ids that restart at each example and the examples' boundaries as cumulative
lengths (`cu_seq_lens_q`, computed by TRL's padding-free collator). Attention has to stay
inside each example, and the point of the layout is to compute nothing else:

- on CUDA in bf16/fp16, PyTorch's own variable-length flash-attention kernel
  (`torch.nn.attention.varlen.varlen_attn`, torch >= 2.10) reads the boundaries directly,
  as flash-attn's varlen path does: sum(L_i^2) work, no padding, no mask in memory;
- elsewhere (CPU, fp32, an older torch) each example goes through SDPA alone, causal: the
  same sum(L_i^2), one call per example. Packed rows with a block-causal mask instead cost
  B * L^2 over whole bins, and joining them for plain SDPA costs (B*L)^2.

Every other batch (padded evaluation, generation with a KV cache, several rows) is plain
SDPA with transformers' own mask. Each process registers the name before it builds a model
(`model/presets.py`); exported models do not record it, so they load anywhere as SDPA.
"""

from __future__ import annotations

import functools
import inspect

NAME = "sdpa_varlen"


def is_varlen(attn_implementation: str) -> bool:
    """Whether this attention kernel takes a padding-free batch at its cost: ours, or flash
    attention by transformers' own test (which also knows hub kernels such as
    `kernels-community/flash-attn3`)."""
    from transformers.utils.generic import is_flash_attention_requested  # on use: presets (hence the config layer) import this module

    return attn_implementation == NAME or is_flash_attention_requested(
        requested_attention_implementation=attn_implementation)


def register() -> None:
    """Make `attn_implementation="sdpa_varlen"` known to transformers in this process."""
    from transformers import AttentionInterface, AttentionMaskInterface  # on use: presets (hence the config layer) import this module

    AttentionInterface.register(NAME, attention_forward)
    AttentionMaskInterface.register(NAME, attention_mask)


def attention_mask(batch_size: int, q_length: int, kv_length: int, attention_mask=None, **kwargs):
    """No mask for one unpadded row without a cache (its examples' boundaries travel with the
    batch, or are read from position ids); SDPA's mask for everything else. Building SDPA's
    mask for a joined 16 x 2048-token row would take a 32k x 32k matrix."""
    if batch_size == 1 and attention_mask is None and q_length == kv_length:
        return None
    from transformers.masking_utils import sdpa_mask  # on use: presets (hence the config layer) import this module

    return sdpa_mask(batch_size=batch_size, q_length=q_length, kv_length=kv_length, attention_mask=attention_mask,
                     **kwargs)


def attention_forward(module, query, key, value, attention_mask, dropout: float = 0.0, scaling: float | None = None,
                      is_causal: bool | None = None, **kwargs):
    """transformers' attention signature: query [B, H, T, D], key/value [B, Hkv, T, D] in,
    [B, T, H, D] out. Varlen for a joined row of examples, SDPA otherwise."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward  # on use: presets (hence the config layer) import this module

    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    one_row = attention_mask is None and query.shape[0] == 1 and query.shape[2] == key.shape[2]
    cu = kwargs.get("cu_seq_lens_q")
    if one_row and cu is None:
        cu = boundaries(kwargs.get("position_ids"))
    if not (one_row and causal and cu is not None):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    if dropout or kwargs.get("sliding_window") or kwargs.get("softcap"):
        raise ValueError(f"attn_implementation={NAME} computes plain causal attention: no attention dropout, "
                         "sliding window or softcap; use flash_attention_2 or sdpa for this model")
    q, k, v = (x[0].transpose(0, 1) for x in (query, key, value))  # [T, H, D]
    out = varlen_causal(q, k, v, cu.to(q.device, non_blocking=True), scaling, kwargs.get("max_length_q"))
    return out.unsqueeze(0), None


def boundaries(position_ids):
    """Cumulative example lengths [0, L_1, L_1+L_2, ..., T] of one packed row, from position
    ids that restart at 0 for each example; None for a single example or no position ids."""
    if position_ids is None or position_ids.shape[0] != 1 or int(position_ids[0, 0]) != 0:
        return None
    import torch  # on use: presets (hence the config layer) import this module

    starts = (position_ids[0] == 0).nonzero().flatten()
    if starts.numel() == 1:
        return None  # one example: SDPA's causal kernel already skips nothing
    end = torch.tensor([position_ids.shape[1]], device=starts.device)
    return torch.cat([starts, end]).to(torch.int32)


def varlen_causal(q, k, v, cu, scale: float | None = None, max_len: int | None = None):
    """Causal attention inside each example of a packed sequence: q [T, H, D], k/v [T, Hkv, D],
    cu the cumulative lengths [N+1]; returns [T, H, D]."""
    import torch  # on use: presets (hence the config layer) import this module

    kernel = _torch_varlen()
    if q.is_cuda and kernel is not None and q.dtype in (torch.bfloat16, torch.float16):
        return kernel(q, k, v, cu, int(max_len or cu.diff().max()), scale)
    return _per_example(q, k, v, cu, scale)


def _per_example(q, k, v, cu, scale):
    import torch  # on use: presets (hence the config layer) import this module
    import torch.nn.functional as F  # on use, as torch above

    gqa = q.shape[1] != k.shape[1]
    outs = []
    for a, b in zip(cu[:-1].tolist(), cu[1:].tolist()):
        qs, ks, vs = (x[a:b].transpose(0, 1).unsqueeze(0) for x in (q, k, v))  # [1, H, L, D]
        outs.append(F.scaled_dot_product_attention(qs, ks, vs, is_causal=True, scale=scale, enable_gqa=gqa)[0])
    return torch.cat(outs, dim=1).transpose(0, 1)


@functools.cache
def _torch_varlen():
    """torch's varlen flash attention as f(q, k, v, cu, max_len, scale), or None where this
    torch lacks it. Its keywords moved between releases: causality is `is_causal=True` in 2.10
    and `window_size=(-1, 0)` from 2.11, which also takes `scale`; GQA is native from 2.12
    (`enable_gqa`). Where a keyword is missing the same thing is done outside the kernel."""
    try:
        from torch.nn.attention.varlen import varlen_attn  # torch >= 2.10 only: probed, not required
    except ImportError:
        return None
    params = inspect.signature(varlen_attn).parameters
    if "window_size" in params:
        causal = {"window_size": (-1, 0)}
    elif "is_causal" in params:
        causal = {"is_causal": True}
    else:
        return None
    native_gqa, takes_scale = "enable_gqa" in params, "scale" in params

    def kernel(q, k, v, cu, max_len, scale):
        groups = q.shape[1] // k.shape[1]
        extra = dict(causal)
        if takes_scale:
            extra["scale"] = scale
        elif scale is not None:  # the kernel's own scale is 1/sqrt(D)
            q = q * (scale * q.shape[-1] ** 0.5)
        if groups > 1 and native_gqa:
            extra["enable_gqa"] = True
        elif groups > 1:  # query head h reads key/value head h // groups, as transformers' repeat_kv
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        return varlen_attn(q, k, v, cu, cu, max_len, max_len, **extra)

    return kernel
