"""Run a study: every (arm, seed) curriculum as a Ray task, several at a time.

Arms that share a prefix share its training: stages are content-addressed, and a lock table
shared by the arms (locks.py) makes the first arm that reaches a shared blend, stage or
evaluation build it while the others wait and then reuse it. Each arm waits for its own
workers' CPUs like any curriculum, so `max_concurrent` arms never oversubscribe the cluster;
they only overlap their waiting, evaluation and data work. One arm's failure is recorded and
the others run on.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import ray

from tinyreason.config.experiment import ExperimentConfig
from tinyreason.config.studies import StudyConfig
from tinyreason.context import RunContext
from tinyreason.curriculum import CurriculumResult, run_curriculum
from tinyreason.eval.scores import objective_value
from tinyreason.locks import Locks
from tinyreason.outputs import OutputDir, Outputs
from tinyreason.report import write_report
from tinyreason.runtime import root_message
from tinyreason.storage import Storage

log = logging.getLogger(__name__)


@dataclass
class ArmRun:
    arm: str
    seed: int
    result: CurriculumResult | None
    error: str | None
    seconds: float

    @property
    def final_eval(self) -> dict | None:
        return self.result.stages[-1].evaluation if self.result and self.result.stages else None


@dataclass
class StudyResult:
    study: StudyConfig
    configs: dict[tuple[str, int], ExperimentConfig]
    out: OutputDir  # studies/<name>/: report, results.json
    runs: list[ArmRun]

    def runs_of(self, arm: str) -> list[ArmRun]:
        return [r for r in self.runs if r.arm == arm]


def _run_arm(cfg: ExperimentConfig, locks: Locks, group: str) -> CurriculumResult:
    """One (arm, seed): its curriculum and its own report, inside a Ray task."""
    ctx = RunContext.of(cfg, group=group, locks=locks)
    result = run_curriculum(cfg, ctx=ctx)
    write_report(result)
    return result


def run_study(study: StudyConfig, configs: dict[tuple[str, int], ExperimentConfig],
              store: Storage | None = None) -> StudyResult:
    first = next(iter(configs.values()))
    store = store or Storage(first.storage.path)
    out = Outputs(store).study(study.name)
    out.path.mkdir(parents=True, exist_ok=True)
    # no CPU of its own: the arm's TorchTrainers and evaluation tasks ask for theirs
    task = ray.remote(num_cpus=0, max_retries=0)(_run_arm)
    locks, group = Locks(), f"study/{study.name}"
    pending, running, runs = list(configs.items()), {}, []
    log.info("study %s: %d arms x %d seeds, %d at a time", study.name, len(study.arms), len(study.seeds),
             study.max_concurrent)
    while pending or running:
        while pending and len(running) < study.max_concurrent:
            (arm, seed), cfg = pending.pop(0)
            running[task.remote(cfg, locks, group)] = (arm, seed, time.time())
            log.info("arm %s (seed %d): started", arm, seed)
        done, _ = ray.wait(list(running), num_returns=1)
        arm, seed, t0 = running.pop(done[0])
        runs.append(_collect(done[0], arm, seed, t0, configs[(arm, seed)]))
    order = {key: i for i, key in enumerate(configs)}
    runs.sort(key=lambda r: order[(r.arm, r.seed)])
    return StudyResult(study, configs, out, runs)


def _collect(ref, arm: str, seed: int, t0: float, cfg: ExperimentConfig) -> ArmRun:
    try:
        result = ray.get(ref)
    except (ray.exceptions.RayTaskError, ray.exceptions.WorkerCrashedError) as e:
        cause = e.cause if isinstance(e, ray.exceptions.RayTaskError) and e.cause is not None else e
        error = root_message(cause)
        log.error("arm %s (seed %d): failed: %s; the other arms go on", arm, seed, error)
        return ArmRun(arm, seed, None, error, time.time() - t0)
    run = ArmRun(arm, seed, result, None, time.time() - t0)
    try:
        score = f"{cfg.evaluation.objective.name} {objective_value(run.final_eval, cfg.evaluation.objective.weights):.3f}"
    except (ValueError, TypeError):
        score = "no objective (nothing evaluated)"
    log.info("arm %s (seed %d): done in %.0f s; %s", arm, seed, run.seconds, score)
    return run
