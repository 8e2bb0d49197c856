"""reasoning_sft on a tiny random model of each family (SmolLM2/ChatML, Qwen3, Llama-3.2, Gemma-3)
with its real chat template, after sft on SmolLM2's and before dpo on Qwen3's, on a real local
Ray, one worker per stage: the family keeps its template and special tokens (nothing added where
it has them, Qwen3's own think ids reused), loss masks cover exactly the assistant spans its
template renders, every stage's card says which template and system prompt were used, and the
export's generation stops at the end of a turn. Kept cheap: a few dozen rows, a few steps, no
DeepSpeed. A stage costs ~12 s here, nearly all of it Ray Train's start-up, so each family trains
the one stage that exercises it most:
- reasoning_sft prepares the family's tokenizer as sft does (its own template kept, nothing
  grafted onto it) and adds or reuses the think tokens, so a reasoning stage from the base
  checks both; one family (SmolLM2's) goes sft -> reasoning_sft, a reasoning stage from a
  chat-prepared parent;
- dpo runs on Qwen3's, whose template re-renders the think block of the turn being scored;
  tests/unit/test_families.py tokenizes preference rows under every family's template."""

import json

import pytest

from families import FAMILIES, chat_rows, expected_replies, make_family, make_tokenizer, preference_rows
from tinyreason.config.loading import validate_config
from tinyreason.curriculum import run_curriculum
from tinyreason.data.tokenize import IGNORE, tokenize_chat
from tinyreason.model.chat import THINK_CLOSE, THINK_OPEN
from tinyreason.model.plain_jinja import PLAIN_TEMPLATE

NAMES = list(FAMILIES)
SYSTEM_PROMPT = {"gemma3": "You are a careful tutor."}  # one family runs with model.system_prompt set
DPO_FAMILY = "qwen3"  # the family whose curriculum goes on to dpo
SFT_FAMILY = "smollm2"  # the family whose curriculum starts with sft
STEPS = {"sft": 3, "reasoning": 3, "dpo": 2}


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _stage(name, kind, files, steps, **trainer):
    return {"name": name, "kind": kind, "data": {"blend": {"sources": [{"files": files}]}, "max_length": 256},
            "trainer": {"max_steps": steps, "per_device_train_batch_size": 4, "logging_steps": 1,
                        "learning_rate": 1e-3, "save_steps": 100, **trainer},
            "deepspeed": {"enabled": False}, "scaling": {"num_workers": 1}}


@pytest.fixture(scope="module")
def runs(ray_local, tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    data = {"chat": _jsonl(root / "chat.jsonl", chat_rows(24, seed=1)),
            "reasoning": _jsonl(root / "reasoning.jsonl", chat_rows(24, seed=2, think=True)),
            "preference": _jsonl(root / "preference.jsonl", preference_rows(16, seed=3))}
    out = {}
    for name in NAMES:
        base = make_family(name, root / f"base-{name}")
        model = {"preset": None, "name_or_path": str(base)}
        if name in SYSTEM_PROMPT:
            model["system_prompt"] = SYSTEM_PROMPT[name]
        stages = [_stage("reasoning", "reasoning_sft", data["reasoning"], STEPS["reasoning"])]
        if name == SFT_FAMILY:
            stages.insert(0, _stage("sft", "sft", data["chat"], STEPS["sft"]))
        if name == DPO_FAMILY:
            stages.append(_stage("dpo", "dpo", data["preference"], STEPS["dpo"], beta=0.1, learning_rate=1e-4))
        cfg = validate_config({
            "name": f"family-{name}", "storage": {"path": str(root / "runs")}, "model": model,
            "evaluation": {"after_each_stage": False}, "tracking": {"wandb": {"enabled": False}}, "stages": stages})
        out[name] = (base, run_curriculum(cfg))
    return out


def _by_name(result) -> dict:
    return {o.stage.name: o for o in result.stages}


def _tok(path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


@pytest.mark.parametrize("name", NAMES)
def test_no_tokens_are_added_where_the_family_has_them_and_qwen3s_think_ids_are_reused(runs, name):
    base_dir, result = runs[name]
    base = _tok(base_dir)
    stages = _by_name(result)
    reasoning = _tok(stages["reasoning"].dir / "model")
    dpo = [_tok(stages["dpo"].dir / "model")] if "dpo" in stages else []
    if "sft" in stages:
        assert len(_tok(stages["sft"].dir / "model")) == len(base)
    # exactly the think tokens or none: no <|im_start|>/<|im_end|> grafted onto Llama or Gemma
    assert "<|im_start|>" not in reasoning.get_vocab() or "<|im_start|>" in base.get_vocab()
    if name == "qwen3":
        assert len(reasoning) == len(base)
        assert [reasoning.convert_tokens_to_ids(t) for t in (THINK_OPEN, THINK_CLOSE)] == \
            [base.convert_tokens_to_ids(t) for t in (THINK_OPEN, THINK_CLOSE)]
        assert stages["reasoning"].manifest["chat"]["think"]["reused"] == [THINK_OPEN, THINK_CLOSE]
    else:
        assert len(reasoning) == len(base) + 2
        assert stages["reasoning"].manifest["chat"]["think"]["added"] == [THINK_OPEN, THINK_CLOSE]
    assert [len(t) for t in dpo] == ([len(reasoning)] if name == DPO_FAMILY else [])


@pytest.mark.parametrize("name", NAMES)
def test_every_stage_keeps_the_familys_own_template_and_its_card_says_which_system_prompt(runs, name):
    base_dir, result = runs[name]
    own = _tok(base_dir).chat_template
    for o in result.stages:
        chat = o.manifest["chat"]
        assert chat["template"] == "own" and not chat["replaced"] and chat["added_tokens"] in ([], [THINK_OPEN,
                                                                                                   THINK_CLOSE])
        tok = _tok(o.dir / "model")
        card = (o.dir / "model" / "README.md").read_text()
        assert "## Chat format" in card and f"`{FAMILIES[name].end_of_turn}`" in card
        if name in SYSTEM_PROMPT:
            assert chat["system_prompt"] == {"setting": SYSTEM_PROMPT[name], "inserted": SYSTEM_PROMPT[name]}
            assert tok.chat_template.endswith(own) and "set by model.system_prompt" in card
        else:
            assert tok.chat_template == own and "the base model's own" in card
        assert (o.dir / "model" / PLAIN_TEMPLATE).is_file()


@pytest.mark.parametrize("name", NAMES)
def test_loss_masks_cover_exactly_the_assistant_spans_of_the_native_template(runs, name):
    _, result = runs[name]
    stage = _by_name(result)["reasoning"]
    tok = _tok(stage.dir / "tokenizer")
    for row in chat_rows(5, seed=2, think=True):
        msgs = row["messages"]
        enc = tokenize_chat(tok, msgs, max_length=256)
        runs_ = []
        cur = []
        for i, lbl in zip(enc["input_ids"], enc["labels"]):
            if lbl != IGNORE:
                cur.append(i)
            elif cur:
                runs_.append(cur)
                cur = []
        assert [tok.decode(r) for r in runs_ + ([cur] if cur else [])] == expected_replies(name, msgs)
    tokens = stage.manifest["tokens"]
    assert tokens["total"]["rows"] == 24 and tokens["total"]["kept"] == 24 and tokens["total"]["over_max_length"] == 0
    assert "## Token lengths" in (stage.dir / "data_card.md").read_text()


@pytest.mark.parametrize("name", NAMES)
def test_the_exports_generation_stops_at_the_end_of_a_turn(runs, name):
    import torch
    from transformers import AutoModelForCausalLM, LogitsProcessor, LogitsProcessorList

    _, result = runs[name]
    model_dir = result.stages[-1].dir / "model"
    tok, model = _tok(model_dir), AutoModelForCausalLM.from_pretrained(model_dir).eval()
    end = tok.convert_tokens_to_ids(FAMILIES[name].end_of_turn)
    assert tok.eos_token_id == end
    eos = model.generation_config.eos_token_id
    assert (eos if isinstance(eos, list) else [eos])[0] == end

    class EndAtThree(LogitsProcessor):  # the trained model's own choices, then an end of turn at step 3
        def __init__(self, start):
            self.start = start

        def __call__(self, input_ids, scores):
            if input_ids.shape[1] - self.start == 3:
                scores[:] = -float("inf")
                scores[:, end] = 0.0
            return scores

    prompt = tok.apply_chat_template([{"role": "user", "content": "What is 2 plus 2?"}], add_generation_prompt=True,
                                     return_tensors="pt", return_dict=True)
    n = prompt["input_ids"].shape[1]
    with torch.no_grad():  # no eos_token_id passed: generation_config decides where it stops
        out = model.generate(**prompt, max_new_tokens=20, do_sample=False,
                             logits_processor=LogitsProcessorList([EndAtThree(n)]))
    new = out[0, n:].tolist()
    assert len(new) == 4 and new[-1] == end, new


def test_losses_are_finite_and_every_stage_took_its_steps(runs):
    for name, (_, result) in runs.items():
        assert [o.stage.name for o in result.stages] == [*(["sft"] if name == SFT_FAMILY else []), "reasoning",
                                                          *(["dpo"] if name == DPO_FAMILY else [])]
        for o in result.stages:
            s = o.manifest["summary"]
            assert s["steps"] == STEPS[o.stage.name] and s["loss_last"] == s["loss_last"], (name, o.stage.name, s)


def test_the_family_tokenizers_are_small_and_carry_the_real_special_tokens():
    for name, spec in FAMILIES.items():
        tok = make_tokenizer(name)
        assert len(tok) < 450 and all(t in tok.get_vocab() for t in spec.special)
