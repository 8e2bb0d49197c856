"""Token-length accounting and what `data.overlong` does with rows longer than `max_length`.

A tokenize step (data/tokenize.py) returns every row it saw, kept or not, with three accounting
columns: its length in tokens under the stage's tokenizer before any cut, its source, and its
fate. The pipeline (`tokenize.in_process` / `tokenize.on_ray`) copies those columns out and
`settle`s the batch (rows that train, accounting removed) before packing. `length_report` turns
the copies into the per-source percentiles and counts that reach the stage manifest and cards.

Fates: `kept`; `truncated` (overlong: truncate) and `truncated_in_think` (cut inside a <think>
block: the row's labels lose `</think>`, its answer and the end of turn); `dropped_overlong`
(overlong: drop); `error_overlong` (overlong: error, which fails the stage naming the counts);
`no_labels` (nothing of an assistant turn left after the cut); `template_mismatch` (the template's
assistant turns could not be found whole in the row, e.g. a reply holding the end-of-turn token's
text: refused rather than trained with a wrong mask).
"""

from __future__ import annotations

import collections
import math
from typing import Any

TOKENS, SOURCE, FATE = "_tokens", "_source", "_fate"
ACCOUNTING = (TOKENS, SOURCE, FATE)

KEPT, TRUNCATED, CUT_IN_THINK = "kept", "truncated", "truncated_in_think"
DROPPED, OVER, NO_LABELS, MISMATCH = "dropped_overlong", "error_overlong", "no_labels", "template_mismatch"
TRAINED = (KEPT, TRUNCATED, CUT_IN_THINK)
FATES = (KEPT, TRUNCATED, CUT_IN_THINK, DROPPED, OVER, NO_LABELS, MISMATCH)
PERCENTILES = (50, 95)


def source_of(row: dict) -> str:
    """A blend row's source as its card names it: dataset, and subset when there is one."""
    name = row.get("_source_dataset") or "unknown"
    return f"{name}/{row['_source_subset']}" if row.get("_source_subset") else name


def untrained(tokens: int, fate: str, columns: tuple[str, ...]) -> dict:
    """A row that will not train: its accounting, and empty training columns."""
    return {**{c: [] for c in columns}, TOKENS: tokens, FATE: fate}


def settle(batch: dict[str, Any]) -> dict[str, Any]:
    """The rows that train, without the accounting columns (a pure batch transform)."""
    if FATE not in batch:
        return batch
    keep = [i for i, fate in enumerate(batch[FATE]) if fate in TRAINED]
    return {k: [v[i] for i in keep] for k, v in batch.items() if k not in ACCOUNTING}


def accounting(batch: dict[str, Any]) -> dict[str, list] | None:
    if FATE not in batch:
        return None
    return {c: [x.item() if hasattr(x, "item") else x for x in batch[c]] for c in ACCOUNTING}


def nearest_rank(sorted_values: list[int], p: float) -> int:
    """The p-th percentile by nearest rank: a length some row really has."""
    if not sorted_values:
        return 0
    return sorted_values[max(0, math.ceil(p / 100 * len(sorted_values)) - 1)]


def length_report(ledger: list[dict[str, list]], max_length: int, overlong: str) -> dict | None:
    """Per source and in total: rows, token-length percentiles (p50, p95, max), rows over
    max_length, and each fate's count. None when no step accounted (pretrain documents)."""
    lengths: dict[str, list[int]] = collections.defaultdict(list)
    fates: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for part in ledger:
        for n, src, fate in zip(part[TOKENS], part[SOURCE], part[FATE]):
            lengths[src].append(int(n))
            fates[src][fate] += 1
    if not lengths:
        return None

    def summary(values: list[int], counts: collections.Counter) -> dict:
        values = sorted(values)
        out = {"rows": len(values), **{f"p{p}": nearest_rank(values, p) for p in PERCENTILES},
               "max": values[-1], "over_max_length": sum(v > max_length for v in values)}
        out.update({f: counts.get(f, 0) for f in FATES})
        return out

    sources = {s: summary(v, fates[s]) for s, v in sorted(lengths.items())}
    total = summary([n for v in lengths.values() for n in v], sum(fates.values(), collections.Counter()))
    return {"max_length": max_length, "overlong": overlong, "sources": sources, "total": total}


def failure(report: dict | None, where: str) -> str | None:
    """The error a stage fails with under `overlong: error`, or None."""
    if not report or report["total"][OVER] == 0:
        return None
    worst = ", ".join(f"{s}: {r[OVER]} (max {r['max']} tokens)" for s, r in report["sources"].items() if r[OVER])
    return (f"{where}: {report['total'][OVER]} rows are longer than data.max_length={report['max_length']} tokens "
            f"({worst}) and data.overlong is error; fix: raise data.max_length, or set data.overlong: drop "
            "(counted on the card) or truncate")


def warnings(report: dict | None) -> list[str]:
    """What a stage warns about after tokenizing: truncations inside <think> and refused rows."""
    if not report:
        return []
    t, out = report["total"], []
    if t[CUT_IN_THINK]:
        out.append(f"{t[CUT_IN_THINK]} of {t['rows']} rows were truncated inside a <think> block (data.overlong: "
                   "truncate): their labels hold no </think>, answer or end of turn; raise data.max_length or drop them")
    if t[MISMATCH]:
        out.append(f"{t[MISMATCH]} rows were refused: their assistant turns could not be found whole in the chat "
                   "template's rendering (a reply holding an end-of-turn token's text?)")
    return out
