"""lm-evaluation-harness as the benchmark engine, in-process through its Python API.

`run_suite` scores one exported model on the configured suite (the built-in
tinyreason tasks are always on the include path, next to any user task dirs)
and writes `lm_eval_results.json` plus per-sample outputs. `objective` folds
the scores into the one number a sweep maximizes; `results_table` is the
benchmark-by-stage table of the report. Every known failure ends in an
`EvalError` that names the model dir or the task and the fix.
"""

from __future__ import annotations

import difflib
import json
import math
from collections import defaultdict
from pathlib import Path

import torch

from tinyreason.config.sections import BenchmarkConfig, TaskSpec
from tinyreason.eval import tasks as builtin
from tinyreason.model.templates import render_kwargs, saved_template

RESULTS_FILE = "lm_eval_results.json"
# Bootstrapped stderr applies to non-mean metrics only; 1,000 resamples pin it to a few
# percent of itself, lm-eval's default of 100,000 is 100x the work for digits nobody reads.
BOOTSTRAP_ITERS = 1000
_NOT_METRICS = ("alias", "name", "sample_len", "samples")


class EvalError(ValueError):
    """An evaluation that cannot run, phrased for the person who configured it."""


# --------------------------------------------------------------------------- inputs


def resolve_model_dir(path: str | Path) -> Path:
    """A model dir, or a stage output dir (which keeps its export in model/)."""
    p = Path(path).expanduser().resolve()
    if (p / "model" / "config.json").exists():
        return p / "model"
    if not (p / "config.json").exists():
        raise EvalError(
            f"model dir {p} cannot be loaded: no config.json there"
            f"{'' if p.exists() else ' (the dir does not exist)'}; pass an exported model dir "
            "(config.json + model.safetensors + tokenizer) or a stage output dir that has model/"
        )
    return p


def _include_dirs(bench: BenchmarkConfig, builtin: Path) -> list[str]:
    dirs = [str(builtin)]
    for d in bench.include_path:
        p = Path(d).expanduser().resolve()
        if not p.is_dir():
            raise EvalError(f"evaluation.benchmarks.include_path: task dir {d!r} does not exist (resolved to {p})")
        dirs.append(str(p))
    return dirs


def _task_manager(names: list[str], include_dirs: list[str]):
    from lm_eval.tasks import TaskManager  # heavy (~3.5 s): only in the evaluation task, never the driver

    # Indexing lm-eval's own 200+ task dirs takes ~5 s on 2 cores: only pay it when
    # the suite names a task that the built-in and user dirs do not define.
    local = TaskManager(include_path=include_dirs, include_defaults=False)
    if all(n in local.all_tasks for n in names):
        return local
    return TaskManager(include_path=include_dirs)


def _missing_files(cfg: dict) -> list[str]:
    """Local data files a task config names that are not on disk (relative to the cwd,
    as `datasets` resolves them); hub datasets and glob patterns are left to lm-eval."""
    files = (cfg.get("dataset_kwargs") or {}).get("data_files") or []
    if isinstance(files, dict):
        files = list(files.values())
    flat = [f for v in ([files] if isinstance(files, str) else files) for f in ([v] if isinstance(v, str) else v)]
    return [f for f in flat if "*" not in f and "://" not in f and not Path(f).expanduser().exists()]


def _check_data(name: str, index: dict, seen: set | None = None) -> None:
    """Walk a task, group or tag down to its leaf tasks and fail on a missing data file."""
    seen = set() if seen is None else seen
    if name in seen or name not in index:
        return
    seen.add(name)
    entry = index[name]
    cfg = entry.cfg or {}
    if "group" in cfg:
        children = [c if isinstance(c, str) else c.get("task") for c in cfg.get("task", [])]
    elif "task" in cfg:
        missing = _missing_files(cfg)
        if missing:
            raise EvalError(
                f"task {name!r}: data file {missing[0]} is missing (named by {entry.yaml_path}); "
                "create it, or fix dataset_kwargs.data_files (relative paths resolve against the working dir)"
            )
        return
    else:  # a tag: every task that carries it
        children = [n for n, e in index.items() if name in e.tags]
    for child in children:
        if isinstance(child, str):
            _check_data(child, index, seen)


def load_tasks(specs: list[TaskSpec], include_dirs: list[str]) -> tuple:
    """The TaskManager and one loaded Task/Group (a list, for a tag) per spec, checked
    before any model loads so a data problem costs seconds, not a model load."""
    names = [s.task for s in specs]
    tm = _task_manager(names, include_dirs)
    loaded = []
    for name in names:
        if name not in tm.all_tasks:
            near = difflib.get_close_matches(name, tm.all_tasks, n=3)
            raise EvalError(f"unknown lm-eval task {name!r}" + (f"; did you mean {', '.join(near)}?" if near else "")
                            + f"; task dirs searched besides lm-eval's own: {', '.join(include_dirs)}")
        _check_data(name, tm.task_index)
        try:
            out = tm.load([name])
        except Exception as e:  # datasets/hub errors: name the task, keep the cause chained
            raise EvalError(f"task {name!r} could not be loaded: {type(e).__name__}: {e}. Offline machines need "
                            "the dataset in the HF cache or as local data_files") from e
        obj = out.get("groups", {}).get(name)
        obj = obj if obj is not None else out["tasks"].get(name)
        loaded.append(obj if obj is not None else list(out["tasks"].values()))
    return tm, loaded


def load_lm(model_dir: Path, bench: BenchmarkConfig, trust_remote_code: bool, dtype: str = "auto"):
    """lm-eval's `hf` model, built once and reused by every few-shot group of the suite."""
    from lm_eval.api.registry import get_model  # heavy: see _task_manager

    args = {"pretrained": str(model_dir), "dtype": dtype, "trust_remote_code": trust_remote_code,
            "use_safetensors": True,  # as everywhere in tinyreason: a pickle checkpoint can run code
            "device": "cuda" if torch.cuda.is_available() else "cpu"}
    fixed = render_kwargs(saved_template(model_dir))  # the chat template renders as in training (Llama-3's date)
    if fixed:
        args["chat_template_args"] = fixed
    try:
        return get_model("hf").create_from_arg_obj(args, {"batch_size": bench.batch_size})
    except Exception as e:
        raise EvalError(f"model dir {model_dir} failed to load in lm-eval: {type(e).__name__}: "
                        f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}; re-export the stage "
                        "(delete its dir and re-run) or pass a dir with config.json, model.safetensors and a "
                        "tokenizer") from e


# --------------------------------------------------------------------------- running


def _groups(specs: list[TaskSpec], loaded: list) -> dict[tuple, list]:
    # simple_evaluate takes one num_fewshot and one limit per call: run each distinct
    # (num_fewshot, limit) pair as its own call on the same loaded model.
    groups: dict[tuple, list] = defaultdict(list)
    owner: dict[str, str] = {}
    for spec, obj in zip(specs, loaded):
        for leaf in _leaves(obj):  # one task's scores and samples would overwrite the other's
            if owner.setdefault(leaf, spec.task) != spec.task:
                raise EvalError(f"task {leaf!r} is in the suite twice (via {owner[leaf]!r} and {spec.task!r}); "
                                "list it once")
        limit = None if spec.limit is None else (spec.limit if spec.limit < 1 else int(spec.limit))
        groups[(spec.num_fewshot, limit)].extend(obj if isinstance(obj, list) else [obj])
    return groups


def _leaves(obj) -> list[str]:
    if isinstance(obj, list):
        return [t.task_name for t in obj]
    if hasattr(obj, "get_all_tasks"):
        return [t.task_name for t in obj.get_all_tasks()]
    return [obj.task_name]


def _merge(runs: list[dict]) -> dict:
    merged: dict = {}
    for res in runs:
        for key, value in res.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key].update(value)
            elif key not in merged:
                merged[key] = value
    return merged


def _scores(results: dict) -> dict[str, dict[str, float]]:
    """{task: {metric: value}}; lm-eval's "metric,filter" keys lose a ",none" filter."""
    scores: dict[str, dict[str, float]] = {}
    for task, row in results.items():
        metrics = {}
        for key, value in row.items():
            if key in _NOT_METRICS or "_stderr" in key or not isinstance(value, (int, float)):
                continue
            metrics[key.removesuffix(",none")] = float(value)
        if metrics:  # a group without aggregate_metric_list reports none
            scores[task] = metrics
    return scores


def pick_metric(metrics: dict[str, float], wanted: str | None, where: str) -> float:
    """The wanted metric ("acc", or "exact_match,strict-match" for a filter); None: the first."""
    if not metrics:
        raise EvalError(f"{where}: lm-eval reported no metrics")
    if wanted is None:
        return next(iter(metrics.values()))
    hits = [k for k in metrics if k == wanted or k.startswith(wanted + ",")]
    if len(hits) != 1:
        raise EvalError(f"{where}: metric {wanted!r} is {'ambiguous' if hits else 'not reported'}; "
                        f"reported: {', '.join(metrics)}")
    return metrics[hits[0]]


def _primary(task: str, metric: str | None, scores: dict, subtasks: dict) -> float:
    if scores.get(task):
        return pick_metric(scores[task], metric, f"task {task!r}")
    if task in subtasks:  # a group without aggregate_metric_list: the mean of its tasks
        values = [_primary(t, metric, scores, subtasks) for t in subtasks[task]]
        return sum(values) / len(values)
    raise EvalError(f"task {task!r}: lm-eval reported no metrics for it")


def _write(out: Path, model_dir: Path, bench: BenchmarkConfig, merged: dict, scores: dict,
           primary: dict) -> dict[str, str]:
    from lm_eval.utils import handle_non_serializable  # heavy: see _task_manager

    samples = merged.pop("samples", None) or {}
    files = {}
    for task, rows in samples.items():
        path = out / f"samples_{task}.jsonl"
        with path.open("w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, default=handle_non_serializable, ensure_ascii=False) + "\n")
        files[task] = str(path)
    doc = {"model_dir": str(model_dir), "suite": bench.model_dump(mode="json"), "primary": primary,
           "scores": scores, "samples_files": files, "lm_eval": merged}
    (out / RESULTS_FILE).write_text(json.dumps(doc, indent=2, default=handle_non_serializable))
    return files


def run_suite(model_dir: str | Path, bench: BenchmarkConfig, out_dir: str | Path, trust_remote_code: bool = False,
              dtype: str = "auto") -> dict:
    """Score one model on the suite; returns {"scores", "primary", "samples_files", "results_file"}."""
    import lm_eval  # heavy: see _task_manager

    if not bench.tasks:
        raise EvalError("evaluation.benchmarks.tasks is empty; add e.g. {task: tinyreason_reasoning}")
    out = Path(out_dir).expanduser().resolve()
    model_path = resolve_model_dir(model_dir)
    tm, loaded = load_tasks(bench.tasks, _include_dirs(bench, builtin.materialize(out / "tasks")))
    groups = _groups(bench.tasks, loaded)
    lm = load_lm(model_path, bench, trust_remote_code, dtype)
    runs = []
    for (fewshot, limit), objs in groups.items():
        try:
            res = lm_eval.simple_evaluate(
                model=lm, tasks=objs, num_fewshot=fewshot, limit=limit, batch_size=bench.batch_size,
                apply_chat_template=bench.apply_chat_template, fewshot_as_multiturn=bench.fewshot_as_multiturn,
                log_samples=bench.log_samples, gen_kwargs={"max_gen_toks": bench.max_gen_toks},
                bootstrap_iters=BOOTSTRAP_ITERS, task_manager=tm)
        except Exception as e:
            names = ", ".join(getattr(o, "task_name", None) or getattr(o, "name", "?") for o in objs)
            raise EvalError(f"lm-eval failed on {names} for model {model_path}: {type(e).__name__}: {e}") from e
        runs.append(res)
    merged = _merge(runs)
    scores = _scores(merged.get("results", {}))
    subtasks = merged.get("group_subtasks", {})
    try:
        primary = {s.task: _primary(s.task, s.metric, scores, subtasks) for s in bench.tasks}
    except EvalError as e:  # a misnamed metric must not throw away a finished run
        _write(out, model_path, bench, merged, scores, {})
        raise EvalError(f"{e}; every reported score is kept in {out / RESULTS_FILE}") from None
    files = _write(out, model_path, bench, merged, scores, primary)
    return {"scores": scores, "primary": primary, "samples_files": files, "results_file": str(out / RESULTS_FILE)}


# --------------------------------------------------------------------------- sweeps and reports


def objective(primary: dict[str, float], weights: dict[str, float],
              scores: dict[str, dict[str, float]] | None = None) -> float:
    """Weighted mean of benchmark scores. Keys are "task" (its primary metric) or
    "task/metric" (looked up in `scores`); empty weights: the plain mean of `primary`."""
    if not weights:
        if not primary:
            raise ValueError("objective: no benchmark scores to average; configure evaluation.benchmarks.tasks")
        return sum(primary.values()) / len(primary)
    total = wsum = 0.0
    for key, weight in weights.items():
        total += weight * _lookup(key, primary, scores)
        wsum += weight
    if wsum <= 0:
        raise ValueError(f"objective: weights must sum to more than 0, got {wsum} from {weights}")
    return total / wsum


def _lookup(key: str, primary: dict, scores: dict | None) -> float:
    if key in primary:
        return primary[key]
    task, _, metric = key.partition("/")
    if metric and scores and task in scores:
        try:
            return pick_metric(scores[task], metric, f"objective weight {key!r}")
        except EvalError as e:
            raise ValueError(str(e)) from None
    known = sorted(primary) + sorted(f"{t}/{m}" for t in (scores or {}) for m in scores[t])
    raise ValueError(f"objective weight {key!r} names a benchmark that was not scored; add task "
                     f"{task!r} to evaluation.benchmarks.tasks or drop the weight. Scored: {', '.join(known[:20])}")


def _fmt(v: float | None) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def results_table(columns: dict[str, dict[str, float]], base: str | None = None) -> str:
    """Markdown: one row per benchmark, one column per stage (base first), deltas vs base."""
    order = ([base] if base in columns else []) + [c for c in columns if c != base]
    rows = list(dict.fromkeys(b for c in order for b in columns[c]))
    lines = ["| benchmark | " + " | ".join(order) + " |", "| --- |" + " ---: |" * len(order)]
    for bench_name in rows:
        ref = columns[base].get(bench_name) if base in columns else None
        cells = []
        for col in order:
            v = columns[col].get(bench_name)
            cell = _fmt(v)
            if col != base and v is not None and ref is not None:
                cell += f" ({v - ref:+.3f})"
            cells.append(cell)
        lines.append(f"| {bench_name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
