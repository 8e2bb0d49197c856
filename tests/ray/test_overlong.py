"""A reasoning blend whose traces run past data.max_length, tokenized as a stage does
(stage.training_rows, in the driver and on Ray Data): the token-length report's percentiles
and over-length counts match lengths measured independently; with the default (drop) every
training row's labels hold `</think>` and the end-of-turn token; with truncate the truncated
rows, and those cut inside a think block, are counted; with error the stage fails naming them."""

import json

import pytest

from families import make_family
from tinyreason.config.experiment import StageConfig
from tinyreason.config.sections import BlendConfig
from tinyreason.data.blend import build_blend
from tinyreason.data.card import token_lengths_section
from tinyreason.data.lengths import nearest_rank
from tinyreason.model import templates
from tinyreason.model.tokenizer import add_think_tokens
from tinyreason.stage import training_rows

MAX_LENGTH = 160


def _trace(i: int, steps: int) -> dict:
    thought = "\n".join(f"step {k}: {i} plus {k} is {i + k}" for k in range(steps))
    return {"messages": [{"role": "user", "content": f"Add up to {steps} to {i}."},
                         {"role": "assistant", "content": f"<think>\n{thought}\n</think>\nThe answer is {i + steps}."}]}


@pytest.fixture(scope="module")
def setup(ray_local, tmp_path_factory):
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("overlong")
    tok = AutoTokenizer.from_pretrained(make_family("qwen3", root / "base"))
    templates.prepare(tok)
    add_think_tokens(tok)  # Qwen3's own: none added
    tok.save_pretrained(root / "tok")
    files = {}
    for name, steps in (("short", range(1, 4)), ("long", range(2, 40, 3))):
        files[name] = root / f"{name}.jsonl"
        files[name].write_text("".join(json.dumps(_trace(i, s)) + "\n" for i in range(3) for s in steps))
    blend_cfg = BlendConfig(sources=[{"files": str(files["short"])}, {"files": str(files["long"])}])
    blend = build_blend(blend_cfg, "reasoning", root / "blends")
    data = blend.read_local("data")
    measured = {}
    for msgs, src in zip(data["messages"], data["_source_dataset"]):
        n = len(tok.apply_chat_template(msgs, tokenize=True, return_dict=True)["input_ids"])
        measured.setdefault(src, []).append(n)
    return tok, blend, blend_cfg, measured, str(root / "tok")


def _stage(blend_cfg, **data):
    return StageConfig(name="reasoning", kind="reasoning_sft",
                       data={"blend": blend_cfg, "max_length": MAX_LENGTH, "packing": False, **data})


def test_percentiles_and_over_length_counts_match_independent_measurement(setup):
    tok, blend, blend_cfg, measured, tok_dir = setup
    _, report = training_rows("r", _stage(blend_cfg), blend, tok_dir)
    assert sum(n > MAX_LENGTH for v in measured.values() for n in v) >= 5  # the blend really runs over
    for src, values in measured.items():
        got, values = report["sources"][src], sorted(values)
        assert (got["rows"], got["p50"], got["p95"], got["max"]) == (len(values), nearest_rank(values, 50),
                                                                      nearest_rank(values, 95), values[-1])
        assert got["over_max_length"] == got["dropped_overlong"] == sum(n > MAX_LENGTH for n in values)
    card = token_lengths_section(report)
    long_src = max(measured, key=lambda s: max(measured[s]))
    assert f"| {long_src} | {len(measured[long_src])} |" in card and "are dropped (`data.overlong: drop`)" in card


def test_by_default_every_training_rows_labels_hold_think_close_and_the_end_of_turn(setup):
    tok, blend, blend_cfg, measured, tok_dir = setup
    rows, report = training_rows("r", _stage(blend_cfg), blend, tok_dir)
    taken = rows.take_all()
    fitting = sum(n <= MAX_LENGTH for v in measured.values() for n in v)
    assert len(taken) == fitting == report["total"]["kept"]
    close, end = tok.convert_tokens_to_ids("</think>"), tok.convert_tokens_to_ids(tok.eos_token)
    assert all(close in list(r["labels"]) and end in list(r["labels"]) for r in taken)


def test_truncation_is_counted_and_cuts_inside_think_are_counted_apart_on_ray_data_too(setup):
    tok, blend, blend_cfg, measured, tok_dir = setup
    rows, report = training_rows("r", _stage(blend_cfg, overlong="truncate", tokenize_in_driver_max_rows=0), blend,
                                 tok_dir)
    over = sum(n > MAX_LENGTH for v in measured.values() for n in v)
    t = report["total"]
    assert t["truncated"] + t["truncated_in_think"] == over and t["truncated_in_think"] > 0
    end = tok.convert_tokens_to_ids(tok.eos_token)
    taken = rows.take_all()
    assert len(taken) == t["rows"] and sum(end not in list(r["labels"]) for r in taken) == over
    assert all(len(r["input_ids"]) <= MAX_LENGTH for r in taken)
    _, in_driver = training_rows("r", _stage(blend_cfg, overlong="truncate"), blend, tok_dir)
    assert in_driver == report  # the same accounting in the driver and on Ray Data
    assert f"| **total** | {t['rows']} |" in token_lengths_section(report)


def test_the_error_policy_fails_the_stage_naming_the_rows(setup):
    _, blend, blend_cfg, measured, tok_dir = setup
    over = sum(n > MAX_LENGTH for v in measured.values() for n in v)
    with pytest.raises(ValueError, match=rf"r: {over} rows are longer than data.max_length={MAX_LENGTH} tokens"):
        training_rows("r", _stage(blend_cfg, overlong="error"), blend, tok_dir)
