"""`sdpa_varlen` on CUDA: PyTorch's varlen flash-attention kernel must agree with SDPA run on
each example alone, forward and backward, in bf16 with grouped KV heads (SmolLM2's 9 query
heads over 3 KV heads). Needs only torch and this module."""

import pytest
import torch

from tinyreason.model import varlen


def test_the_cuda_kernel_matches_per_example_sdpa():
    if varlen._torch_varlen() is None:
        pytest.skip("this torch has no torch.nn.attention.varlen")
    torch.manual_seed(0)
    lengths = [700, 1, 300, 1047]  # one 2048-token bin, a one-token example included
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32, device="cuda")
    T = sum(lengths)
    # laid out as attention_forward hands them over: [H, T, D] memory seen as [T, H, D]
    q, k, v = (torch.randn(heads, T, 64, device="cuda", dtype=torch.bfloat16).transpose(0, 1).requires_grad_()
               for heads in (9, 3, 3))
    out = varlen.varlen_causal(q, k, v, cu, 0.125, max(lengths))
    ref = varlen._per_example(q, k, v, cu, 0.125)
    torch.testing.assert_close(out, ref, atol=2e-2, rtol=2e-2)
    grads = torch.autograd.grad(out.float().square().sum(), (q, k, v))
    ref_grads = torch.autograd.grad(ref.float().square().sum(), (q, k, v))
    for name, g, r in zip("qkv", grads, ref_grads):
        torch.testing.assert_close(g, r, atol=5e-2, rtol=5e-2, msg=f"d{name}")
