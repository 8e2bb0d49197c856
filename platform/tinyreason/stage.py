"""Run one stage: its blend, its tokenizer, its rows tokenized, its Ray Train job, its manifest.

A stage's output directory is named by a hash of its config, its blend, its parent's hash,
the seed, and what trains it (the numerics libraries' versions and its kind's platform code,
lineage.py). A finished stage (its manifest written last) is never retrained; the curriculum,
a sweep's trials and a study's arms all come through `run_stage`, so they share the cache.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import ray.data

from tinyreason import cards, console
from tinyreason.config.base import resolve_path
from tinyreason.config.experiment import StageConfig
from tinyreason.config.sections import CostConfig
from tinyreason.context import RunContext
from tinyreason.cost import cluster_node_types, stage_cost, worker_rates
from tinyreason.data import lengths, schema
from tinyreason.data import tokenize as T
from tinyreason.data.blend import Blend
from tinyreason.data.card import render_card, token_lengths_section
from tinyreason.lineage import changes, find_stale, summarize
from tinyreason.machine import environment
from tinyreason.model import presets, templates
from tinyreason.model.tokenizer import load_tokenizer
from tinyreason.outputs import ENVIRONMENT, METRICS, WORKERS, ModelRef, StageOutput, digest
from tinyreason.run_provenance import machine_summary
from tinyreason.train import launch, lora, registry
from tinyreason.train.checkpoints import best_and_kept, list_saved
from tinyreason.train.job import StageJob

log = logging.getLogger(__name__)
CHAT_RECORD = "tinyreason_chat.json"  # in a stage's tokenizer dir: the template, system prompt and tokens it settled


@dataclass
class StageOutcome:
    index: int
    stage: StageConfig
    output: StageOutput
    manifest: dict
    cached: bool
    resumed: bool = False  # an interrupted attempt was continued from its latest checkpoint
    reason: str = ""  # why it was trained, or that it was reused (see curriculum.why_trained)
    stale: list[str] = field(default_factory=list)  # reused with reuse_stale: what differs from what trained it
    evaluation: dict | None = None
    metrics: list[dict] = field(default_factory=list)

    @property
    def dir(self):
        return self.output.path

    @property
    def model(self) -> ModelRef:
        return self.output.model_ref(self.stage.name, self.manifest["key"])


# How a stage runs, not what it trains: a change to these resumes the stage rather than training
# it again (an elastic stage trains the same batches on fewer workers: see train/elastic.py). The
# key sees the older ones at their defaults and leaves out those added since keys were first
# made, so every key made before stays valid.
RUN_ONLY = {"scaling": ("max_failures", "placement_strategy", "cpus_per_worker"), "checkpoints": ("upload",)}
RUN_ONLY_ADDED = {"scaling": ("min_workers",), "checkpoints": ("every_minutes", "on_notice", "at_end")}


def stage_key(stage: StageConfig, parent: ModelRef, blend: Blend, seed: int, trained_by: dict | None = None,
              inputs: dict[str, ModelRef] | None = None) -> str:
    """The stage's cache key. Without `trained_by` (lineage.TrainedBy.of) it is the content key:
    config, parent, blend and seed, what `reuse_stale` matches stages trained by other code on.
    The models it reads besides its parent (a teacher) enter it by their own keys."""
    dumped = stage.model_dump(mode="json")
    for section, names in RUN_ONLY.items():
        fields = type(getattr(stage, section)).model_fields
        dumped[section].update({name: fields[name].default for name in names})
    for section, names in RUN_ONLY_ADDED.items():
        for name in names:
            dumped[section].pop(name, None)
    spec = {"stage": dumped, "parent": parent.key, "blend": blend.manifest["key"], "seed": seed}
    if inputs:
        spec["inputs"] = {role: ref.key for role, ref in sorted(inputs.items())}
    content = digest(spec)
    return content if trained_by is None else digest({"content": content, "trained_by": trained_by})


def seeded(stage: StageConfig, seed: int) -> StageConfig:
    """The stage as its workers run it: `trainer.seed` is the experiment's seed unless the
    stage sets its own. TRL's seed drives new weights, batch order, dropout, NEFTune noise
    and sampling (data_seed follows it unless set)."""
    if stage.trainer.seed is not None:
        return stage
    return stage.model_copy(update={"trainer": stage.trainer.model_copy(update={"seed": seed})})


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
    trained_by = ctx.trained_by.of(stage.kind)
    keyed = keyed_parent(ctx, stage, parent)
    content = stage_key(stage, keyed, blend, ctx.cfg.seed, inputs=inputs)
    key = stage_key(stage, keyed, blend, ctx.cfg.seed, trained_by, inputs)
    out = ctx.outputs.stage(index, stage.name, key)
    with ctx.exclusive(out.rel):  # another run (a study's arm) may be training this very stage
        if out.complete():
            log.debug("%s: already complete, reusing %s", prefix, out.shown())
            return _known(ctx, StageOutcome(index, stage, out, out.manifest(), True, metrics=out.metrics()))
        stale = find_stale(ctx.store, index, stage.name, content) if ctx.cfg.reuse_stale else None
        if stale is not None:
            manifest = stale.manifest()
            what = changes((manifest.get("provenance") or {}).get("trained_by"), trained_by)
            log.warning("%s: reusing %s although other code or libraries trained it (%s): reuse_stale is on",
                        prefix, stale.shown(), summarize(what))
            return _known(ctx, StageOutcome(index, stage, stale, manifest, True, stale=what,
                                             metrics=stale.metrics()))
        seed = {"seed": stage.trainer.seed if stage.trainer.seed is not None else ctx.cfg.seed,
                "from": f"stages.{stage.name}.trainer.seed" if stage.trainer.seed is not None else "seed"}
        lineage = {"content_key": content, "trained_by": trained_by, "seed": seed}
        return _known(ctx, _train(ctx, index, seeded(stage, ctx.cfg.seed), parent, blend, key, out, prefix, lineage,
                                  inputs, job_overrides, data_hook, callbacks))


def _known(ctx: RunContext, outcome: StageOutcome) -> StageOutcome:
    """The stage's model joins the run's models by name: what `parent:` and teachers resolve to."""
    ctx.models[outcome.stage.name] = outcome.model
    return outcome


def _train(ctx: RunContext, index: int, stage: StageConfig, parent: ModelRef, blend: Blend, key: str,
           out: StageOutput, prefix: str, lineage: dict, inputs: dict[str, ModelRef], job_overrides, data_hook,
           callbacks) -> StageOutcome:
    launch.check_resources(stage)
    tok_dir = prepare_tokenizer(ctx, stage, parent, out)
    rows, tokens = training_rows(prefix, stage, blend, ctx.store.located(tok_dir), data_hook)
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
                      env=ctx.tracking_env(tags=[stage.kind, ctx.cfg.name]), parent_revision=parent.revision,
                      provenance=tracked(ctx, stage, lineage["trained_by"]), describe=environment,
                      inputs={role: ref.path for role, ref in inputs.items()})
    job = StageJob(**{**job_fields, **(job_overrides or {})})
    kind = registry.get(stage.kind)
    if kind.preflight is not None:
        kind.preflight(job)  # what only the prepared tokenizer and the resolved inputs tell, before any worker
    lora.preflight(job)  # the adapter's target modules exist in the parent itself
    log.info("%s: training on %d worker(s), %s sequences of <= %d tokens", prefix, stage.scaling.num_workers,
             f"{n_rows:,}", stage.data.max_length)
    t0 = time.time()
    with console.progress(prefix) as board:
        job.progress = board
        launch.fit_stage(job, rows, callbacks=callbacks)
    end = time.time()
    out.fetch(METRICS, WORKERS)  # rank 0 wrote them, maybe on another node
    manifest = stage_manifest(stage, key, parent, blend, out, n_rows, end - t0)
    manifest["cost"] = training_cost(ctx.cfg.cost, stage, out, end)
    manifest["chat"] = read_chat_record(tok_dir)
    manifest["tokens"] = tokens
    if tokens:  # the blend's card under this stage's tokenizer: its token lengths and what max_length did
        out.write_text("data_card.md", render_card(blend.manifest) + token_lengths_section(tokens))
    manifest["checkpoints"] = best_and_kept(ctx.store.filesystem, out.ray_run_fs_path, stage.checkpoints.mode)
    manifest["resumed"] = resumed
    manifest["provenance"] = {**lineage, "git": ctx.trained_by.git,
                              "worker": machine_summary(out.read_json(ENVIRONMENT))}
    origin = presets.weights_origin(ctx.cfg.model.preset, ctx.cfg.model.name_or_path)
    if origin:  # a de-quantized GGUF base: every card downstream of it says so
        manifest["base_weights"] = origin
    if inputs:
        manifest["inputs"] = {role: {"name": r.name, "path": r.path, "key": r.key} for role, r in inputs.items()}
    review = kind.review
    manifest["review"] = review(manifest["summary"], out.metrics()) if review else []
    for line in manifest["review"]:
        log.warning("%s: %s", prefix, line)
    cards.write_stage_card(ctx, out, manifest, stage, blend=blend)  # scores join it once evaluated
    out.commit(manifest)  # written last: marks the stage complete
    # The trainer's own checkpoints on this node duplicate what Ray Train copied to storage
    # (ray/<stage>/, which resume reads): 2.7 GB per stage for SmolLM2-135M under ZeRO-2.
    shutil.rmtree(out.trainer_dir, ignore_errors=True)
    s = manifest["summary"]
    c = manifest["cost"]
    log.info("%s: done in %.0f s; loss %.3f -> %.3f%s; %.3g worker-hours%s", prefix, manifest["train_seconds"],
             s.get("loss_first", 0), s.get("loss_last", 0),
             f", {s['tokens_per_s']:,.0f} tokens/s" if "tokens_per_s" in s else "", c["worker_hours"],
             f", {c['money']:.2f} {c['currency']}" if "money" in c else "")
    return StageOutcome(index, stage, out, manifest, False, resumed=resumed, metrics=out.metrics())


def tracked(ctx: RunContext, stage: StageConfig, trained_by: dict) -> dict:
    """What rank 0 adds to the stage's wandb config: enough to find the code and libraries
    that trained it (the full record is the manifest's `provenance`)."""
    return {"versions": trained_by["versions"], "code_digest": digest(trained_by["code"]),
            "seed": stage.trainer.seed, "git": ctx.trained_by.git}


def keyed_parent(ctx: RunContext, stage: StageConfig, parent: ModelRef) -> ModelRef:
    """The parent as a chat stage's cache key sees it: model.chat_template and model.system_prompt
    join its key (unset, they add nothing), so changing them retrains the chat stages and never a
    pretrain stage, whose rows no template touches."""
    chat = ctx.cfg.model.chat_key()
    if not chat or schema.family(registry.get(stage.kind).schema) == "text":
        return parent
    return dataclasses.replace(parent, key=digest({"parent": parent.key, "chat": chat}))


def prepare_tokenizer(ctx: RunContext, stage: StageConfig, parent: ModelRef, out: StageOutput) -> str:
    """The parent's tokenizer as this stage's kind prepares it (template, think tokens), saved
    in the stage dir and published, so every worker reads the same one. A chat stage's template
    and system prompt are settled first (model/templates.py); what was done is kept beside it."""
    kind = registry.get(stage.kind)
    tok = load_tokenizer(ctx.store.localize(parent.tokenizer), ctx.cfg.model.trust_remote_code,
                         parent.tokenizer_revision)
    chat = None
    if schema.family(kind.schema) != "text":
        m = ctx.cfg.model
        chat = templates.prepare(tok, m.chat_template, m.chat_template_text(), m.system_prompt,
                                 where=f"stage {stage.name}: tokenizer {parent.tokenizer}")
    before = dict(tok.get_vocab())
    tok = kind.prepare_tokenizer(tok, stage)
    tok.save_pretrained(out.tokenizer_dir)
    if chat is not None:
        chat["think"] = templates.think_record(tok, before)
        vocab = tok.get_vocab()  # a dict in no set order: the added tokens by id, as they were added
        chat["added_tokens"] += sorted((t for t in vocab if t not in before), key=vocab.get)
        (out.tokenizer_dir / CHAT_RECORD).write_text(json.dumps(chat, indent=2), encoding="utf-8")
    out.publish("tokenizer")
    return str(out.tokenizer_dir)


def read_chat_record(tok_dir: str) -> dict | None:
    path = Path(tok_dir) / CHAT_RECORD
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def training_rows(prefix: str, stage: StageConfig, blend: Blend, tok_dir: str, data_hook=None):
    """The stage's blend tokenized and packed, materialized as a Ray Dataset, and its token-length
    report (data/lengths.py: per-source percentiles, rows over max_length, what data.overlong did).

    On Ray Data for real blends; in this process for small ones (`data.tokenize_in_driver_max_rows`),
    where Ray Data's workers would spend longer starting and importing transformers than the
    work takes. The same batch functions at the same batch sizes run either way.
    """
    # Same rows in the same order on every attempt: a resumed trainer skips the batches it
    # has seen by position, so the packed sequences must not be reshuffled by Ray Data.
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    steps = registry.get(stage.kind).tokenize_steps(tok_dir, stage)
    ledger: list = []
    if blend.rows <= stage.data.tokenize_in_driver_max_rows:
        ds = ray.data.from_arrow(pa.table(T.in_process(blend.read_local("data"), steps, ledger)))
    else:
        ds = T.on_ray(blend.dataset(), steps, ledger)
    tokens = lengths.length_report(ledger, stage.data.max_length, stage.data.overlong)
    error = lengths.failure(tokens, prefix)
    if error:
        raise ValueError(error)
    for line in lengths.warnings(tokens):
        log.warning("%s: %s", prefix, line)
    if data_hook is not None:
        ds = data_hook(ds, tok_dir)
    ds = ds.materialize()
    n_rows = ds.count()
    if n_rows < stage.scaling.num_workers:
        raise ValueError(
            f"{prefix}: only {n_rows} training sequences after tokenizing, fewer than its "
            f"{stage.scaling.num_workers} workers; add data or raise data.max_length"
        )
    return ds, tokens


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
        "parent": {"name": parent.name, "path": parent.path, "key": parent.key,
                   **({"revision": parent.revision} if parent.revision else {})},  # a pinned hub model
        "blend": {"name": blend.path.name, "key": blend.manifest["key"], "rows": blend.rows,
                  "content_hash": blend.manifest["content_hash"]},
        "config": stage.model_dump(mode="json"),
        "sequences": n_rows, "train_seconds": seconds,
        "summary": summarize_metrics(out.metrics(), stage.kind),
        "completed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def training_cost(cost: CostConfig, stage: StageConfig, out: StageOutput, end: float | None = None) -> dict:
    """The manifest's `cost`: worker-hours, GPU-hours and tokens; money with a price table (cost.py).
    `end`: when training ended; None for a stage stopped before its end (a sweep trial its
    scheduler cut), which is charged until its last log line."""
    if end is None:
        end = max((m["time"] for m in out.metrics() if isinstance(m.get("time"), (int, float))), default=0.0)
    s = stage.scaling
    rates = None
    if cost.prices:
        node_types = cluster_node_types(resolve_path(cost.cluster))
        rates = worker_rates(cost.prices, node_types, s.gpus_per_worker, s.cpus_per_worker, s.use_gpu)
    return stage_cost(out.workers(), end, out.metrics(), gpus_per_worker=s.gpus_per_worker, use_gpu=s.use_gpu,
                      rates=rates, default_node_type=cost.node_type, currency=cost.currency)

