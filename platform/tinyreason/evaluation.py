"""Evaluate one model: the held-out probe, the lm-eval suite, and after a pretrain stage its
validation perplexity and samples. Each part is a Ray task, so it lands wherever a CPU or
GPU is free; results are cached beside the model, keyed by the evaluation settings.

A failure here never costs a trained model: a stage's manifest is written before it is
evaluated, and the error names the model, the part that failed and where the model is.
"""

from __future__ import annotations

import logging
from pathlib import Path

import ray

from tinyreason.config.experiment import StageConfig
from tinyreason.config.evaluation import BenchmarkConfig, PromptConfig, ThinkingConfig
from tinyreason.context import RunContext
from tinyreason.eval import pretrain
from tinyreason.eval.harness import EvalError, run_suite
from tinyreason.eval.heldout import evaluate_heldout
from tinyreason.outputs import ModelRef, OutputDir, digest
from tinyreason.runtime import free_task, root_message
from tinyreason.storage import Storage

log = logging.getLogger(__name__)


def gpus_per_task() -> int:
    return 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0


def evaluate(ctx: RunContext, model: ModelRef, place: OutputDir, stage: StageConfig | None = None) -> dict | None:
    """Held-out problems (accuracy + <think> health), the lm-eval suite and, when `stage` is a
    pretrain stage, perplexity on its blend's held-out split plus fixed-prompt samples
    (result["pretrain"]). The base model passes the first pretrain stage, so its perplexity is
    the "before" of that stage's. `place` is the output dir the results are cached in."""
    ev, seed = ctx.cfg.evaluation, ctx.cfg.seed
    key = ev.model_dump()
    if seed or model.revision:  # seed 0 and unpinned models keep the keys evaluations had before
        key.update(seed=seed, revision=model.revision)
    blend = None
    if stage is not None and stage.kind == "pretrain":
        blend = ctx.blend(stage)
        key["pretrain"] = {"blend": blend.manifest["key"], "max_length": stage.data.max_length, **pretrain.settings()}
    if ev.heldout_problems == 0 and not ev.benchmarks.tasks and blend is None:
        return None
    name = f"eval-{digest(key)}.json"
    with ctx.exclusive(f"{place.rel}/{name}"):  # a study's arms sharing a stage evaluate it once
        cached = place.read_json(name)
        if cached is not None:
            return cached
        result = _evaluate(ctx, model, place, stage, blend)
        place.write_json(name, result)
    return result


def _evaluate(ctx: RunContext, model: ModelRef, place: OutputDir, stage: StageConfig | None, blend) -> dict:
    # The parts are independent one-CPU tasks: submitted together, they run side by side on a
    # machine with CPUs to spare (the demo's six evaluations on 2 cores: 88.5 s against 127.5 s one
    # after another, bench/bench_eval_overlap.py). Collected in order: a failure names the first part.
    ev, seed = ctx.cfg.evaluation, ctx.cfg.seed
    store, trust = ctx.store, ctx.cfg.model.trust_remote_code
    parts: list[tuple[str, str | None, ray.ObjectRef]] = []  # (what, result key or None for the top level, ref)
    if ev.heldout_problems:
        task = free_task(store.on_node(evaluate_heldout), num_cpus=1)
        parts.append(("the held-out problems", None, task.remote(model.path, ev, trust, model.revision, seed)))
    if ev.benchmarks.tasks:
        parts.append((f"the lm-eval suite ({', '.join(t.task for t in ev.benchmarks.tasks)})", "benchmarks",
                      _suite_ref(store, model.path, ev.benchmarks, place.path / "lm-eval", trust,
                                 thinking=ev.thinking, prompt=ev.prompt, seed=seed)))
    if blend is not None:
        heldout = str(blend.path / "heldout") if blend.manifest.get("heldout_rows") else None
        task = free_task(store.on_node(pretrain.evaluate_pretrain, read=(0, 1)), num_cpus=1, num_gpus=gpus_per_task())
        parts.append((f"pre-training perplexity on {heldout or blend.path}", "pretrain",
                      task.remote(model.path, heldout, stage.data.max_length, ev.batch_size, trust,
                                  revision=model.revision, seed=seed)))
    result: dict = {}
    try:
        for part, key, ref in parts:
            value = _get(ref)
            if key is None:
                result.update(value)
            else:
                result[key] = value
    except (EvalError, OSError, ValueError, ray.exceptions.RayTaskError) as e:
        # The other parts are left to finish (seconds), not cancelled: in Ray 2.60, cancelling a task
        # that completes at that moment aborts the driver (task_manager.cc: "Tried to complete task
        # that was not pending"), which is how the first version of this loop ended a test session.
        cause = e.cause if isinstance(e, ray.exceptions.RayTaskError) and e.cause is not None else e
        why = str(cause) if isinstance(cause, EvalError) else root_message(cause)  # ours is already phrased
        raise EvalError(f"evaluating {model.name} failed in {part}: {why.rstrip('. ')}. "
                        f"The trained model is kept at {model.path}; fix the cause and re-run to evaluate it") from None
    if blend is not None and result["pretrain"]["perplexity"] is None:
        log.warning("%s: no held-out perplexity: blend %s keeps no rows back (set data.blend.heldout_fraction, "
                    "e.g. 0.01)", model.name, blend.path.name)
    return result


def _get(ref: ray.ObjectRef):
    """A task's result; an EvalError raised in it comes back as itself (its message, not a worker traceback)."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        if isinstance(e.cause, EvalError):
            raise EvalError(str(e.cause)) from None
        raise


def _suite_ref(store: Storage, model_dir: str | Path, bench: BenchmarkConfig, out_dir: str | Path,
               trust_remote_code: bool = False, dtype: str = "auto", thinking: ThinkingConfig | None = None,
               prompt: PromptConfig | None = None, seed: int = 0) -> ray.ObjectRef:
    # Ray workers run in their own working dirs: hand them absolute paths.
    bench = bench.model_copy(update={"include_path": [str(Path(p).expanduser().resolve()) if Path(p).exists()
                                                      else p for p in bench.include_path]})
    task = free_task(store.on_node(run_suite, read=(0,), write=(2,)), num_cpus=1, num_gpus=gpus_per_task())
    return task.remote(str(Path(model_dir).expanduser().resolve()), bench, str(Path(out_dir).expanduser().resolve()),
                       trust_remote_code, dtype, thinking, prompt, seed)


def run_suite_remote(store: Storage, model_dir: str | Path, bench: BenchmarkConfig, out_dir: str | Path,
                     trust_remote_code: bool = False, dtype: str = "auto", thinking: ThinkingConfig | None = None,
                     prompt: PromptConfig | None = None, seed: int = 0) -> dict:
    """`harness.run_suite` as a Ray task: on a GPU when the cluster has one, else one CPU. On
    object storage the task fetches the model on its node and publishes the outputs."""
    return _get(_suite_ref(store, model_dir, bench, out_dir, trust_remote_code, dtype, thinking, prompt, seed))
