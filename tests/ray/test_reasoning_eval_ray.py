"""Reasoning evaluation on a micro model that thinks, with real lm-eval, once as a Ray task and
once in-process: 8 seeded samples per problem give pass@1, pass@8 and maj@8 that the per-sample
file reproduces, the same seed gives the same samples, a thinking budget of 8 tokens bounds every
trace, and the thinking-off rerun's outputs start with an empty think block."""

import json
from collections import Counter

import pytest

from tinyreason.answers import split_thinking
from tinyreason.config.evaluation import BenchmarkConfig, TaskSpec, ThinkingConfig
from tinyreason.data import synthetic
from tinyreason.eval import harness
from tinyreason.evaluation import run_suite_remote
from tinyreason.model.chat import THINK_CLOSE, THINK_OPEN
from tinyreason.storage import Storage

LIMIT, N, BUDGET = 6, 8, 8
TASK = "tinyreason_reasoning"


@pytest.fixture(scope="module")
def thinking_model(tmp_path_factory):
    """A micro Llama after 40 AdamW steps on <think> traces, with the think tags as single
    tokens as the reasoning stage makes them: ~15 s on 2 cores."""
    import torch

    from tinyreason.model import presets
    from tinyreason.model.tokenizer import add_think_tokens, prepare_chat_tokenizer, train_bpe

    out = tmp_path_factory.mktemp("thinking-model")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the Ray workers of other tests share these 2 cores
    try:
        tok = prepare_chat_tokenizer(train_bpe([r["text"] for r in synthetic.pretrain_rows(1000, 0)], 512, out))
        add_think_tokens(tok)
        model = presets.init_model("micro", tok)
        texts = [tok.apply_chat_template(r["messages"], tokenize=False) for r in synthetic.reasoning_rows(320, 0)]
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for step in range(40):
            enc = tok(texts[step % 20 * 16:][:16], return_tensors="pt", padding=True, add_special_tokens=False)
            model(**enc, labels=enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)).loss.backward()
            opt.step()
            opt.zero_grad()
    finally:
        torch.set_num_threads(threads)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


BENCH = BenchmarkConfig(tasks=[TaskSpec(task=TASK, limit=LIMIT, repeats=N, seed=3)], batch_size=16, max_gen_toks=40)
THINK = ThinkingConfig(mode="on", budget=BUDGET)  # on: every answer opens <think>, so each one has a block


@pytest.fixture(scope="module")
def runs(ray_local, thinking_model, tmp_path_factory):
    first, second = tmp_path_factory.mktemp("run1"), tmp_path_factory.mktemp("run2")
    a = run_suite_remote(Storage(str(first)), thinking_model, BENCH, first, thinking=THINK)
    b = harness.run_suite(thinking_model, BENCH, second, thinking=THINK)
    return (first, a), (second, b)


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_pass_and_maj_at_k_are_recomputed_from_the_per_sample_file(runs):
    (out, result), _ = runs
    rows = _rows(out / f"samples_{TASK}.jsonl")
    assert len(rows) == LIMIT and all(len(r["resps"][0]) == N == len(r["generations"]) for r in rows)
    correct = [sum(r["repeat_scores"]) for r in rows]
    pass1 = sum(c / N for c in correct) / LIMIT
    pass8 = sum(c > 0 for c in correct) / LIMIT
    maj8 = 0
    for r in rows:  # the majority answer (ties: first seen), None never votes unless all are None
        votes = Counter(v for v in r["repeat_votes"] if v is not None)
        top = max(votes.values(), default=0)
        winner = next((v for v in r["repeat_votes"] if v is not None and votes[v] == top), None)
        maj8 += winner == r["reference"]
    got = result["sampling"][TASK]
    assert got["pass@1"]["value"] == pytest.approx(pass1)
    assert got["pass@8"]["value"] == pytest.approx(pass8)
    assert got["maj@8"]["value"] == pytest.approx(maj8 / LIMIT)
    assert all(got[k]["se"] is not None and got[k]["n"] == LIMIT for k in ("pass@1", "pass@8", "maj@8"))
    assert result["scores"][TASK]["pass@8"] == got["pass@8"]["value"]
    # each sample's score is the task's own metric on that sample: exact match of its final answer
    for r in rows:
        for score, gen in zip(r["repeat_scores"], r["generations"]):
            assert score == float(gen["no_answer"] is None and r["target"].lower() in gen["answer"].lower()
                                  and score == 1.0)


def test_the_same_seed_gives_the_same_samples_and_sampling_differs(runs):
    (first, a), (second, b) = runs
    outs = [[g["output"] for r in _rows(d / f"samples_{TASK}.jsonl") for g in r["generations"]]
            for d in (first, second)]
    assert outs[0] == outs[1]
    assert a["sampling"] == b["sampling"] and a["primary"] == b["primary"]
    assert any(len(set(o[i:i + N])) > 1 for o in outs[:1] for i in range(0, len(o), N))  # sampled, not greedy


def test_a_budget_of_8_bounds_every_trace_then_closes_then_answers(runs, thinking_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(thinking_model)
    (out, result), _ = runs
    gens = [g for r in _rows(out / f"samples_{TASK}.jsonl") for g in r["generations"]]
    assert len(gens) == LIMIT * N
    for g in gens:
        split = split_thinking(g["output"])
        assert g["output"].startswith(THINK_OPEN) and split.closed and g["output"].count(THINK_CLOSE) == 1, g
        assert g["think_tokens"] <= BUDGET
        generated = split.thinking.removeprefix("\n")  # mode on: "<think>\n" is prompt, not generated
        assert len(tok.encode(generated, add_special_tokens=False)) <= BUDGET, g
        assert split.answer.strip() and g["answer"] == split.answer.lstrip() and g["no_answer"] is None, g
    assert result["thinking"][TASK]["forced_close"] > 0  # the budget did the closing for some


def test_thinking_off_outputs_carry_an_empty_think_block(runs):
    (out, result), _ = runs
    off = result["think_off"]
    assert set(off["primary"]) == {TASK} and off["thinking"][TASK]["n"] == LIMIT * N
    gens = [g for r in _rows(out / "think_off" / f"samples_{TASK}.jsonl") for g in r["generations"]]
    assert gens and all(g["output"].startswith(f"{THINK_OPEN}\n\n{THINK_CLOSE}\n") for g in gens)
    assert all(g["thinking"].strip() == "" and g["think_tokens"] == 0 for g in gens)
    assert all(g["output"].count(THINK_OPEN) == 1 for g in gens)  # <think> cannot reopen


def test_held_out_draws_start_with_the_single_draw_and_average_over_the_rest(thinking_model):
    """evaluation.heldout_samples: the first of k draws is the k = 1 evaluation (one seeded
    stream), the accuracy is the mean over every draw, and the draws differ (sampled)."""
    from tinyreason.config.evaluation import EvalConfig
    from tinyreason.eval.heldout import evaluate_heldout

    def ev(k):
        return EvalConfig(heldout_problems=8, heldout_samples=k, max_new_tokens=40, batch_size=8,
                          thinking={"mode": "on", "compare_off": False})

    one, three = (evaluate_heldout(str(thinking_model), ev(k), new_templates=False) for k in (1, 3))
    assert [s["output"] for s in three["samples"]] == [s["output"] for s in one["samples"]]
    assert three["draws"] == 3 and three["format"]["n"] == 24 and three["settings"]["samples_per_problem"] == 3
    assert three["accuracy"] == pytest.approx(sum(s["right_of_k"] for s in three["samples"]) / 24)
    assert all(s["right_of_k"] >= s["correct"] for s in three["samples"])
    assert three["pass_at_k"] == sum(s["right_of_k"] > 0 for s in three["samples"]) / 8
    assert three["thinking"]["think_tokens_mean"] != one["thinking"]["think_tokens_mean"]  # other draws, other traces
