"""A curriculum: the base model, then each stage in order from its parent's export, each
evaluated after it trains; stages cached by content, and the reason each one trained.

Change a stage's config and that stage and everything after it re-run, while everything
before it is reused. This is also what lets a sweep over DPO beta start every trial from
the same cached stage 2, and a study's arms share the stages they have in common. An
upgraded numerics library or an edited stage module re-trains the stages it touches too
(lineage.py), unless `reuse_stale` keeps them, marked. Each invocation writes its own run
record with its provenance (run_provenance.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tinyreason.base import prepare_base, start_of
from tinyreason.cards import write_stage_card
from tinyreason.config.experiment import ExperimentConfig
from tinyreason.config.loading import dump_config
from tinyreason.context import RunContext
from tinyreason.eval.scores import primary_scores
from tinyreason.evaluation import evaluate
from tinyreason.lineage import changes, summarize
from tinyreason.outputs import ModelRef, RunRecord
from tinyreason.run_provenance import RunProvenance
from tinyreason.stage import StageOutcome, label, run_stage
from tinyreason.train import launch

log = logging.getLogger(__name__)


@dataclass
class CurriculumResult:
    config: ExperimentConfig
    run: RunRecord
    base: ModelRef
    base_eval: dict | None
    stages: list[StageOutcome]

    @property
    def run_dir(self):
        return self.run.path


def run_curriculum(cfg: ExperimentConfig, run: RunRecord | None = None, ctx: RunContext | None = None
                   ) -> CurriculumResult:
    ctx = ctx or RunContext.of(cfg)
    run = run or ctx.outputs.run(cfg.name)
    run.start()
    run.write_json("config.json", dump_config(cfg))
    for stage in cfg.stages:  # before hours of stage 1, not when stage 3 cannot be scheduled
        launch.check_resources(stage)
    provenance = RunProvenance.start(ctx, run)  # git, environments, cluster: before anything trains

    ctx.check_references()  # teachers on the hub load here: before stage 1, not after it
    base = prepare_base(ctx)
    ctx.models["base"] = base
    log.info("base model: %s", _short(ctx, base))
    base_eval = None
    # The base is scored on the first pretrain stage's held-out documents too: the "before" of its perplexity
    first_pretrain = next((s for s in cfg.stages if s.kind == "pretrain"), None)
    if cfg.evaluation.after_each_stage:  # a from-scratch base scores chance: the floor of the table
        base_eval = evaluate(ctx, base, ctx.outputs.base_evals(base.key), stage=first_pretrain)
        _log_scores("base", base_eval)

    outcomes, previous = [], base
    record = run.stages_record()  # the last run's stages, updated as each one completes
    for i, stage in enumerate(cfg.stages):
        outcome = run_stage(ctx, i, stage, start_of(ctx, stage, previous))
        outcome.reason = why_trained(record.get(stage.name), outcome)
        told = "reused (unchanged since its last run)" if outcome.cached else f"trained because {outcome.reason}"
        log.info("%s: %s", label(ctx, i, stage), outcome.reason if outcome.stale else told)
        record[stage.name] = _record_of(outcome)
        run.save_stages_record(record)
        if cfg.evaluation.after_each_stage is True or (cfg.evaluation.after_each_stage and i == len(cfg.stages) - 1):
            outcome.evaluation = evaluate(ctx, outcome.model, outcome.output, stage=stage)
            _log_scores(label(ctx, i, stage), outcome.evaluation)
            write_stage_card(ctx, outcome.output, outcome.manifest, stage, outcome.evaluation)
        outcomes.append(outcome)
        previous = outcome.model
    provenance.finish()
    return CurriculumResult(cfg, run, base, base_eval, outcomes)


def _short(ctx: RunContext, model: ModelRef) -> str:
    key = ctx.store.key_of(model.path)
    return key if key is not None else model.path


def _log_scores(who: str, evaluation: dict | None) -> None:
    if not evaluation:
        return
    shown = ", ".join(f"{k} {v:.3f}" for k, v in primary_scores(evaluation).items())
    ppl = (evaluation.get("pretrain") or {}).get("perplexity")
    log.info("%s: evaluated: %s%s", who, shown, f", perplexity {ppl:.2f}" if ppl is not None else "")


# --------------------------------------------------------------------------- why a stage ran


def _record_of(outcome: StageOutcome) -> dict:
    m = outcome.manifest
    return {"key": m["key"], "config": m["config"], "blend": m["blend"]["key"], "parent": m["parent"]["key"],
            "dir": outcome.output.rel, "trained_by": (m.get("provenance") or {}).get("trained_by"),
            "stale": outcome.stale, "inputs": {role: ref["key"] for role, ref in m.get("inputs", {}).items()}}


def why_trained(previous: dict | None, outcome: StageOutcome) -> str:
    """One sentence for the report: why this stage was trained this time, or that it was reused.

    Compares the stage with what the same experiment ran last time (`stages.json` beside its
    run records): its own config (field by field, the seed included), its blend, its parent,
    and what trained it (library versions, the platform code its kind runs).
    """
    m = outcome.manifest
    if outcome.stale:
        return f"stale, reused (reuse_stale): since it trained, {summarize(outcome.stale)}"
    if outcome.cached:
        return "unchanged since its last run: reused"
    resumed = "; it resumed an interrupted attempt from its latest checkpoint" if outcome.resumed else ""
    if previous is None:
        return "this experiment had not run it before" + resumed
    reasons = []
    changed = diff(previous["config"], m["config"])
    if changed:
        shown = ", ".join(f"{k} {a!r} -> {b!r}" for k, a, b in changed[:4])
        reasons.append(f"its config changed ({shown}{', ...' if len(changed) > 4 else ''})")
    if previous["blend"] != m["blend"]["key"]:
        reasons.append("its blend changed (sources, filters or file contents)")
    if previous["parent"] != m["parent"]["key"]:
        reasons.append(f"its parent {m['parent']['name']} changed")
    trained_by = (m.get("provenance") or {}).get("trained_by")
    what = changes(previous.get("trained_by"), trained_by) if trained_by and "trained_by" in previous else []
    if what:
        reasons.append(f"what trains it changed ({summarize(what)})")
    inputs = {role: ref["key"] for role, ref in m.get("inputs", {}).items()}
    changed_inputs = sorted(r for r in set(inputs) | set(previous.get("inputs", {}))
                            if inputs.get(r) != previous.get("inputs", {}).get(r))
    if changed_inputs:
        reasons.append(f"its {' and '.join(changed_inputs)} changed")
    if not reasons:
        reasons.append("its output was missing (deleted, or the seed changed)")
    return " and ".join(reasons) + resumed


def diff(a, b, prefix: str = "") -> list[tuple[str, object, object]]:
    """The leaves where two nested dicts differ, as (dotted key, old, new)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += diff(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [(prefix.rstrip("."), a, b)]
