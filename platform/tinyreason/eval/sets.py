"""The evaluation sets of an experiment, as the texts a training blend must not contain.

Every set with local data is matched, each on its own: the held-out probe and the built-in
lm-eval tasks (the same synthetic held-out stream), each `evaluation.decontamination.files`
file, and every other configured benchmark whose items can be read here: the data files of
tasks in `include_path` dirs, and lm-eval's own tasks whose datasets are in the local
Hugging Face cache (eval/task_data.py). A configured benchmark whose data cannot be read is
named, with why, on every blend card.
"""

from __future__ import annotations

from pathlib import Path

from tinyreason.config.sections import EvalConfig
from tinyreason.data.decontam import (DEFAULT_N, DEFAULT_THRESHOLD, SYNTHETIC_N, SYNTHETIC_THRESHOLD,
                                      DecontaminationSuite, Decontaminator, eval_texts_from_files,
                                      eval_texts_from_synthetic)
from tinyreason.data.sources import expand_files
from tinyreason.eval.task_data import task_items
from tinyreason.eval.tasks import GROUP, N_HELDOUT, TASKS


def decontaminator_for(ev: EvalConfig) -> DecontaminationSuite | None:
    """The evaluation sets of an experiment's evaluation config, each a Decontaminator; None
    when decontamination is off or there is no evaluation set at all."""
    dc = ev.decontamination
    if not dc.enabled:
        return None
    sets, unreadable = [], []

    def add(texts: list[str], name: str, n: int, threshold: float) -> None:
        try:
            sets.append(Decontaminator(texts, n=dc.n or n, threshold=dc.threshold or threshold, name=name))
        except ValueError as e:  # items too short to match on: named, not fatal
            unreadable.append({"name": name, "why": str(e)})

    # the probe and the built-in tasks draw from the same held-out stream: the larger covers both
    builtin = any(t.task in (*TASKS, GROUP) for t in ev.benchmarks.tasks)
    n_synthetic = max(ev.heldout_problems, N_HELDOUT if builtin else 0)
    if n_synthetic:
        add(eval_texts_from_synthetic(n_synthetic), f"{n_synthetic} held-out synthetic problems in each phrasing "
            "(the probe and the built-in tinyreason tasks)", SYNTHETIC_N, SYNTHETIC_THRESHOLD)
    for path in expand_files(dc.files) if dc.files else []:
        add(eval_texts_from_files(path), f"file {path}", DEFAULT_N, DEFAULT_THRESHOLD)
    others = [t.task for t in ev.benchmarks.tasks if t.task not in (*TASKS, GROUP)]
    dirs = [str(Path(d).expanduser().resolve()) for d in ev.benchmarks.include_path]
    for d in dirs:
        if not Path(d).is_dir():
            unreadable.append({"name": f"include_path {d}", "why": "no such directory"})
    if others:
        for task in task_items(others, [d for d in dirs if Path(d).is_dir()]):
            if task.texts:
                shown = task.sources[0] + (f" and {len(task.sources) - 1} more" if len(task.sources) > 1 else "")
                add(task.texts, f"task {task.name} ({shown})", DEFAULT_N, DEFAULT_THRESHOLD)
            if task.unreadable:
                part = "part of it: " if task.texts else ""
                unreadable.append({"name": f"task {task.name}", "why": part + "; ".join(task.unreadable)})
    if not sets and not unreadable:
        return None
    return DecontaminationSuite(sets, unreadable)
