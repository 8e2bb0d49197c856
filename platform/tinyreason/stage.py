"""Run one stage: its blend, its tokenizer, its rows tokenized, its Ray Train job, its manifest.

A stage's output directory is named by a hash of its config, its blend and its parent's
hash. A finished stage (its manifest written last) is never retrained; the curriculum,
a sweep's trials and a study's arms all come through `run_stage`, so they share the cache.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import pyarrow as pa
import ray.data

from tinyreason import console
from tinyreason.config.experiment import StageConfig
from tinyreason.context import RunContext
from tinyreason.data import tokenize as T
from tinyreason.data.blend import Blend
from tinyreason.model.tokenizer import load_tokenizer
from tinyreason.outputs import METRICS, ModelRef, StageOutput, digest
from tinyreason.train import launch, lora, registry
from tinyreason.train.checkpoints import best_and_kept, list_saved
from tinyreason.train.job import StageJob

log = logging.getLogger(__name__)


@dataclass
class StageOutcome:
    index: int
    stage: StageConfig
    output: StageOutput
    manifest: dict
    cached: bool
    resumed: bool = False  # an interrupted attempt was continued from its latest checkpoint
    reason: str = ""  # why it was trained, or that it was reused (see curriculum.why_trained)
    evaluation: dict | None = None
    metrics: list[dict] = field(default_factory=list)

    @property
    def dir(self):
        return self.output.path

    @property
    def model(self) -> ModelRef:
        return self.output.model_ref(self.stage.name, self.manifest["key"])


def stage_key(stage: StageConfig, parent: ModelRef, blend: Blend, seed: int,
              inputs: dict[str, ModelRef] | None = None) -> str:
    """The content key of a stage's output; the models it reads besides its parent (a teacher)
    enter it by their own keys."""
    spec = {"stage": stage.model_dump(mode="json"), "parent": parent.key, "blend": blend.manifest["key"], "seed": seed}
    if inputs:
        spec["inputs"] = {role: ref.key for role, ref in sorted(inputs.items())}
    return digest(spec)


def label(ctx: RunContext, index: int, stage: StageConfig) -> str:
    return f"stage {index + 1}/{len(ctx.cfg.stages)} {stage.name} ({stage.kind})"


def run_stage(ctx: RunContext, index: int, stage: StageConfig, parent: ModelRef, job_overrides: dict | None = None,
              data_hook=None, callbacks: list | None = None) -> StageOutcome:
    """Train one stage unless its content-addressed output is complete.

    Sweeps pass `data_hook` (e.g. to attach shared reference log-probs to the
    tokenized rows) and Ray Train `callbacks` (to forward reports to Tune).
    """
    prefix = label(ctx, index, stage)
    kind = registry.get(stage.kind)
    inputs = {role: ctx.resolve_model(ref, f"{prefix}: {role}")
              for role, ref in (kind.inputs(stage) if kind.inputs else {}).items()}
    blend = ctx.blend(stage)
    log.debug("%s: blend %s rows%s at %s", prefix, f"{blend.rows:,}", " (cached)" if blend.cached else "",
              blend.path.name)
    key = stage_key(stage, parent, blend, ctx.cfg.seed, inputs)
    out = ctx.outputs.stage(index, stage.name, key)
    if out.complete():
        log.debug("%s: already complete, reusing %s", prefix, out.shown())
        outcome = StageOutcome(index, stage, out, out.manifest(), True, metrics=out.metrics())
        ctx.models[stage.name] = outcome.model
        return outcome

    launch.check_resources(stage)
    tok_dir = prepare_tokenizer(ctx, stage, parent, out)
    rows = training_rows(prefix, stage, blend, ctx.store.located(tok_dir), data_hook)
    n_rows = rows.count()
    # Ray Train keeps the run's checkpoints under <storage>/ray/<stage dir name>: an earlier
    # attempt that died after saving left them there, and the new TorchTrainer resumes from the latest.
    resumed = bool(list_saved(ctx.store.filesystem, out.ray_run_fs_path))
    if resumed:
        log.info("%s: resuming an interrupted attempt from its latest checkpoint", prefix)
    out.start_attempt(resumed)
    job_fields = dict(stage=stage, parent_model=parent.path, tokenizer_dir=tok_dir, output=out,
                      trust_remote_code=ctx.cfg.model.trust_remote_code,
                      attn_implementation=ctx.cfg.model.attn_implementation, run_name=f"{ctx.cfg.name}/{stage.name}",
                      env=ctx.tracking_env(tags=[stage.kind, ctx.cfg.name]),
                      inputs={role: ref.path for role, ref in inputs.items()})
    job = StageJob(**{**job_fields, **(job_overrides or {})})
    if kind.preflight is not None:
        kind.preflight(job)  # what only the prepared tokenizer and the resolved inputs tell, before any worker
    lora.preflight(job)  # the adapter's target modules exist in the parent itself
    log.info("%s: training on %d worker(s), %s sequences of <= %d tokens", prefix, stage.scaling.num_workers,
             f"{n_rows:,}", stage.data.max_length)
    t0 = time.time()
    with console.progress(prefix) as board:
        job.progress = board
        launch.fit_stage(job, rows, callbacks=callbacks)
    out.fetch(METRICS)  # rank 0 wrote it, maybe on another node
    manifest = stage_manifest(stage, key, parent, blend, out, n_rows, time.time() - t0)
    manifest["checkpoints"] = best_and_kept(ctx.store.filesystem, out.ray_run_fs_path, stage.checkpoints.mode)
    manifest["resumed"] = resumed
    if inputs:
        manifest["inputs"] = {role: {"name": r.name, "path": r.path, "key": r.key} for role, r in inputs.items()}
    review = registry.get(stage.kind).review
    manifest["review"] = review(manifest["summary"], out.metrics()) if review else []
    for line in manifest["review"]:
        log.warning("%s: %s", prefix, line)
    write_model_card(out, manifest)
    out.commit(manifest)  # written last: marks the stage complete
    s = manifest["summary"]
    log.info("%s: done in %.0f s; loss %.3f -> %.3f%s", prefix, manifest["train_seconds"], s.get("loss_first", 0),
             s.get("loss_last", 0), f", {s['tokens_per_s']:,.0f} tokens/s" if "tokens_per_s" in s else "")
    outcome = StageOutcome(index, stage, out, manifest, False, resumed=resumed, metrics=out.metrics())
    ctx.models[stage.name] = outcome.model
    return outcome


def prepare_tokenizer(ctx: RunContext, stage: StageConfig, parent: ModelRef, out: StageOutput) -> str:
    """The parent's tokenizer as this stage's kind prepares it (template, think tokens), saved
    in the stage dir and published, so every worker reads the same one."""
    kind = registry.get(stage.kind)
    tok = kind.prepare_tokenizer(load_tokenizer(ctx.store.localize(parent.tokenizer),
                                                ctx.cfg.model.trust_remote_code), stage)
    tok.save_pretrained(out.tokenizer_dir)
    out.publish("tokenizer")
    return str(out.tokenizer_dir)


def training_rows(prefix: str, stage: StageConfig, blend: Blend, tok_dir: str, data_hook=None):
    """The stage's blend tokenized and packed, materialized as a Ray Dataset.

    On Ray Data for real blends; in this process for small ones (`data.tokenize_in_driver_max_rows`),
    where Ray Data's workers would spend longer starting and importing transformers than the
    work takes. The same batch functions at the same batch sizes run either way.
    """
    # Same rows in the same order on every attempt: a resumed trainer skips the batches it
    # has seen by position, so the packed sequences must not be reshuffled by Ray Data.
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    steps = registry.get(stage.kind).tokenize_steps(tok_dir, stage)
    if blend.rows <= stage.data.tokenize_in_driver_max_rows:
        ds = ray.data.from_arrow(pa.table(T.in_process(blend.read_local("data"), steps)))
    else:
        ds = T.on_ray(blend.dataset(), steps)
    if data_hook is not None:
        ds = data_hook(ds, tok_dir)
    ds = ds.materialize()
    n_rows = ds.count()
    if n_rows < stage.scaling.num_workers:
        raise ValueError(
            f"{prefix}: only {n_rows} training sequences after tokenizing, fewer than its "
            f"{stage.scaling.num_workers} workers; add data or raise data.max_length"
        )
    return ds


# --------------------------------------------------------------------------- what a stage leaves


def summarize_metrics(metrics: list[dict], kind_name: str) -> dict:
    """First/last loss, median throughput, start-up, and the last value of each metric the
    stage kind names (reward statistics, token accuracy)."""
    steps = [m for m in metrics if "loss" in m]
    out: dict = {}
    if steps:
        out["loss_first"], out["loss_last"] = steps[0]["loss"], steps[-1]["loss"]
        out["steps"] = max(m.get("step", 0) for m in metrics)  # the last step, logged or not
    tps = sorted(m["tokens_per_s"] for m in steps[1:] if "tokens_per_s" in m)  # first log includes warm-up
    if tps:
        out["tokens_per_s"] = tps[len(tps) // 2]
    startup = next((m for m in metrics if m.get("event") == "startup"), None)
    if startup:
        out["worker_to_first_step_s"] = startup["to_first_step"]
        if "padding_free" in startup:
            out["padding_free"] = startup["padding_free"]
    wanted = registry.get(kind_name).summary_metrics
    keys = [k for k in wanted if not k.endswith("/")]
    keys += sorted({k for m in metrics for k in m for p in wanted if p.endswith("/") and k.startswith(p)})
    for k in keys:
        last = next((m[k] for m in reversed(metrics) if k in m), None)
        if last is not None:
            out[k] = last
    return out


def stage_manifest(stage: StageConfig, key: str, parent: ModelRef, blend: Blend, out: StageOutput, n_rows: int,
                   seconds: float) -> dict:
    return {
        "stage": stage.name, "kind": stage.kind, "key": key,
        "parent": {"name": parent.name, "path": parent.path, "key": parent.key},
        "blend": {"name": blend.path.name, "key": blend.manifest["key"], "rows": blend.rows,
                  "content_hash": blend.manifest["content_hash"]},
        "config": stage.model_dump(mode="json"),
        "sequences": n_rows, "train_seconds": seconds,
        "summary": summarize_metrics(out.metrics(), stage.kind),
        "completed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_model_card(out: StageOutput, manifest: dict) -> None:
    s = manifest["summary"]
    card = (
        f"---\nlibrary_name: transformers\ntags: [tinyreason, {manifest['kind']}]\n---\n"
        f"# {manifest['stage']} ({manifest['kind']})\n\n"
        f"Trained by tinyreason from `{manifest['parent']['name']}` on blend `{manifest['blend']['name']}` "
        f"({manifest['blend']['rows']:,} rows, content hash `{manifest['blend']['content_hash']}`).\n\n"
        f"Loss {s.get('loss_first', float('nan')):.3f} -> {s.get('loss_last', float('nan')):.3f} over "
        f"{s.get('steps', 0)} steps. Full config and metrics: `../manifest.json`.\n"
    )
    out.write_text("model/README.md", card)
    out.write_json("model/tinyreason_manifest.json", manifest)
