"""lm-evaluation-harness as the benchmark engine, in-process through its Python API.

`run_suite` scores one exported model on the configured suite (the built-in
tinyreason tasks are always on the include path, next to any user task dirs)
and writes `lm_eval_results.json` plus per-sample outputs; every score keeps its
standard error. `objective` folds the scores into the one number a sweep
maximizes; `results_table` is the benchmark-by-stage table of the report. Every
known failure ends in an `EvalError` that names the model dir or the task and the fix.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import json
import math
from collections import defaultdict
from pathlib import Path

import torch

from tinyreason.config.evaluation import BenchmarkConfig, PromptConfig, TaskSpec, ThinkingConfig
from tinyreason.eval import reasoning
from tinyreason.eval import tasks as builtin
from tinyreason.eval.thinking import Think
from tinyreason.model.chat import CHAT_TEMPLATE
from tinyreason.model.templates import render_kwargs, saved_template
from tinyreason.stats import bootstrap_se

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


def load_lm(model_dir: Path, bench: BenchmarkConfig, trust_remote_code: bool, dtype: str = "auto",
            think: Think | None = None, prompt: PromptConfig | None = None):
    """The model every task of the suite runs on, loaded once: lm-eval's `hf` with reasoning-aware
    generation (eval/lm.py), or its vLLM engine (eval/lm_vllm.py) for `backend: vllm`."""
    think, prompt = think or Think(), prompt or PromptConfig()
    template = CHAT_TEMPLATE if prompt.chat_template == "platform" else None
    args = {"pretrained": str(model_dir), "dtype": dtype, "trust_remote_code": trust_remote_code,
            "batch_size": bench.batch_size}  # max_gen_toks travels in each task's generation settings
    if backend_for(bench) == "vllm":
        from tinyreason.eval import lm_vllm  # optional: imports vllm, which only GPU machines install

        build = functools.partial(lm_vllm.ReasoningVLLM, think=think, chat_template=template, **args)
    else:
        from tinyreason.eval import lm  # heavy: see _task_manager

        # the model's own template renders as in training (Llama-3's fixed date: model/templates.py)
        fixed = render_kwargs(saved_template(model_dir)) if template is None else {}
        build = functools.partial(lm.ReasoningHFLM, think=think, chat_template=template, **args,
                                  **({"chat_template_args": fixed} if fixed else {}),
                                  use_safetensors=True,  # as everywhere in tinyreason: a pickle can run code
                                  device="cuda" if torch.cuda.is_available() else "cpu")
    try:
        return build()
    except Exception as e:
        raise EvalError(f"model dir {model_dir} failed to load in lm-eval: {type(e).__name__}: "
                        f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}; re-export the stage "
                        "(delete its dir and re-run) or pass a dir with config.json, model.safetensors and a "
                        "tokenizer") from e


def backend_for(bench: BenchmarkConfig) -> str:
    """hf or vllm; `vllm` without vllm installed is an error that says what to do."""
    has_vllm = importlib.util.find_spec("vllm") is not None
    if bench.backend == "vllm" and not has_vllm:
        raise EvalError("evaluation.benchmarks.backend = 'vllm' but vllm is not installed; `pip install vllm` "
                        "on a GPU machine, or set backend: hf (transformers generate) or auto")
    if bench.backend == "auto":
        return "vllm" if has_vllm and torch.cuda.is_available() else "hf"
    return bench.backend


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


def _metric_name(key: str) -> str:
    """lm-eval's "metric,filter" key as tinyreason names it: a ",none" filter dropped."""
    return key.removesuffix(",none")


def _scores(results: dict) -> dict[str, dict[str, float]]:
    """{task: {metric: value}}; lm-eval's "metric,filter" keys lose a ",none" filter."""
    scores: dict[str, dict[str, float]] = {}
    for task, row in results.items():
        metrics = {}
        for key, value in row.items():
            if key in _NOT_METRICS or "_stderr" in key or not isinstance(value, (int, float)):
                continue
            metrics[_metric_name(key)] = float(value)
        if metrics:  # a group without aggregate_metric_list reports none
            scores[task] = metrics
    return scores


def stderrs(results: dict, scores: dict, samples: dict) -> dict[str, dict[str, float | None]]:
    """{task: {metric: standard error or None}}, keyed as `scores`. lm-eval writes "acc_stderr,none"
    beside "acc,none" ("N/A" when it computed none); a metric without one gets a bootstrap over
    the per-item values in the logged samples, and None when those are not kept either."""
    out: dict[str, dict[str, float | None]] = {}
    for task, metrics in scores.items():
        row, ses = results.get(task, {}), {}
        for metric in metrics:
            name, _, filt = metric.partition(",")
            se = row.get(f"{name}_stderr,{filt or 'none'}")
            ses[metric] = float(se) if isinstance(se, (int, float)) and math.isfinite(se) else None
            if ses[metric] is None:
                ses[metric] = _bootstrap_from_samples(samples.get(task) or [], name, filt or "none")
        out[task] = ses
    return out


def _bootstrap_from_samples(rows: list[dict], name: str, filt: str) -> float | None:
    values = [r[name] for r in rows if r.get("filter", "none") == filt and isinstance(r.get(name), (int, float))]
    return bootstrap_se(values) if len(values) >= 2 else None


def _primary_se(task: str, metric: str | None, stderr: dict, subtasks: dict) -> float | None:
    """The standard error of `_primary`'s number. For a group scored as the mean of its tasks,
    the mean of their ses: the se of a mean of correlated scores is at most that (Minkowski),
    and the tasks share their items, so assuming independence would understate it."""
    if stderr.get(task):
        try:
            return pick_metric(stderr[task], metric, f"task {task!r}")
        except EvalError:
            return None
    if task in subtasks:
        ses = [_primary_se(t, metric, stderr, subtasks) for t in subtasks[task]]
        return None if not ses or None in ses else sum(ses) / len(ses)
    return None


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


def _write(out: Path, model_dir: Path, bench: BenchmarkConfig, merged: dict, summary: dict) -> dict[str, str]:
    from lm_eval.utils import handle_non_serializable  # heavy: see _task_manager

    out.mkdir(parents=True, exist_ok=True)
    samples = merged.pop("samples", None) or {}
    files = {}
    for task, rows in samples.items():
        path = out / f"samples_{task}.jsonl"
        with path.open("w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, default=handle_non_serializable, ensure_ascii=False) + "\n")
        files[task] = str(path)
    doc = {"model_dir": str(model_dir), "suite": bench.model_dump(mode="json"), **summary,
           "samples_files": files, "lm_eval": merged}
    (out / RESULTS_FILE).write_text(json.dumps(doc, indent=2, default=handle_non_serializable))
    return files


def _evaluate(lm, groups: dict[tuple, list], bench: BenchmarkConfig, prompt: PromptConfig, tm, model_path,
              seed: int) -> dict:
    import lm_eval  # heavy: see _task_manager

    runs = []
    for (fewshot, limit), objs in groups.items():
        try:
            runs.append(lm_eval.simple_evaluate(
                model=lm, tasks=objs, num_fewshot=fewshot, limit=limit, batch_size=bench.batch_size,
                apply_chat_template=bench.apply_chat_template, fewshot_as_multiturn=bench.fewshot_as_multiturn,
                system_instruction=prompt.system_prompt,  # None: the template inserts the trained one
                log_samples=True, bootstrap_iters=BOOTSTRAP_ITERS, task_manager=tm, random_seed=seed,
                numpy_random_seed=1234 + seed, torch_random_seed=1234 + seed, fewshot_random_seed=1234 + seed))
        except Exception as e:
            names = ", ".join(getattr(o, "task_name", None) or getattr(o, "name", "?") for o in objs)
            raise EvalError(f"lm-eval failed on {names} for model {model_path}: {type(e).__name__}: {e}") from e
    return _merge(runs)


def _summarize(out: Path, model_path: Path, bench: BenchmarkConfig, specs: list[TaskSpec], merged: dict, lm,
               owners: dict) -> dict:
    """Scores, primary metrics, thinking counts and pass@k/maj@k of one run; files written."""
    results = merged.get("results", {})
    scores = _scores(results)
    stderr = stderrs(results, scores, merged.get("samples") or {})  # before samples may be dropped below
    think, sampling = reasoning.annotate(merged.get("samples") or {}, lm.recorder, owners)
    for task, extra in reasoning.sampled_scores(sampling).items():
        scores.setdefault(task, {}).update(extra)
    if not bench.log_samples:
        merged.pop("samples", None)
    summary = {"scores": scores, "stderr": stderr, "thinking": think, "sampling": sampling, "primary": {},
               "n": {t: int(r["sample_len"]) for t, r in results.items() if isinstance(r.get("sample_len"), int)}}
    subtasks = merged.get("group_subtasks", {})
    try:
        summary["primary"] = {s.task: _primary(s.task, s.metric, scores, subtasks) for s in specs}
    except EvalError as e:  # a misnamed metric must not throw away a finished run
        _write(out, model_path, bench, merged, summary)
        raise EvalError(f"{e}; every reported score is kept in {out / RESULTS_FILE}") from None
    summary["primary_stderr"] = {s.task: _primary_se(s.task, s.metric, stderr, subtasks) for s in specs}
    summary["samples_files"] = _write(out, model_path, bench, merged, summary)
    summary["results_file"] = str(out / RESULTS_FILE)
    return summary


def run_suite(model_dir: str | Path, bench: BenchmarkConfig, out_dir: str | Path, trust_remote_code: bool = False,
              dtype: str = "auto", thinking: ThinkingConfig | None = None, prompt: PromptConfig | None = None,
              seed: int = 0) -> dict:
    """Score one model on the suite; returns {"scores", "stderr", "n", "primary", "primary_stderr",
    "thinking", "sampling", "samples_files", "results_file"}: every metric, its standard error (None:
    unknown) and the item count per task, the suite's one number per task and its se; and, for a model that thinks, the same under "think_off"."""
    thinking, prompt = thinking or ThinkingConfig(), prompt or PromptConfig()
    if not bench.tasks:
        raise EvalError("evaluation.benchmarks.tasks is empty; add e.g. {task: tinyreason_reasoning}")
    out = Path(out_dir).expanduser().resolve()
    model_path = resolve_model_dir(model_dir)
    tm, loaded = load_tasks(bench.tasks, _include_dirs(bench, builtin.materialize(out / "tasks")))
    groups = _groups(bench.tasks, loaded)
    owners = reasoning.configure(bench.tasks, loaded, bench)
    lm = load_lm(model_path, bench, trust_remote_code, dtype, Think(thinking.mode, thinking.budget), prompt)
    merged = _evaluate(lm, groups, bench, prompt, tm, model_path, seed)
    result = _summarize(out, model_path, bench, bench.tasks, merged, lm, owners)
    if reasoning.think_off_wanted(thinking, lm.tokenizer, owners):
        lm.think = Think("off")  # the same model, tasks and seeds: only the empty think block differs
        lm.recorder.clear()
        off_groups = reasoning.generative_groups(groups)
        kept = {_leaves(o)[0] for objs in off_groups.values() for o in objs}
        specs = [s for s, obj in zip(bench.tasks, loaded) if _leaves(obj)[0] in kept]
        merged = _evaluate(lm, off_groups, bench, prompt, tm, model_path, seed)
        result["think_off"] = _summarize(out / "think_off", model_path, bench, specs, merged, lm, owners)
    return result
