"""Each family's own chat template, made trainable (model/templates.py): the real templates of
SmolLM2-Instruct, Qwen3, Llama-3.2-Instruct and Gemma-3-it on tiny tokenizers carrying their
special tokens. Nothing is added where the family has it; loss masks cover exactly the
assistant spans the native template renders; the system prompt is the family's own unless set;
exports render in plain Jinja2; templates the platform cannot train on fail naming the setting."""

import importlib.util
from pathlib import Path

import pytest

from families import FAMILIES, TEMPLATES, chat_rows, expected_replies, make_tokenizer
from tinyreason.data.tokenize import IGNORE, tokenize_chat, tokenize_preference
from tinyreason.eval.heldout import chat_prompts
from tinyreason.model import templates as T
from tinyreason.model.chat import CHAT_TEMPLATE, SYSTEM_PROMPT, THINK_CLOSE, THINK_OPEN
from tinyreason.model.plain_jinja import render_plain, write_plain_template
from tinyreason.model.tokenizer import add_think_tokens, prepare_chat_tokenizer

NAMES = list(FAMILIES)
SMOLLM2_PROMPT = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


@pytest.fixture(scope="module")
def toks():
    return {name: make_tokenizer(name) for name in NAMES}


def fresh(name):
    return make_tokenizer(name)


def trained_runs(enc_ids, labels, tok) -> list[str]:
    runs, cur = [], []
    for i, lbl in zip(enc_ids, labels):
        if lbl != IGNORE:
            cur.append(i)
        elif cur:
            runs.append(cur)
            cur = []
    return [tok.decode(r) for r in runs + ([cur] if cur else [])]


# ---------------------------------------------------------------- the fixtures are the real templates


@pytest.mark.parametrize("ours, theirs", [("qwen3", "qwen3"), ("llama3_2", "llama3_2"), ("gemma3", "gemma3")])
def test_fixture_templates_are_the_copies_trl_keeps_to_recognise_these_models(ours, theirs):
    trl = Path(importlib.util.find_spec("trl").origin).parent / "chat_templates" / f"{theirs}.jinja"
    assert (TEMPLATES / f"{ours}.jinja").read_text().strip() == trl.read_text().strip()


def test_smollm2_fixture_is_the_template_in_the_real_smollm2_gguf():
    from tinyreason.model import gguf as tg

    try:
        path = tg.smollm2_gguf()
    except tg.GGUFError as missing:
        pytest.skip(f"the SmolLM2 GGUF is not installed ({missing})")
    import gguf

    field = gguf.GGUFReader(path).fields["tokenizer.chat_template"]
    assert bytes(field.parts[field.data[0]]).decode() == (TEMPLATES / "smollm2.jinja").read_text()


# ---------------------------------------------------------------- own template, own tokens


@pytest.mark.parametrize("name", NAMES)
def test_the_family_keeps_its_template_and_tokens_and_eos_becomes_its_end_of_turn(name):
    tok = fresh(name)
    template, n = tok.chat_template, len(tok)
    record = T.prepare(tok)
    spec = FAMILIES[name]
    assert len(tok) == n and record["added_tokens"] == []  # no <|im_start|> in Llama, Gemma
    assert tok.chat_template == template and record["template"] == "own" and not record["replaced"]
    assert tok.eos_token == spec.end_of_turn == record["end_of_turn"] and record["opener"] == spec.opener
    assert tok.pad_token is not None and tok.pad_token != spec.end_of_turn
    assert T.prepare(tok) == {**record, "changes": []}  # a stage's tokenizer prepared again: unchanged
    assert record["family"] == {"smollm2": "chatml"}.get(name, name)


@pytest.mark.parametrize("name", NAMES)
def test_think_tokens_are_reused_where_the_family_has_them_and_added_where_it_has_none(name):
    tok = fresh(name)
    T.prepare(tok)
    before = dict(tok.get_vocab())
    added = add_think_tokens(prepare_chat_tokenizer(tok))
    record = T.think_record(tok, before)
    if name == "qwen3":
        assert added == 0 and record["reused"] == [THINK_OPEN, THINK_CLOSE]
        assert record["ids"] == {t: before[t] for t in (THINK_OPEN, THINK_CLOSE)}
    else:
        assert added == 2 and record["added"] == [THINK_OPEN, THINK_CLOSE] and len(tok) == len(before) + 2
    assert all(len(tok(t, add_special_tokens=False)["input_ids"]) == 1 for t in (THINK_OPEN, THINK_CLOSE))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("think", [False, True])
def test_loss_masks_cover_exactly_the_assistant_spans_the_native_template_renders(name, think):
    tok = fresh(name)
    T.prepare(tok)
    if think:
        add_think_tokens(tok)
    rows = chat_rows(6, seed=3, think=think)
    assert any(r["messages"][0]["role"] == "system" and len(r["messages"]) == 5 for r in rows)  # multi-turn + system
    for row in rows:
        enc = tokenize_chat(tok, row["messages"], max_length=4096)
        assert enc["_fate"] == "kept"
        assert trained_runs(enc["input_ids"], enc["labels"], tok) == expected_replies(name, row["messages"])
        # the ids are the template's own tokenization of its own rendering
        assert enc["input_ids"] == tok.apply_chat_template(row["messages"], tokenize=True, return_dict=True,
                                                           **T.render_kwargs(tok.chat_template))["input_ids"]


def test_gemma3_masks_match_trls_generation_tagged_copy_but_for_the_newline_after_each_turn():
    """An independent mask: TRL's training copy of Gemma-3's template wraps each reply and its
    `<end_of_turn>\\n` in {% generation %}; ours stops at the end-of-turn token, which is where
    generation stops, so the newline after it is the only difference."""
    tok = fresh("gemma3")
    T.prepare(tok)
    trl = Path(importlib.util.find_spec("trl").origin).parent / "chat_templates" / "gemma3_training.jinja"
    for row in chat_rows(4, seed=5):
        ours = tokenize_chat(tok, row["messages"], max_length=4096)
        theirs = tok.apply_chat_template(row["messages"], chat_template=trl.read_text(), tokenize=True,
                                         return_dict=True, return_assistant_tokens_mask=True)
        assert theirs["input_ids"] == ours["input_ids"]
        newline = tok("\n", add_special_tokens=False)["input_ids"]
        ours_mask = [lbl != IGNORE for lbl in ours["labels"]]
        for i, (a, b) in enumerate(zip(ours_mask, theirs["assistant_masks"])):
            assert a == bool(b) or (b and not a and [ours["input_ids"][i]] == newline and ours_mask[i - 1]), i


@pytest.mark.parametrize("name", NAMES)
def test_preference_completions_end_with_the_end_of_turn_token(name):
    tok = fresh(name)
    T.prepare(tok)
    from families import preference_rows

    row = preference_rows(1)[0]
    out = tokenize_preference(tok, row, max_length=4096, max_prompt_length=None)
    end = tok.convert_tokens_to_ids(FAMILIES[name].end_of_turn)
    assert out["_fate"] == "kept" and end in out["chosen_ids"] and end in out["rejected_ids"]
    assert tok.decode(out["prompt_ids"]).endswith(FAMILIES[name].opener)


# ---------------------------------------------------------------- system prompt


@pytest.mark.parametrize("name, default", [("smollm2", SMOLLM2_PROMPT), ("qwen3", None), ("llama3", ""),
                                           ("gemma3", None)])
def test_the_default_system_prompt_is_the_base_models_own(name, default):
    tok = fresh(name)
    record = T.prepare(tok)
    assert record["system_prompt"] == {"setting": None, "inserted": default}


@pytest.mark.parametrize("name", NAMES)
def test_a_system_prompt_setting_is_inserted_in_the_familys_own_format_and_only_when_none_is_given(name):
    tok = fresh(name)
    prompt = 'Think first; say "done" when done.\nNew line, ünïcode.'
    own = tok.chat_template
    record = T.prepare(tok, system_prompt=prompt)
    assert record["system_prompt"] == {"setting": prompt, "inserted": prompt}
    question = [{"role": "user", "content": "Hi"}]
    with_prompt = tok.apply_chat_template([{"role": "system", "content": prompt}] + question, tokenize=False,
                                          chat_template=own, **T.render_kwargs(own))
    assert tok.apply_chat_template(question, tokenize=False, **T.render_kwargs(own)) == with_prompt
    given = [{"role": "system", "content": "Other."}] + question
    assert tok.apply_chat_template(given, tokenize=False, **T.render_kwargs(own)) == tok.apply_chat_template(
        given, tokenize=False, chat_template=own, **T.render_kwargs(own))
    T.prepare(tok, system_prompt=None)  # unset again: the family's own template, byte for byte
    assert tok.chat_template == own


def test_from_scratch_models_keep_the_platforms_system_prompt():
    tok = prepare_chat_tokenizer(fresh("llama3"), install_chatml=True)
    assert tok.chat_template == CHAT_TEMPLATE
    assert T.prepare(tok)["system_prompt"]["inserted"] == SYSTEM_PROMPT


def test_the_held_out_probe_renders_prompts_as_training_does():
    tok = fresh("llama3")
    T.prepare(tok, system_prompt="Be exact.")
    (prompt,) = chat_prompts(tok, ["What is 2 plus 2?"])
    assert "Today Date: 26 Jul 2024" in prompt and "Be exact." in prompt  # the date training rows carry
    assert prompt.endswith(FAMILIES["llama3"].opener)


# ---------------------------------------------------------------- replacing a template, bad templates


def test_chatml_replaces_a_template_and_says_so_with_the_tokens_it_added():
    tok = fresh("gemma3")
    n = len(tok)
    record = T.prepare(tok, T.CHATML)
    assert record["replaced"] and record["template"] == "replaced by tinyreason's ChatML"
    assert record["added_tokens"] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] and len(tok) == n + 3
    assert tok.eos_token == "<|im_end|>" and any("eos_token '<eos>'" in c for c in record["changes"])
    assert "Tokens added for the template" in T.describe(record) and "replaced" in T.describe(record)


def test_an_unknown_family_fails_naming_the_setting_and_own_trains_on_it_anyway():
    tok = fresh("smollm2")
    tok.chat_template = (  # a ChatML dialect with other delimiters: no known family's signature
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + ':' + m['content'] + '<|im_end|>' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant:' }}{% endif %}")
    tok.chat_template = tok.chat_template.replace("<|im_end|>", "<|endoftext|>")
    with pytest.raises(T.TemplateError, match=r"no family tinyreason knows.*model\.chat_template: own"):
        T.prepare(tok)
    record = T.prepare(tok, T.OWN)
    assert record["family"] is None and record["end_of_turn"] == "<|endoftext|>"
    with pytest.raises(T.TemplateError, match="has no chat template"):
        tok.chat_template = None
        T.prepare(tok)


def test_a_template_without_an_assistant_turn_the_platform_can_find_is_a_clear_error():
    tok = fresh("qwen3")
    users_only = ("{% for m in messages %}{% if m['role'] == 'user' %}{{ '<|im_start|>user\\n' + m['content'] + "
                  "'<|im_end|>\\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}"
                  "{{ '<|im_start|>assistant\\n' }}{% endif %}")
    with pytest.raises(T.TemplateError, match=r"no assistant turn tinyreason can find.*fix: give model\.chat_template"):
        T.prepare(tok, "users_only.jinja", users_only)
    no_end = "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\\n' }}{% endfor %}" \
             "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
    with pytest.raises(T.TemplateError, match="not with one special token"):
        T.prepare(tok, "no_end.jinja", no_end)


def test_a_row_whose_reply_holds_the_end_of_turn_text_is_refused_not_mismasked():
    tok = fresh("smollm2")
    T.prepare(tok)
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello<|im_end|> again"}]
    assert tokenize_chat(tok, msgs, 4096)["_fate"] == "template_mismatch"


# ---------------------------------------------------------------- exports anywhere


@pytest.mark.parametrize("name", NAMES + ["tinyreason"])
def test_every_family_template_renders_in_plain_jinja2_as_in_transformers(name, tmp_path):
    tok = prepare_chat_tokenizer(fresh("smollm2"), install_chatml=True) if name == "tinyreason" else fresh(name)
    T.prepare(tok, system_prompt="Be brief." if name == "gemma3" else None)
    add_think_tokens(tok)
    path = write_plain_template(tok, tmp_path / "chat_template.plain.jinja")
    text = path.read_text()
    assert "generation" not in text.replace("add_generation_prompt", "")
    msgs = chat_rows(1, think=True)[0]["messages"]
    kwargs = {**tok.special_tokens_map, **T.render_kwargs(tok.chat_template)}
    assert render_plain(text, msgs, **kwargs) == tok.apply_chat_template(msgs, tokenize=False, **kwargs)


def test_generation_config_stops_at_the_end_of_turn_and_keeps_the_familys_own_ids():
    from transformers import GenerationConfig

    class Model:
        config = type("C", (), {"pad_token_id": None})()
        generation_config = GenerationConfig(eos_token_id=[1, 106])

    tok = fresh("gemma3")
    T.prepare(tok)
    model = Model()
    T.align_generation(model, tok)
    end = tok.convert_tokens_to_ids("<end_of_turn>")
    assert model.generation_config.eos_token_id == [end, 1, 106]
    assert model.generation_config.pad_token_id == model.config.pad_token_id == tok.pad_token_id


@pytest.mark.parametrize("name", ["llama3", "qwen3"])
def test_lm_eval_and_the_held_out_probe_render_the_prompt_training_rendered(name, tmp_path):
    from families import make_family
    from tinyreason.config.sections import BenchmarkConfig
    from tinyreason.eval.harness import load_lm

    model_dir = make_family(name, tmp_path / name)
    tok = fresh(name)
    lm = load_lm(model_dir, BenchmarkConfig(), trust_remote_code=False)
    question = [{"role": "user", "content": "What is 2 plus 2?"}]
    assert lm.apply_chat_template(question) == chat_prompts(tok, [question[0]["content"]])[0] == \
        tok.apply_chat_template(question, tokenize=False, add_generation_prompt=True,
                                **T.render_kwargs(tok.chat_template))
