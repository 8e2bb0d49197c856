"""Tiny random models of the small-model families tinyreason trains, built locally: each a real
architecture (LlamaForCausalLM, Qwen3ForCausalLM, Gemma3ForCausalLM) at hidden size 32 with 2
layers, a small byte-level BPE carrying the family's special tokens with its bos/eos/pad roles,
its generation_config as the hub model ships it (in these ids), and its REAL chat template
(tests/fixtures/templates/). No weights are downloaded: the point is the tokens and templates.

    make_family("qwen3", tmp_path / "qwen3")   # -> a model dir from_pretrained loads
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parent / "fixtures" / "templates"


@dataclass(frozen=True)
class Spec:
    template: str
    arch: str  # llama | qwen3 | gemma3
    special: tuple[str, ...]  # special added tokens, in id order
    plain: tuple[str, ...] = ()  # added tokens that are not special (Qwen3's <think>, <tool_call>)
    roles: dict = field(default_factory=dict)  # bos/eos/pad/unk token strings
    generation_eos: tuple[str, ...] = ()  # generation_config.eos_token_id, as the hub model ships it
    bos_prefix: bool = False  # the tokenizer puts bos before every text (Llama-3, Gemma)
    extra_rows: int = 0  # embedding rows past the tokenizer (Qwen pads its vocab to a multiple of 128)
    end_of_turn: str = ""
    opener: str = ""


FAMILIES = {
    "smollm2": Spec("smollm2.jinja", "llama", ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<repo_name>"),
                    roles={"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "pad_token": "<|im_end|>",
                           "unk_token": "<|endoftext|>"},
                    generation_eos=("<|im_end|>",), end_of_turn="<|im_end|>", opener="<|im_start|>assistant\n"),
    "qwen3": Spec("qwen3.jinja", "qwen3", ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>",
                                           "<|vision_start|>"),
                  plain=("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>"),
                  roles={"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
                  generation_eos=("<|im_end|>", "<|endoftext|>"), extra_rows=6, end_of_turn="<|im_end|>",
                  opener="<|im_start|>assistant\n"),
    "llama3": Spec("llama3_2.jinja", "llama", ("<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                                               "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>",
                                               "<|reserved_special_token_2|>", "<|start_header_id|>",
                                               "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"),
                   roles={"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
                   generation_eos=("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"), bos_prefix=True,
                   end_of_turn="<|eot_id|>", opener="<|start_header_id|>assistant<|end_header_id|>\n\n"),
    "gemma3": Spec("gemma3.jinja", "gemma3", ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>",
                                              "<end_of_turn>", "<start_of_image>", "<end_of_image>"),
                   roles={"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>"},
                   generation_eos=("<eos>", "<end_of_turn>"), bos_prefix=True, end_of_turn="<end_of_turn>",
                   opener="<start_of_turn>model\n"),
}

WORDS = ("the a one two three four five six seven eight nine ten plus minus is are has had more less apples "
         "shells cats think step answer so total first then next left right what how many Tom Mia Sam Ana "
         "each gives finds loses count sum add take away equals because therefore check again").split()


def corpus(n: int = 600, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        words = rng.choices(WORDS, k=rng.randint(5, 14))
        lines.append(" ".join(words) + f" {rng.randint(0, 99)}.\n" + ("Q: A:" if i % 7 == 0 else ""))
    return lines


def make_tokenizer(name: str, vocab_size: int = 420):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    spec = FAMILIES[name]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(corpus(), trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(spec.special),
                                                          initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                          show_progress=False))
    if spec.bos_prefix:
        bos = spec.roles["bos_token"]
        bpe.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                           special_tokens=[(bos, bpe.token_to_id(bos))])
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, **spec.roles)
    tok.add_tokens(list(spec.plain))  # Qwen3's <think>/</think>: added tokens, not special
    tok.chat_template = (TEMPLATES / spec.template).read_text(encoding="utf-8")
    return tok


def make_family(name: str, out_dir: str | Path, seed: int = 0) -> Path:
    """A model dir: config + safetensors weights + tokenizer + chat template + generation_config."""
    import torch
    from transformers import GenerationConfig, Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM
    from transformers import Qwen3Config, Qwen3ForCausalLM

    spec, out_dir = FAMILIES[name], Path(out_dir)
    tok = make_tokenizer(name)
    ids = {r: tok.convert_tokens_to_ids(t) for r, t in spec.roles.items()}
    shape = dict(vocab_size=len(tok) + spec.extra_rows, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=True,
                 bos_token_id=ids.get("bos_token"), eos_token_id=ids.get("eos_token"),
                 pad_token_id=ids.get("pad_token"))
    torch.manual_seed(seed)
    if spec.arch == "qwen3":
        model = Qwen3ForCausalLM(Qwen3Config(head_dim=8, **shape))
    elif spec.arch == "gemma3":
        model = Gemma3ForCausalLM(Gemma3TextConfig(head_dim=8, sliding_window=64, query_pre_attn_scalar=8, **shape))
    else:
        model = LlamaForCausalLM(LlamaConfig(rope_theta=10000.0, **shape))
    eos = [tok.convert_tokens_to_ids(t) for t in spec.generation_eos]
    model.generation_config = GenerationConfig(bos_token_id=ids.get("bos_token"), pad_token_id=ids.get("pad_token"),
                                               eos_token_id=eos[0] if len(eos) == 1 else eos)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir


# --------------------------------------------------------------------------- rows


def chat_rows(n: int, seed: int = 0, think: bool = False) -> list[dict]:
    """Multi-turn chat rows, some with a system turn; with `think`, the last reply opens with a
    well-formed <think> block (the reasoning schema)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        msgs = [{"role": "system", "content": "Answer briefly."}] if i % 3 == 0 else []
        if i % 2 == 0:
            msgs += [{"role": "user", "content": f"Hi, I am {rng.choice(['Tom', 'Mia'])}."},
                     {"role": "assistant", "content": "Hello! How can I help?"}]
        reply = f"{a} plus {b} is {a + b}."
        if think:
            reply = f"<think>\nI add {a} and {b}: {a} plus {b} is {a + b}.\n</think>\n{reply}"
        msgs += [{"role": "user", "content": f"What is {a} plus {b}?"}, {"role": "assistant", "content": reply}]
        rows.append({"messages": msgs})
    return rows


def preference_rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        prompt = [{"role": "user", "content": f"What is {a} plus {b}?"}]
        good = f"<think>\n{a} plus {b} is {a + b}.\n</think>\nThe answer is {a + b}."
        bad = f"<think>\n{a} plus {b} is {a + b + 1}.\n</think>\nThe answer is {a + b + 1}."
        rows.append({"prompt": prompt, "chosen": [{"role": "assistant", "content": good}],
                     "rejected": [{"role": "assistant", "content": bad}]})
    return rows


def expected_replies(name: str, messages: list[dict]) -> list[str]:
    """What each family's own template renders for each assistant turn, written out by hand from
    its rules: Llama and Gemma trim the reply; Qwen3 re-renders the think block of turns after
    the last question as `<think>\\n...\\n</think>\\n\\n` and drops it from earlier ones."""
    spec, out = FAMILIES[name], []
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        text = m["content"].strip() if name in ("llama3", "gemma3") else m["content"]
        if name == "qwen3":
            reasoning, answer = "", text
            if "</think>" in text:
                reasoning = text.split("</think>")[0].rstrip("\n").split("<think>")[-1].lstrip("\n")
                answer = text.split("</think>")[-1].lstrip("\n")
            text = f"<think>\n{reasoning.strip(chr(10))}\n</think>\n\n{answer}" if i > last_user else answer
        out.append(text + spec.end_of_turn)
    return out

