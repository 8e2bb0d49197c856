"""Built-in lm-evaluation-harness tasks over the synthetic world, with local data.

The YAMLs next to this file are templates: the `datasets` json loader resolves a
relative `data_files` path against the process's working dir (a Ray worker's is
a temp dir), so `materialize(dir)` writes the data as jsonl and a copy of every
YAML pointing at it by absolute path. That dir is what the harness includes.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from tinyreason.data import synthetic, world

TEMPLATE_DIR = Path(__file__).resolve().parent
TASKS = ("tinyreason_reasoning", "tinyreason_choice")
GROUP = "tinyreason"
HELDOUT_FILE, TRAIN_FILE = "tinyreason_heldout.jsonl", "tinyreason_train.jsonl"
N_HELDOUT = 200  # +-3.5 points of standard error at 50% accuracy; ~20 s for the tiny preset on 2 cores
N_TRAIN = 32  # few-shot pool: generation takes the first n (same shots for every item), choice samples all 32
TRAIN_SEED = 7


def heldout_rows(n: int = N_HELDOUT) -> list[dict]:
    """The held-out problems the heldout probe scores too (eval_rows is prefix-stable)."""
    return [
        {**r, "options": [f"The answer is {c}." for c in r["choices"]], "trace": ""}  # same columns in both splits
        for r in synthetic.eval_rows(n, world.EVAL_SEED)
    ]


def train_rows(n: int = N_TRAIN) -> list[dict]:
    """Few-shot examples from the training split, so shots never leak held-out problems;
    their wrong options are other problems' answers (the task only needs 4 distinct)."""
    probs = world.problems(n, TRAIN_SEED, "train")
    pool = sorted({p.answer for p in probs})
    rng = random.Random(TRAIN_SEED)
    rows = []
    for i, p in enumerate(probs):
        choices = [p.answer, *rng.sample([a for a in pool if a != p.answer], 3)]
        rng.shuffle(choices)
        rows.append({"id": f"train-{i}", "task": p.task, "question": p.question, "answer": p.answer,
                     "choices": choices, "gold": choices.index(p.answer),
                     "options": [f"The answer is {c}." for c in choices], "trace": world.format_reasoning(p)})
    return rows


def _write_if_changed(path: Path, text: str) -> None:
    # Unchanged content keeps its mtime, so the datasets cache of the json file stays valid.
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)


def materialize(out_dir: str | Path, n_heldout: int = N_HELDOUT) -> Path:
    """Write the built-in tasks (data + YAMLs with absolute data paths) into out_dir."""
    out = Path(out_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    files = {HELDOUT_FILE: heldout_rows(n_heldout), TRAIN_FILE: train_rows()}
    for name, rows in files.items():
        _write_if_changed(out / name, _jsonl(rows))
    for template in sorted(TEMPLATE_DIR.glob("*.yaml")):
        text = template.read_text(encoding="utf-8")
        for name in files:
            # A JSON string is a valid YAML double-quoted scalar: safe for any path.
            text = text.replace(f": {name}", f": {json.dumps(str(out / name))}")
        _write_if_changed(out / template.name, text)
    return out
