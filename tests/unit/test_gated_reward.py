"""bench/gated_reward.py, the screen's correctness gated on the steps: right answers with a false
or ungrounded step earn nothing; as TRL calls it, and through the platform's user-reward loader."""

import sys
from pathlib import Path

import pytest

from tinyreason.rewards import make_reward

ROOT = Path(__file__).resolve().parents[2]
PROMPT = "Mia has 12 apples. She buys 3 more. Then she loses 9. How many apples now?"
CASES = [
    ("<think>\n12 + 3 = 15\n15 - 9 = 6\n</think>\nThe answer is 6.", 1.0),  # right, every step true
    ("<think>\n12 + 3 = 14\n15 - 9 = 6\n</think>\nThe answer is 6.", 0.0),  # right answer, a false step
    ("<think>\n12 + 3 = 15\n15 - 9 = 8\n</think>\nThe answer is 8.", 0.0),  # wrong
    ("<think>\nthree more, then nine fewer\n</think>\nThe answer is 6.", 1.0),  # no claim to check: correctness
    ("<think>\n12 + 3 = 15\n15 - 9 = 6\n", 0.0),  # unclosed: correctness gives 0
]


@pytest.fixture
def gated(bench_script):
    return bench_script("gated_reward").gated_correctness


def test_a_right_answer_earns_only_when_every_step_holds(gated):
    completions, expected = map(list, zip(*CASES))
    got = gated(prompts=[PROMPT] * len(CASES), completions=completions, answer=["6"] * len(CASES),
                completion_ids=None, trainer_state=None, log_extra=lambda *a: None, log_metric=lambda *a: None)
    assert got == expected


def test_the_config_loads_it_as_a_user_reward(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    reward = make_reward({"name": "gated", "path": "gated_reward:gated_correctness"}, columns=("prompt", "answer"))
    assert reward(prompts=[PROMPT], completions=[CASES[1][0]], answer=["6"]) == [0.0]
    sys.modules.pop("gated_reward", None)
