"""The evaluation sets of an experiment, as the texts a training blend must not contain.

Every set with local data is matched: the held-out probe and the built-in lm-eval tasks
(the same synthetic held-out stream), and `evaluation.decontamination.files`.
"""

from __future__ import annotations

from tinyreason.config.sections import EvalConfig
from tinyreason.data.decontam import (DEFAULT_N, DEFAULT_THRESHOLD, SYNTHETIC_N, SYNTHETIC_THRESHOLD,
                                      Decontaminator, eval_texts_from_files, eval_texts_from_synthetic)
from tinyreason.eval.tasks import GROUP, N_HELDOUT, TASKS


def decontaminator_for(ev: EvalConfig) -> Decontaminator | None:
    """One Decontaminator for an experiment's evaluation config; None when decontamination
    is off or no set has local data to match."""
    dc = ev.decontamination
    if not dc.enabled:
        return None
    # the probe and the built-in tasks draw from the same held-out stream: the larger covers both
    builtin = any(t.task in (*TASKS, GROUP) for t in ev.benchmarks.tasks)
    n_synthetic = max(ev.heldout_problems, N_HELDOUT if builtin else 0)
    texts, names = [], []
    if n_synthetic:
        texts += eval_texts_from_synthetic(n_synthetic)
        names.append(f"{n_synthetic} held-out synthetic problems")
    if dc.files:
        texts += eval_texts_from_files(dc.files)
        names.append(f"files {dc.files}")
    if not texts:
        return None
    return Decontaminator(texts, n=dc.n or (DEFAULT_N if dc.files else SYNTHETIC_N),
                          threshold=dc.threshold or (DEFAULT_THRESHOLD if dc.files else SYNTHETIC_THRESHOLD),
                          name=" + ".join(names))
