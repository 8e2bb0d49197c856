"""The task the GRPO and distillation tests share: "Is X bigger than Y?", whose gold answer is
always "yes". The parent ("yesno") is a micro Llama chat-tuned on the same questions answered
"yes" or "no" at random, whatever the numbers, so it is right about half the time: GRPO's
correctness reward has spread in every group, and a teacher's correct-only filter has
something to keep and something to drop.

One session dir (conftest.yesno_files) holds the files, the tokenizer and the storage, and
both test files write the parent stage the same way (`parent_stage`), so it has one key and
trains once per session, whichever file runs first."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

TEACHER_PROMPTS = 60  # the distillation tests' prompt file: the first 60 of GRPO's 200


def questions(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"Is {rng.randint(0, 60)} bigger than {rng.randint(0, 60)}?" for _ in range(n)]


def _write(path: Path, rows) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_files(d: Path, tokenizer: Path) -> Path:
    """chat.jsonl (600 parent rows), prompts.jsonl (200 prompts with their gold answer, GSM8K's
    shape), teacher_prompts.jsonl (60 of them), no_answers.jsonl (20 without), tok/."""
    rng = random.Random(0)
    _write(d / "chat.jsonl", ({"messages": [{"role": "user", "content": q}, {
        "role": "assistant", "content": f"The answer is {rng.choice(['yes', 'no'])}."}]} for q in questions(600, 1)))
    prompts = [{"question": q, "answer": "yes"} for q in questions(200, 2)]
    _write(d / "prompts.jsonl", prompts)
    _write(d / "teacher_prompts.jsonl", prompts[:TEACHER_PROMPTS])
    _write(d / "no_answers.jsonl", ({"question": q} for q in questions(20, 3)))
    shutil.copytree(tokenizer, d / "tok")
    return d


def parent_stage(files: Path) -> dict:
    return {"name": "yesno", "kind": "sft", "data": {"blend": {"sources": [{"files": str(files / "chat.jsonl")}]},
                                                     "max_length": 128},
            "trainer": {"learning_rate": 3e-3, "num_train_epochs": 3, "per_device_train_batch_size": 8,
                        "logging_steps": 5}, "scaling": {"num_workers": 2}}


def curriculum(files: Path, name: str, stages: list[dict]) -> dict:
    """A micro curriculum on the shared tokenizer and storage (files/runs)."""
    return {"name": name, "seed": 0, "model": {"preset": "micro", "attn_implementation": "sdpa"},
            "tokenizer": {"path": str(files / "tok")}, "storage": {"path": str(files / "runs")},
            "evaluation": {"after_each_stage": False}, "tracking": {"wandb": {"enabled": False}},
            "stages": stages}
