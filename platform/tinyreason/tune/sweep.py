"""Ray Tune sweeps over one stage's trainer settings, scored by benchmark results.

The stages before the swept one are trained once (or found in the content-
addressed cache) and every trial starts from their export. Each trial is a Tune
function that launches the stage's own TorchTrainer (Ray Train V2 inside Tune),
evaluates the result, and reports the objective. A failed trial is recorded,
not fatal. With an ASHA scheduler every training log is also forwarded to Tune,
and a trial whose loss lags the others at a rung is stopped mid-training; it is
recorded as STOPPED with the metrics of its last log, not as a failure. For DPO
the reference model's log-probs depend only on (parent model, blend, template),
so they are computed once and shared by every trial.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from tinyreason.base import prepare_base, start_of
from tinyreason.config.experiment import ExperimentConfig, StageConfig
from tinyreason.config.sections import TrainerSettings
from tinyreason.config.sweeps import SweepConfig, apply_point
from tinyreason.context import RunContext
from tinyreason.cards import write_stage_card
from tinyreason.cost import COST_PREFIX, as_metrics
from tinyreason.eval.scores import benchmark_scores, objective_score, primary_with_errors
from tinyreason.evaluation import evaluate
from tinyreason.outputs import ModelRef, OutputDir, StageOutput
from tinyreason.runtime import root_message
from tinyreason.stage import run_stage, training_cost
from tinyreason.tracking import wandb_mode
from tinyreason.tune.placement import placement_group_guard
from tinyreason.tune.reference import attach_reference, reference_cache

log = logging.getLogger(__name__)


@dataclass
class SweepContext:
    """What every trial needs; shipped to trials with tune.with_parameters."""

    sweep: SweepConfig
    ctx: RunContext
    index: int
    parent: ModelRef
    ref_cache: str | None  # a storage key (ref-logps/<key>) holding the shared reference log-probs

    @property
    def cfg(self) -> ExperimentConfig:
        return self.ctx.cfg


@dataclass
class TrialRecord:
    trial_id: str
    params: dict
    status: str  # TERMINATED | STOPPED (by the scheduler, mid-training) | ERROR
    metrics: dict
    error: str | None
    stage_dir: str | None  # the trial's stage output, as a key in storage (stages/NN-...)


# --------------------------------------------------------------------------- space


def search_space(sweep: SweepConfig) -> dict:
    space = {}
    for key, p in sweep.space.items():
        if p.grid is not None:
            space[key] = tune.grid_search(p.grid)
        elif p.choice is not None:
            space[key] = tune.choice(p.choice)
        elif p.uniform is not None:
            space[key] = tune.uniform(*p.uniform)
        else:
            space[key] = tune.loguniform(*p.loguniform)
    return space


def search_algorithm(sweep: SweepConfig):
    if sweep.search == "optuna":
        if any(p.grid is not None for p in sweep.space.values()):
            raise ValueError("search: optuna samples its own points; use choice/uniform/loguniform, not grid")

        class ObjectiveOnlyOptuna(OptunaSearch):
            """Optuna learns from the final objective; the training logs a scheduler also
            receives carry none, and OptunaSearch would fail on them (KeyError)."""

            def on_trial_result(self, trial_id, result):
                if self.metric in result:
                    super().on_trial_result(trial_id, result)

        return ConcurrencyLimiter(ObjectiveOnlyOptuna(metric="objective", mode="max", seed=sweep.seed),
                                  max_concurrent=sweep.max_concurrent)
    return None  # grid/random: Tune's BasicVariantGenerator


# ASHA's rungs sit at grace_period * reduction_factor**k up to max_t. A stage ends itself
# when it has trained (its step count is only known after tokenizing), so max_t is just a
# bound on the rungs; stop_last_trials=False keeps ASHA from cutting a trial at max_t
# before its evaluation reports the objective.
ASHA_MAX_STEPS = 2**20


def scheduler(sweep: SweepConfig, stage: StageConfig):
    """ASHA over optimizer steps (the `step` of each training log): trials are compared
    at the same step, and grace_period counts steps, not reports."""
    if sweep.scheduler.type == "none":
        return None
    s = sweep.scheduler
    max_t = stage.trainer.max_steps if stage.trainer.max_steps > 0 else ASHA_MAX_STEPS
    return ASHAScheduler(metric=s.metric, mode=s.mode, grace_period=s.grace_period, max_t=max(max_t, s.grace_period),
                         reduction_factor=s.reduction_factor, time_attr="step", stop_last_trials=False)


def trial_resources(sweep: SweepConfig) -> dict:
    """What the trial driver itself holds while its TorchTrainer's workers train.

    It only waits, so by default it asks for no CPU (on a 2-core machine a 0.1-CPU
    driver would leave 1.9 CPUs for 2 one-CPU workers: a deadlock). Tune needs a
    non-empty request, so it asks for a little memory instead.
    """
    if sweep.resources.cpu > 0:
        return {"CPU": sweep.resources.cpu}
    return {"CPU": 0, "memory": 64 * 1024**2}


def trial_stage(stage: StageConfig, params: dict) -> StageConfig:
    """The swept stage with one point of the space filled in (trainer settings, `peft.r`),
    validated like any config."""
    return apply_point(stage, params)


def trial_config(sweep: SweepConfig, stage: StageConfig, params: dict) -> StageConfig:
    """A trial's stage: its point of the space, on the sweep's share of a GPU when it sets one."""
    stage = trial_stage(stage, params)
    if sweep.resources.gpus_per_worker is not None:  # validated: fractions need a single worker
        scaling = {**stage.scaling.model_dump(), "gpus_per_worker": sweep.resources.gpus_per_worker}
        stage = StageConfig.model_validate({**stage.model_dump(), "scaling": scaling})
    return stage


# --------------------------------------------------------------------------- trial


def _scheduler_feed(metric: str):
    """Ray Train -> Tune forwarding for the scheduler: the training logs that carry its
    metric (not the train-summary or end-of-training reports, which Tune's strict metric
    check would reject and fail the sweep on), each naming the trial's stage dir so a trial
    stopped mid-training still points at its metrics.jsonl."""

    class SchedulerFeed(TuneReportCallback):
        def after_report(self, run_context, metrics, checkpoint):
            if not metrics or metric not in metrics[0] or "step" not in metrics[0]:
                return
            job = (run_context.train_loop_config or {}).get("job")
            first = {**metrics[0], "stage_dir": job.output.rel} if job is not None else metrics[0]
            super().after_report(run_context, [first, *metrics[1:]], checkpoint)

    return SchedulerFeed()


def _last_logged(output: StageOutput, metric: str, stage: StageConfig) -> float:
    """The scheduler metric's last value in the stage's log; the final report must carry it."""
    metrics = output.metrics()
    rows = [m for m in metrics if metric in m]
    if not rows:
        logged = sorted({k for m in metrics for k in m if k != "event"})
        raise ValueError(f"scheduler.metric={metric!r} is never logged by stage {stage.name} ({stage.kind}); "
                         f"it logs: {', '.join(logged)}")
    return rows[-1][metric]


def run_trial(params: dict, ctx: SweepContext) -> None:
    """One Tune trial: train the stage with `params`, evaluate, report the objective.

    With a scheduler, every training log also goes to Tune (job.report_every_log), so the
    scheduler can stop the trial between two logs; the objective comes last, in one report.
    """
    stage = trial_config(ctx.sweep, ctx.cfg.stages[ctx.index], params)
    t0 = time.time()
    hook = attach_reference(StageOutput(ctx.ctx.store, ctx.ref_cache)) if ctx.ref_cache else None
    scheduled = ctx.sweep.scheduler.type != "none"
    outcome = run_stage(
        ctx.ctx, ctx.index, stage, ctx.parent,
        job_overrides={"report_every_log": scheduled,
                       "run_name": f"{ctx.sweep.name}/{tune.get_context().get_trial_id()}"},
        data_hook=hook,
        callbacks=[_scheduler_feed(ctx.sweep.scheduler.metric), placement_group_guard()] if scheduled else None,
    )
    evaluation = evaluate(ctx.ctx, outcome.model, outcome.output)
    write_stage_card(ctx.ctx, outcome.output, outcome.manifest, stage, evaluation)
    scores = benchmark_scores(evaluation)
    summary = outcome.manifest.get("summary", {})
    objective = objective_score(evaluation, ctx.cfg.evaluation.objective.weights)
    final = {
        "objective": objective.value,
        **{f"bench/{k}": v for k, v in scores.items()},
        # standard errors, for the report's within-noise calls (none where unknown: Tune wants numbers)
        **({"objective_se": objective.se} if objective.se is not None else {}),
        **{f"se/{k}": s.se for k, s in primary_with_errors(evaluation).items() if s.se is not None},
        "loss": summary.get("loss_last", float("nan")),
        "step": summary.get("steps", 0),
        "train_seconds": outcome.manifest.get("train_seconds", time.time() - t0),
        "stage_dir": outcome.output.rel,
        **as_metrics(outcome.manifest.get("cost")),  # the trial's worker-hours, tokens and money
    }
    if scheduled:
        final[ctx.sweep.scheduler.metric] = _last_logged(outcome.output, ctx.sweep.scheduler.metric, stage)
    tune.report(final)


# --------------------------------------------------------------------------- the sweep


@dataclass
class SweepResult:
    sweep: SweepConfig
    cfg: ExperimentConfig
    out: OutputDir  # sweeps/<name>/ in storage: the report, trials.json, best.yaml
    parent: ModelRef
    parent_eval: dict | None
    trials: list[TrialRecord]
    best: TrialRecord | None
    ctx: RunContext | None = None

    @property
    def sweep_dir(self):
        return self.out.path


def run_sweep(sweep: SweepConfig, cfg: ExperimentConfig, ctx: RunContext | None = None) -> SweepResult:
    index = [s.name for s in cfg.stages].index(sweep.stage)
    # "auto" tracking is decided here, where the user's credentials are, not in each trial's process
    cfg.tracking.wandb.mode = wandb_mode(cfg.tracking) if cfg.tracking.wandb.enabled else "disabled"
    ctx = ctx or RunContext.of(cfg, group=f"sweep/{sweep.name}")
    out = ctx.outputs.sweep(sweep.name)
    out.path.mkdir(parents=True, exist_ok=True)

    # the parent stages: trained once for the whole sweep (or reused from the cache)
    ctx.check_references()
    previous = ctx.models["base"] = prepare_base(ctx)
    for i in range(index):
        previous = run_stage(ctx, i, cfg.stages[i], start_of(ctx, cfg.stages[i], previous)).model
    parent = start_of(ctx, cfg.stages[index], previous)
    parent_eval = evaluate(ctx, parent, ctx.outputs.base_evals(parent.key)) if index > 0 else None
    stage = cfg.stages[index]
    uses_reference = stage.kind == "dpo" and stage.trainer.model_extra.get("precompute_ref_log_probs", True)
    ref_cache = reference_cache(ctx, index, parent).rel if uses_reference else None
    if ref_cache:
        ctx = RunContext(_with_precomputed_reference(cfg, index), ctx.store, ctx.group, locks=ctx.locks,
                         trained_by=ctx.trained_by, models=ctx.models)

    trial_ctx = SweepContext(sweep, ctx, index, parent, ref_cache)
    trainable = tune.with_resources(tune.with_parameters(run_trial, ctx=trial_ctx), trial_resources(sweep))
    tuner = tune.Tuner(
        trainable,
        param_space=search_space(sweep),
        tune_config=tune.TuneConfig(num_samples=sweep.num_samples, max_concurrent_trials=sweep.max_concurrent,
                                    search_alg=search_algorithm(sweep), scheduler=scheduler(sweep, stage)),
        run_config=tune.RunConfig(name=sweep.name, storage_path=ctx.outputs.ray,
                                  failure_config=tune.FailureConfig(max_failures=0, fail_fast=False)),
    )
    log.info("sweep %s: %s search over %s of stage %s", sweep.name, sweep.search, ", ".join(sweep.space), stage.name)
    grid = _fit(tuner, strict_metrics=sweep.scheduler.type == "none" or sweep.search != "optuna")
    trials = [_record(r) for r in grid]
    for t in trials:  # a trial its scheduler stopped reported no cost: charge it from its logs
        if t.stage_dir and not any(k.startswith(COST_PREFIX) for k in t.metrics):
            t.metrics.update(as_metrics(training_cost(cfg.cost, trial_config(sweep, stage, t.params),
                                                      StageOutput(ctx.store, t.stage_dir))))
    done = [t for t in trials if t.status == "TERMINATED" and "objective" in t.metrics]
    best = max(done, key=lambda t: t.metrics["objective"]) if done else None
    return SweepResult(sweep, ctx.cfg, out, parent, parent_eval, trials, best, ctx)


def _fit(tuner, strict_metrics: bool):
    """tuner.fit(). Tune checks that every result carries every metric it was told about; with
    optuna and a scheduler the training logs cannot carry the objective (it is computed
    after training), so that check is turned off for this fit and ObjectiveOnlyOptuna and
    ASHA (which skips results without its metric) each take the results meant for them."""
    if strict_metrics:
        return tuner.fit()
    name, before = "TUNE_DISABLE_STRICT_METRIC_CHECKING", os.environ.get("TUNE_DISABLE_STRICT_METRIC_CHECKING")
    os.environ[name] = "1"
    try:
        return tuner.fit()
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _with_precomputed_reference(cfg: ExperimentConfig, index: int) -> ExperimentConfig:
    stage = cfg.stages[index]
    trainer = TrainerSettings.model_validate({**stage.trainer.model_dump(), "precompute_ref_log_probs": True})
    stages = list(cfg.stages)
    stages[index] = StageConfig.model_validate({**stage.model_dump(), "trainer": trainer.model_dump()})
    return cfg.model_copy(update={"stages": stages})


def _record(result) -> TrialRecord:
    metrics = dict(result.metrics or {})
    params = {k: v for k, v in (result.config or {}).items()}
    trial_id = metrics.get("trial_id") or os.path.basename(result.path)
    error = root_message(result.error) if result.error is not None else None
    # A trial reports its objective last, after training and evaluation; one that ended
    # without error and without it was stopped by the scheduler after its last training log.
    status = "ERROR" if error else "TERMINATED" if "objective" in metrics else "STOPPED"
    return TrialRecord(trial_id, params, status, metrics, error, metrics.get("stage_dir"))
