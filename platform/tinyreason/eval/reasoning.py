"""The suite's reasoning-model settings, applied to loaded lm-eval tasks, and what they add to
its results: decoding and repeats per task, per-sample thinking records, pass@k and maj@k,
counts of answers that never came (an unclosed trace), and the thinking-off rerun's choice.

Works on lm-eval's Task objects through their public config (`set_config`, `config`), and
imports nothing from lm-eval itself, so it loads without it.
"""

from __future__ import annotations

import logging

from tinyreason.config.evaluation import BenchmarkConfig, TaskSpec, ThinkingConfig, gen_limit
from tinyreason.eval import samples, thinking

log = logging.getLogger(__name__)


def leaves(obj) -> list:
    """The leaf Task objects of a loaded task, group, or tag (a list)."""
    if isinstance(obj, list):
        return obj
    if hasattr(obj, "get_all_tasks"):
        return obj.get_all_tasks()
    return [obj]


def is_generative(task_obj) -> bool:
    return task_obj.get_config("output_type") == "generate_until"


def generation_kwargs(spec: TaskSpec, bench: BenchmarkConfig) -> dict:
    """What replaces a task's YAML generation settings: the spec's decoding, its limit, its seed,
    and its stop sequences when it names any (else the task's own stay)."""
    sampling = spec.sampling_config().sampling()
    kwargs = {"max_gen_toks": gen_limit(spec, bench), "seed": spec.seed, "do_sample": sampling["do_sample"],
              "temperature": sampling.get("temperature", 0.0), "top_p": sampling.get("top_p", 1.0),
              "top_k": sampling.get("top_k")}
    if spec.until is not None:
        kwargs["until"] = list(spec.until)
    return kwargs


def configure(specs: list[TaskSpec], loaded: list, bench: BenchmarkConfig) -> dict[str, tuple[TaskSpec, object]]:
    """Set decoding and repeats on every generation task of the suite; returns
    {leaf task name: (its spec, its Task)} for every leaf, generative or not."""
    owners = {}
    for spec, obj in zip(specs, loaded):
        for task_obj in leaves(obj):
            owners[task_obj.task_name] = (spec, task_obj)
            if not is_generative(task_obj):
                if spec.repeats > 1:
                    log.warning("task %s scores log-likelihoods: repeats %d does nothing for it",
                                task_obj.task_name, spec.repeats)
                continue
            task_obj.set_config(key="generation_kwargs", value=generation_kwargs(spec, bench), update=True)
            task_obj.set_config(key="repeats", value=spec.repeats)
    return owners


def annotate(sample_rows: dict[str, list[dict]], recorder, owners: dict) -> tuple[dict, dict]:
    """Thinking records and per-sample scores added to the per-sample rows (in place);
    returns ({task: thinking counts}, {task: pass@k / maj@k with standard errors})."""
    counts, sampling = {}, {}
    for task, rows in sample_rows.items():
        by_doc = recorder.by_task.get(task)
        if not by_doc or task not in owners:
            continue
        spec, task_obj = owners[task]
        samples.attach_generations(rows, by_doc)
        counts[task] = thinking.summarize([g for gens in by_doc.values() for g in gens])
        passes, majs = spec.ks()
        if passes or majs:
            metric, filt = samples.metric_and_filter(task_obj, spec.metric)
            samples.score_repeats(task_obj, rows, metric, filt)
            sampling[task] = {"metric": metric, "filter": filt, **samples.k_scores(rows, passes, majs)}
    return counts, sampling


def sampled_scores(sampling: dict) -> dict[str, dict[str, float]]:
    """{task: {"pass@1": v, "maj@8": v, ...}}: rows the objective and the table can name."""
    return {task: {k: v["value"] for k, v in entry.items() if isinstance(v, dict) and "value" in v}
            for task, entry in sampling.items()}


def think_off_wanted(cfg: ThinkingConfig, tok, owners: dict) -> bool:
    """A second, thinking-off run: asked for, a model that thinks, and a generation task to run."""
    return (cfg.compare_off and cfg.mode != "off" and thinking.has_think_tokens(tok)
            and any(is_generative(t) for _, t in owners.values()))


def generative_groups(groups: dict[tuple, list]) -> dict[tuple, list]:
    """The suite's run groups cut to the tasks that generate (the rest score the same either way)."""
    out = {}
    for key, objs in groups.items():
        kept = [o for o in objs if all(is_generative(t) for t in leaves(o))]
        if kept:
            out[key] = kept
    return out
