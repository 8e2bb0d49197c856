"""Token-length accounting and data.overlong (data/lengths.py) as pure functions: every row is
accounted for, percentiles are nearest-rank, and only truncation makes a training row whose
labels lack `</think>` or the end of turn, counted apart when the cut falls inside a think block."""

import pytest

from families import make_tokenizer, preference_rows
from tinyreason.data import lengths as L
from tinyreason.data import tokenize as Tk
from tinyreason.data.card import token_lengths_section
from tinyreason.model import templates
from tinyreason.model.tokenizer import add_think_tokens


@pytest.fixture(scope="module")
def tok():
    t = make_tokenizer("smollm2")
    templates.prepare(t)
    add_think_tokens(t)  # as after a reasoning_sft stage
    return t


def trace(n_words: int) -> list[dict]:
    thought = " ".join(["one plus two is three"] * n_words)
    return [{"role": "user", "content": "What is one plus two?"},
            {"role": "assistant", "content": f"<think>\n{thought}\n</think>\nThe answer is three."}]


def full_length(tok, messages) -> int:
    return len(tok.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"])


def test_each_policy_on_a_trace_longer_than_max_length(tok):
    msgs = trace(30)
    n = full_length(tok, msgs)
    end = tok.convert_tokens_to_ids("<|im_end|>")
    assert n > 64
    kept = Tk.tokenize_chat(tok, msgs, max_length=n)
    assert kept["_fate"] == "kept" and kept["_tokens"] == n and kept["labels"][-2] == end  # "\n" follows it
    prompt = len(tok.apply_chat_template(msgs[:1], tokenize=True, add_generation_prompt=True, return_dict=True)[
        "input_ids"])
    short = prompt + 20  # the cut falls in the thought
    assert Tk.tokenize_chat(tok, msgs, short) == {"input_ids": [], "labels": [], "_tokens": n,
                                                  "_fate": "dropped_overlong"}
    assert Tk.tokenize_chat(tok, msgs, short, "error")["_fate"] == "error_overlong"
    inside = Tk.tokenize_chat(tok, msgs, short, "truncate")
    assert inside["_fate"] == "truncated_in_think" and len(inside["input_ids"]) == short
    assert end not in inside["labels"] and sum(lbl != -100 for lbl in inside["labels"]) == 20
    assert Tk.tokenize_chat(tok, msgs, prompt, "truncate")["_fate"] == "no_labels"
    after = Tk.tokenize_chat(tok, msgs, n - 2, "truncate")  # the cut falls in the answer
    assert after["_fate"] == "truncated" and end not in after["labels"]


def test_the_pipeline_accounts_for_every_row_and_trains_only_the_kept(tok):
    rows = [trace(k) for k in (1, 2, 3, 40, 50)]
    batch = {"messages": rows, "_source_dataset": ["a", "a", "b", "b", "b"], "_source_subset": ["", "", "x", "x", "x"]}
    cap = full_length(tok, rows[2]) + 5  # the first three fit
    steps = [Tk.Step(lambda b: Tk.tokenize_chat_batch(b, tok, cap), 2, accounts=True),
             Tk.Step(lambda b: Tk.pack_batch(b, cap), 8)]
    ledger = []
    out = Tk.in_process(batch, steps, ledger)
    assert set(out) == {"input_ids", "labels", "seq_lengths"}  # accounting columns never reach training
    assert sorted(n for s in out["seq_lengths"] for n in s) == sorted(full_length(tok, r) for r in rows[:3])
    report = L.length_report(ledger, cap, "drop")
    lens_b = sorted(full_length(tok, r) for r in rows[2:])
    assert report["sources"]["b/x"]["rows"] == 3 and report["sources"]["b/x"]["max"] == lens_b[-1]
    assert report["sources"]["b/x"]["p50"] == lens_b[1] and report["sources"]["b/x"]["p95"] == lens_b[2]
    assert report["sources"]["b/x"]["over_max_length"] == 2 == report["sources"]["b/x"]["dropped_overlong"]
    assert report["total"]["kept"] == 3 and report["total"]["rows"] == 5
    card = token_lengths_section(report)
    assert "| b/x | 3 |" in card and "data.overlong: drop" in card and f"| {lens_b[-1]:,} |" in card


def test_nearest_rank_percentiles_are_lengths_some_row_has():
    values = list(range(1, 101))
    assert (L.nearest_rank(values, 50), L.nearest_rank(values, 95), L.nearest_rank(values, 100)) == (50, 95, 100)
    assert L.nearest_rank([7], 95) == 7 and L.nearest_rank([], 50) == 0


def test_error_policy_names_the_counts_and_the_fix():
    ledger = [{"_tokens": [10, 300, 500], "_source": ["s", "s", "t"], "_fate": ["kept", "error_overlong",
                                                                                   "error_overlong"]}]
    message = L.failure(L.length_report(ledger, 256, "error"), "stage 2/3 reasoning")
    assert message.startswith("stage 2/3 reasoning: 2 rows are longer than data.max_length=256")
    assert "s: 1 (max 300 tokens)" in message and "t: 1 (max 500 tokens)" in message and "data.overlong: drop" in message
    assert L.failure(L.length_report(ledger[:0], 256, "drop"), "x") is None


def test_truncating_inside_think_is_warned_about():
    ledger = [{"_tokens": [300, 20], "_source": ["s", "s"], "_fate": ["truncated_in_think", "kept"]}]
    (line,) = L.warnings(L.length_report(ledger, 256, "truncate"))
    assert line.startswith("1 of 2 rows were truncated inside a <think> block")


def test_preference_rows_follow_the_same_policy(tok):
    row = preference_rows(1)[0]
    full = Tk.tokenize_preference(tok, row, 4096, None)
    n = full["_tokens"]
    assert full["_fate"] == "kept" and n == len(full["prompt_ids"]) + max(len(full["chosen_ids"]),
                                                                          len(full["rejected_ids"]))
    assert Tk.tokenize_preference(tok, row, n - 1, None)["_fate"] == "dropped_overlong"
    cut = Tk.tokenize_preference(tok, row, len(full["prompt_ids"]) + 3, None, "truncate")
    assert cut["_fate"] == "truncated_in_think" and len(cut["chosen_ids"]) == 3
    end = tok.convert_tokens_to_ids("<|im_end|>")
    assert end in full["chosen_ids"] and end not in cut["chosen_ids"]
