"""bench/dpo_shift.py puts each preference pair under the failure its rejected answer shows;
bench/dpo_pairs.py's variants are the rotations their screens trained on."""

import importlib.util
from pathlib import Path

import pytest

from tinyreason.data import synthetic


def _pairs():  # writes no results file, so not through bench_script
    spec = importlib.util.spec_from_file_location("dpo_pairs", Path(__file__).parents[2] / "bench" / "dpo_pairs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def made_by_default(i: int) -> str:  # five wrong answers in six, then a format failure in rotation
    return "wrong" if i % 6 < 5 else ("rambling" if (i // 6) % 4 == 3 else "malformed")


def test_every_generated_pair_is_classed_as_the_failure_the_generator_made(bench_script):
    mod = bench_script("dpo_shift")
    for i, r in enumerate(synthetic.preference_rows(48, 0)):
        assert mod.failure_mode(r["chosen"][0]["content"], r["rejected"][0]["content"]) == made_by_default(i), r


def test_a_right_answer_said_twice_is_rambling_and_an_unclosed_block_malformed(bench_script):
    mod = bench_script("dpo_shift")
    good = "<think>\n2 + 3 = 5\n</think>\nThe answer is 5."
    assert mod.failure_mode(good, "<think>\n2 + 3 = 6\n</think>\nThe answer is 6.") == "wrong"
    assert mod.failure_mode(good, "<think>\n2 + 3 = 5\n2 + 3 = 5\n</think>\nThe answer is 5.") == "rambling"
    assert mod.failure_mode(good, "<think>\n2 + 3 = 5\nThe answer is 5.") == "malformed"


@pytest.mark.parametrize("variant", ["carried", "stop"])
def test_the_earlier_pairs_rotate_one_in_three_and_leave_the_default_as_it_was(bench_script, variant):
    pairs, shift = _pairs(), bench_script("dpo_shift")
    rows = pairs.rows(variant, 30)
    modes = [shift.failure_mode(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in rows]
    assert modes == ["wrong", "malformed", "rambling"] * 10
    wrong = [r["rejected"][0]["content"].count("\n") for r in rows[::3]]
    chosen = [r["chosen"][0]["content"].count("\n") for r in rows[::3]]
    # a carried slip keeps every line; a stopped one ends at its slip, shorter somewhere in ten
    assert (wrong == chosen) if variant == "carried" else any(w < c for w, c in zip(wrong, chosen))
    assert pairs.rows("wrong-5-of-6", 30) == synthetic.preference_rows(30, 0)  # the default, unchanged
