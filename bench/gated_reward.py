"""A GRPO reward for a screen (bench/results/grpo_variants_gated_lora_seed*.json): correctness
gated on the steps. 1.0 only when the final answer is right AND every checkable claim of the
trace is true and grounded (claims.step_arithmetic == 1.0, or the trace makes no such claim),
else 0.0. Why: sampled at T 1.0 from the default's seed-1 DPO parent, 6.1% of the right answers
carry a false or ungrounded step, which correctness alone rewards; `step_arithmetic` as partial
credit beside correctness did not move GRPO (grpo_variants_step_reward_lora_seed*.json).

Used as a user reward (`path: gated_reward:gated_correctness`, bench/ on PYTHONPATH)."""

from tinyreason import rewards
from tinyreason.claims import step_arithmetic


def gated_correctness(prompts, completions, answer, **kwargs) -> list[float]:
    right = rewards.correctness(completions, answer)
    steps = step_arithmetic(prompts, completions)
    return [r if s is None or s == 1.0 else 0.0 for r, s in zip(right, steps, strict=True)]
