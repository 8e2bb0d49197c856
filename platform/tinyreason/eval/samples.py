"""Per-sample outputs of a generation task, and the scores that need every sample: pass@k, maj@k.

lm-eval scores a task with `repeats: n` on the first sample only (its default `take_first`
filter). Here each of the n samples is scored alone by the task's own filters and metric, its
vote key taken from the filtered answer, and the per-sample file keeps all of it:

    "generations":   [{output, thinking, answer, no_answer, think_tokens, forced_close, hit_limit}, ...]
    "repeat_scores": [1.0, 0.0, ...]   the task's metric on each sample
    "repeat_votes":  ["=12", null, ...] answers.answer_key of each filtered answer
    "reference":     "=12"             the key of the gold answer (doc_to_target), for maj@k

so that pass@k and maj@k can be recomputed from the file alone (`k_scores`).
"""

from __future__ import annotations

from tinyreason.answers import answer_key, extract_final
from tinyreason.stats import maj_at_k_over_items, pass_at_k_over_items


def metric_and_filter(task_obj, wanted: str | None) -> tuple[str, str]:
    """The metric pass@k counts and the filter whose output it reads: TaskSpec.metric
    ("exact_match,flexible-extract") or the task's first metric and first filter."""
    filters = [f["name"] for f in (task_obj.config.filter_list or [])] or ["none"]
    metrics = [m["metric"] for m in (task_obj.config.metric_list or [])]
    metric, _, filt = (wanted or "").partition(",")
    return metric or (metrics[0] if metrics else "acc"), filt or filters[0]


def _pipeline(task_obj, filter_name: str) -> list:
    # The filter pipeline the task applies, rebuilt from its public config (as lm-eval's Task does)
    from lm_eval.filters import build_filter_ensemble  # heavy: lm-eval, only inside the evaluation task

    for cfg in task_obj.config.filter_list or []:
        if cfg["name"] == filter_name:
            parts = [(f["function"], {k: v for k, v in f.items() if k != "function"}) for f in cfg["filter"]]
            return build_filter_ensemble(filter_name, parts).filters
    return build_filter_ensemble("none", [("take_first", None)]).filters


def filtered(pipeline: list, response: str, doc: dict):
    """One sample's response through the task's filters, as if it were the only one."""
    resps = [[response]]
    for make in pipeline:
        resps = list(make().apply(resps, [doc]))
    return resps[0]


def score_repeats(task_obj, rows: list[dict], metric: str, filter_name: str) -> None:
    """Add each sample's metric value and vote key to the rows of `filter_name` (in place)."""
    pipeline = _pipeline(task_obj, filter_name)
    for row in rows:
        if row.get("filter") != filter_name:
            continue
        responses = [r[0] if isinstance(r, list) else r for r in row["resps"][0]]
        scores, votes = [], []
        for response in responses:
            answer = filtered(pipeline, response, row["doc"])
            value = task_obj.process_results(row["doc"], [answer]).get(metric)
            scores.append(None if value is None else float(value))
            votes.append(answer_key(answer) if isinstance(answer, str) else None)
        row["repeat_scores"], row["repeat_votes"] = scores, votes
        target = row.get("target")
        row["reference"] = answer_key(extract_final(str(target)) or str(target)) if target is not None else None


def attach_generations(rows: list[dict], by_doc: dict[int, list]) -> None:
    """The recorded generations (thinking kept) beside lm-eval's responses, per document."""
    for row in rows:
        gens = by_doc.get(row["doc_id"])
        if gens:
            row["generations"] = [g.record() for g in gens]


def k_scores(rows: list[dict], passes: list[int], majs: list[int]) -> dict:
    """pass@k (unbiased) and maj@k with standard errors over problems, from annotated rows.
    A metric that is not 0/1 has no pass@k; a task without gold answers has no maj@k."""
    rows = [r for r in rows if "repeat_scores" in r]
    if not rows:
        return {}
    n = min(len(r["repeat_scores"]) for r in rows)
    out: dict = {"n": n, "problems": len(rows)}
    values = [v for r in rows for v in r["repeat_scores"][:n]]
    if passes and all(v in (0.0, 1.0) for v in values):
        counts = [sum(v == 1.0 for v in r["repeat_scores"][:n]) for r in rows]
        for k in passes:
            s = pass_at_k_over_items(counts, n, k)
            out[f"pass@{k}"] = {"value": s.value, "se": s.se, "n": s.n}
    elif passes:
        out["pass@k_skipped"] = "the metric is not 0/1 per sample"
    refs = [r["reference"] for r in rows]
    if majs and all(ref is not None for ref in refs):
        for k in majs:
            s = maj_at_k_over_items([r["repeat_votes"][:n] for r in rows], refs, k)
            out[f"maj@{k}"] = {"value": s.value, "se": s.se, "n": s.n}
    elif majs:
        out["maj@k_skipped"] = "no gold answer to vote against"
    return out
