"""bench/dpo_shift.py: each preference pair is put under the failure mode its rejected answer shows."""

from tinyreason.data import synthetic


def test_every_generated_pair_is_classed_as_the_failure_the_generator_made(bench_script):
    mod = bench_script("dpo_shift")
    rows = synthetic.preference_rows(60, 0)
    # the generator rotates by row index: a wrong answer, a malformed <think>, rambling
    made = ["wrong", "malformed", "rambling"]
    for i, r in enumerate(rows):
        assert mod.failure_mode(r["chosen"][0]["content"], r["rejected"][0]["content"]) == made[i % 3], r


def test_a_right_answer_said_twice_is_rambling_and_an_unclosed_block_malformed(bench_script):
    mod = bench_script("dpo_shift")
    good = "<think>\n2 + 3 = 5\n</think>\nThe answer is 5."
    assert mod.failure_mode(good, "<think>\n2 + 3 = 6\n</think>\nThe answer is 6.") == "wrong"
    assert mod.failure_mode(good, "<think>\n2 + 3 = 5\n2 + 3 = 5\n</think>\nThe answer is 5.") == "rambling"
    assert mod.failure_mode(good, "<think>\n2 + 3 = 5\nThe answer is 5.") == "malformed"
