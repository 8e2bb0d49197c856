"""Writing a Llama model dir as GGUF, the way llama.cpp's convert_hf_to_gguf.py does.

What we train then runs in llama.cpp and what builds on it (Ollama), and transformers reads it
back (`gguf.load_back`), which is how the tests check a round trip:

    export("runs/.../export", "model.f16.gguf")            # f16 weights, f32 norms
    export("runs/.../export", "model.q8_0.gguf", "q8_0")   # 8-bit blocks of 32

Only LlamaForCausalLM is written (every preset is one); the tokenizer must be a
byte-level BPE, written as llama.cpp's `gpt2` tokenizer model.
"""

from __future__ import annotations

import json
from pathlib import Path

from tinyreason.model.gguf import GGUFError, check, load_back
from tinyreason.model.plain_jinja import plain_template
from tinyreason.model.templates import render_kwargs

OUTTYPES = ("f16", "q8_0", "f32")
EXPORTABLE = {"llama": "LlamaForCausalLM"}  # transformers model_type -> the class it names

def export(model_dir: str | Path, out_file: str | Path, outtype: str = "f16") -> Path:
    """Write `model_dir` (a Llama HF model dir) as one GGUF file; returns its path.

    Written to `<out_file>.tmp` and renamed, so a crash never leaves a short file.
    """
    # on use: importing gguf costs ~2 s (numpy, yaml, requests) on 2 cores, torch and transformers more
    import gguf
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir, out_file = Path(model_dir), Path(out_file)
    if outtype not in OUTTYPES:
        raise GGUFError(f"{out_file}: outtype {outtype!r} is not one of {', '.join(OUTTYPES)}; fix: pick one of them")
    config = _exportable_config(model_dir)
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    if len(tok) > config.vocab_size:
        raise GGUFError(f"{model_dir}: the tokenizer has {len(tok)} tokens but the model only {config.vocab_size} "
                        "embeddings; fix: resize the embeddings (model.resize_token_embeddings) and save again")
    pre = _pre_tokenizer(model_dir, tok)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), use_safetensors=True, dtype=torch.float32)
    ftype, qtype = {"f32": (gguf.LlamaFileType.ALL_F32, gguf.GGMLQuantizationType.F32),
                    "f16": (gguf.LlamaFileType.MOSTLY_F16, gguf.GGMLQuantizationType.F16),
                    "q8_0": (gguf.LlamaFileType.MOSTLY_Q8_0, gguf.GGMLQuantizationType.Q8_0)}[outtype]
    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_name(out_file.name + ".tmp")
    writer = gguf.GGUFWriter(tmp, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    _write_hparams(writer, config, model_dir.name, ftype)
    _write_vocab(writer, tok, model_dir, config.vocab_size, pre)
    _write_tensors(writer, model.state_dict(), config, qtype, model_dir)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    check(tmp)  # reads the header back: a writer bug fails here, not in llama.cpp
    tmp.replace(out_file)
    return out_file


def _exportable_config(model_dir: Path):
    # on use: config checks import this module; gguf, torch and transformers cost seconds
    from transformers import AutoConfig

    if not (model_dir / "config.json").is_file():
        raise GGUFError(f"{model_dir}: no config.json, so not a Hugging Face model dir; "
                        "fix: export a dir written by save_pretrained (a stage's export)")
    config = AutoConfig.from_pretrained(str(model_dir))
    supported = ", ".join(f"{cls} ({kind})" for kind, cls in EXPORTABLE.items())
    if config.model_type not in EXPORTABLE:
        name = (config.architectures or [config.model_type])[0]
        raise GGUFError(f"{model_dir}: architecture {name} cannot be written as GGUF here; "
                        f"fix: export a model of a supported architecture: {supported}")
    rope = getattr(config, "rope_parameters", None) or {}
    if rope.get("rope_type", "default") != "default":
        raise GGUFError(f"{model_dir}: rope_type {rope['rope_type']!r} is not written (llama.cpp needs its "
                        "scaling tensors); fix: export a model with default RoPE")
    if config.attention_bias or config.mlp_bias:
        raise GGUFError(f"{model_dir}: attention_bias/mlp_bias Llamas are not written (transformers' GGUF "
                        "reader drops the flags); fix: export a model without biases")
    return config


def _pre_tokenizer(model_dir: Path, tok) -> str:
    """llama.cpp's name for the way the tokenizer splits text before BPE (`tokenizer.ggml.pre`)."""
    spec = json.loads(tok.backend_tokenizer.to_str())
    pre = spec.get("pre_tokenizer") or {}

    def byte_level(step: dict) -> bool:  # GPT-2's regex, no prefix space
        return step.get("type") == "ByteLevel" and step.get("use_regex", True) and not step.get("add_prefix_space")

    if spec["model"]["type"] == "BPE" and not spec.get("normalizer"):
        if byte_level(pre):
            return "gpt-2"
        steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else []
        if len(steps) == 2 and steps[0] == {"type": "Digits", "individual_digits": True} and byte_level(steps[1]):
            return "smollm"  # SmolLM's hub tokenizer: digits one by one, then GPT-2's split
    raise GGUFError(f"{model_dir}: the tokenizer is not a byte-level BPE that llama.cpp names "
                    f"(model {spec['model']['type']}, pre-tokenizer {pre.get('type')}); "
                    "fix: export a model with a byte-level BPE tokenizer (train_bpe, or SmolLM2's)")


def _write_hparams(writer, config, name: str, ftype) -> None:
    # on use: config checks import this module; gguf, torch and transformers cost seconds
    import gguf

    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    writer.add_name(name)
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(config.rope_parameters["rope_theta"])
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(ftype)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _write_vocab(writer, tok, model_dir: Path, n_vocab: int, pre: str) -> None:
    """Tokens in the byte-level alphabet, their types, merges, special ids, chat template."""
    # on use: config checks import this module; gguf, torch and transformers cost seconds
    import gguf

    by_id = {i: token for token, i in tok.get_vocab().items()}
    added = tok.added_tokens_decoder
    tokens, types = [], []
    for i in range(n_vocab):
        if i not in by_id:  # embedding rows beyond the tokenizer: llama.cpp names them [PADi]
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        tokens.append(by_id[i])
        if i in added:
            types.append(gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=n_vocab)  # merges, bos/eos/pad/unk ids
    special.chat_template = plain_template(tok.chat_template) if tok.chat_template else None
    special.add_to_gguf(writer, quiet=True)


def llama_cpp_rows(weights, n_head: int, n_head_kv: int):
    """llama.cpp's q/k row order: transformers rotates the two halves of each head, llama.cpp
    adjacent pairs; reordering the rows gives the same rotation (transformers' GGUF reader
    undoes it in LlamaTensorProcessor)."""
    if n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _write_tensors(writer, state_dict: dict, config, qtype, model_dir: Path) -> None:
    # on use: config checks import this module; gguf, torch and transformers cost seconds
    import gguf

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    for hf_name, tensor in state_dict.items():
        if hf_name == "lm_head.weight" and config.tie_word_embeddings:
            continue  # tied: llama.cpp reads the output projection from token_embd
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise GGUFError(f"{model_dir}: weight {hf_name} has no llama GGUF tensor name; "
                            "fix: export a plain LlamaForCausalLM (merge adapters first)")
        data = tensor.detach().float().numpy()
        if hf_name.endswith("self_attn.q_proj.weight"):
            data = llama_cpp_rows(data, heads, heads)
        elif hf_name.endswith("self_attn.k_proj.weight"):
            data = llama_cpp_rows(data, heads, kv_heads)
        kind = qtype
        if data.ndim <= 1 or name.endswith("_norm.weight"):
            kind = gguf.GGMLQuantizationType.F32  # as llama.cpp: norms are tiny and precision-critical
        elif kind == gguf.GGMLQuantizationType.Q8_0 and data.shape[-1] % 32:
            kind = gguf.GGMLQuantizationType.F16  # llama.cpp's fallback when a row is not whole 32-blocks
        writer.add_tensor(name, gguf.quants.quantize(data, kind), raw_dtype=kind)


# ---------------------------------------------------------------- export, then check by loading back


CHECK_QUESTIONS = ("What is 7 plus 5?", "Tom has 3 shells and finds 4 more. How many shells does he have?",
                   "Say hello.", "What comes after Monday?", "Is 9 more than 4?")
CHECK_NEW_TOKENS = 16
# q8_0 rounds each block of 32 weights to 8 bits, so its logits move in proportion to their scale:
# the bound is a share of the safetensors model's logit range (max - min over the vocabulary, the
# widest position). Measured: 1.1e-2 against a range of a few units on the micro curriculum's model,
# and 5.3e-2 against 6.7 (0.8%) once its data taught sharper arithmetic; an absolute 5e-2 had
# failed that export although every greedy token agreed. A broken layout moves logits by ~the range
Q8_0_TOLERANCE = 2e-2


def export_checked(model_dir: str | Path, out_dir: str | Path, outtypes=("f16", "q8_0"), name: str | None = None,
                   questions=CHECK_QUESTIONS) -> list[dict]:
    """Write `model_dir` as one GGUF per outtype into out_dir, each read back through transformers
    (`gguf_file=`) and compared with the safetensors model on chat prompts rendered by its own
    template: f16 and f32 must give the same greedy tokens, q8_0 logits within Q8_0_TOLERANCE of their
    range.
    A file that fails its check is removed and the error names it. Returns one record per file."""
    # on use: torch and transformers cost seconds, and config checks import this module
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    _exportable_config(model_dir)  # an architecture we cannot write fails before any model loads
    name = name or (model_dir.parent.name if model_dir.name == "model" else model_dir.name)
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), use_safetensors=True, dtype=torch.float32).eval()
    prompts = [tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, tokenize=False,
                                       **render_kwargs(tok.chat_template)) if tok.chat_template else q
               for q in questions]
    want = [_greedy_and_logits(model, tok, p) for p in prompts]
    spread = max((w[1].max(-1).values - w[1].min(-1).values).max().item() for w in want)
    records = []
    for outtype in outtypes:
        path = export(model_dir, out_dir / f"{name}.{outtype}.gguf", outtype)
        back, back_tok = load_back(path)
        got = [_greedy_and_logits(back, back_tok, p) for p in prompts]
        same = [a[0] == b[0] for a, b in zip(want, got)]
        diff = max((a[1] - b[1]).abs().max().item() for a, b in zip(want, got))
        record = {"file": str(path), "outtype": outtype, "bytes": path.stat().st_size, "prompts": len(prompts),
                  "same_greedy_tokens": sum(same), "new_tokens": CHECK_NEW_TOKENS, "max_abs_logit_diff": diff,
                  "logit_range": spread}
        exact = outtype in ("f16", "f32")
        if (exact and not all(same)) or (not exact and diff > Q8_0_TOLERANCE * spread):
            path.unlink()
            what = (f"greedy tokens differ on {len(same) - sum(same)} of {len(same)} prompts" if exact
                    else f"logits differ by {diff:.3g} (> {Q8_0_TOLERANCE:.0%} of their range {spread:.3g})")
            raise GGUFError(f"{path}: read back through transformers, the {outtype} file's {what} from the "
                            f"safetensors model in {model_dir}; fix: report it with the model dir (the file was removed)")
        records.append(record)
    return records


def _greedy_and_logits(model, tok, prompt: str):
    # on use: see export_checked
    import torch

    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(ids).logits[0]
        out = model.generate(ids, max_new_tokens=CHECK_NEW_TOKENS, do_sample=False, pad_token_id=tok.pad_token_id,
                             eos_token_id=tok.eos_token_id)  # the same stop for both, whatever else each config lists
    return out[0, ids.shape[1]:].tolist(), logits
