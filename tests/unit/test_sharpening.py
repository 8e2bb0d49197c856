"""bench/sharpening.py: a stage's greedy accuracy beside its sampled one, per wording and family."""

import pytest


def _eval(acc: float, new: float, per_task: dict, draws: int | None = None) -> dict:
    out = {"accuracy": acc, "per_task": per_task, "new_templates": {"accuracy": new, "per_task": per_task}}
    return {**out, "draws": draws} if draws else out


def test_a_row_holds_greedys_lead_over_sampled_in_both_wordings_and_per_family(bench_script):
    sharpening = bench_script("sharpening")
    sampled = _eval(0.685, 0.33, {"add_sub": 0.6625, "count": 0.4175}, draws=8)
    greedy = _eval(0.735, 0.345, {"add_sub": 0.76, "count": 0.42, "compare": 0.78})
    row = sharpening.figures("03-dpo-a", "dpo", sampled, greedy)
    assert row["heldout"]["greedy_over_sampled"] == pytest.approx(0.05)
    assert row["new_templates"]["greedy_over_sampled"] == pytest.approx(0.015)
    # a family only one evaluation scored is left out, not compared with nothing
    assert row["heldout"]["per_task"] == {"add_sub": {"sampled": 0.6625, "greedy": 0.76},
                                          "count": {"sampled": 0.4175, "greedy": 0.42}}
    assert row["draws"] == 8 and row["kind"] == "dpo"
    assert sharpening.figures("x", "grpo", _eval(0.7, 0.3, {}), greedy)["draws"] == 1
