"""Run a curriculum: base model, then each stage in order, cached by content.

Each stage's output dir is named by a hash of its config, its blend and its
parent's hash. A finished stage (its manifest written last) is never retrained;
change a stage's config and that stage and everything after it re-run, while
everything before it is reused. This is also what lets a sweep over DPO beta
start every trial from the same cached stage 2.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from tinyreason.config import ExperimentConfig, StageConfig, check_storage, dump_config
from tinyreason.data import tokenize as T
from tinyreason.data.blend import Blend, build_blend
from tinyreason.model import presets
from tinyreason.storage import Storage, as_storage, localize, located, on_node, publish
from tinyreason.tracking import wandb_env
from tinyreason.train import common, launch
from tinyreason.train.checkpoints import best_and_kept, list_saved

MANIFEST = "manifest.json"


def log(msg: str) -> None:
    print(f"[tinyreason {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


@dataclass
class ModelRef:
    """A model a stage can start from: an exported dir or a hub id, with its cache key."""

    name: str
    path: str
    tokenizer: str
    key: str


@dataclass
class StageOutcome:
    index: int
    stage: StageConfig
    dir: Path
    manifest: dict
    cached: bool
    resumed: bool = False  # an interrupted attempt was continued from its latest checkpoint
    reason: str = ""  # why it was trained, or that it was reused (see why_trained)
    evaluation: dict | None = None
    metrics: list[dict] = field(default_factory=list)

    @property
    def model(self) -> ModelRef:
        return ModelRef(self.stage.name, str(self.dir / "model"), str(self.dir / "model"), self.manifest["key"])


# --------------------------------------------------------------------------- base


def prepare_base(cfg: ExperimentConfig, storage: Path | Storage) -> ModelRef:
    """The model stage 1 starts from: a hub/local model, or a fresh preset with a
    BPE tokenizer trained on the first pretrain blend."""
    store = as_storage(storage)
    source = presets.weights_source(cfg.model.preset, cfg.model.name_or_path)
    if source is not None:
        return ModelRef("base", source, cfg.tokenizer.path or source, digest({"model": source}))

    first = cfg.stages[0]
    if cfg.tokenizer.path is None and first.kind != "pretrain":
        raise ValueError(
            f"model.preset={cfg.model.preset!r} starts from scratch, which needs a tokenizer: set tokenizer.path "
            "or make the first stage a pretrain stage (its corpus trains one)"
        )
    blend = stage_blend(cfg, first, storage)
    key = digest({"preset": cfg.model.preset, "tok": cfg.tokenizer.model_dump(), "corpus": blend.manifest["key"],
                  "seed": cfg.seed, "attn": cfg.model.attn_implementation})
    out = store.local_root / "base" / f"{cfg.model.preset}-{key}"
    if not store.exists(f"base/{out.name}/{MANIFEST}"):
        _build_base(cfg, blend, out)
        publish(store, out, marker=MANIFEST)
    return ModelRef("base", str(out), str(out), key)


def _build_base(cfg: ExperimentConfig, blend: Blend, out: Path) -> None:
    from tinyreason.model.tokenizer import load_tokenizer, prepare_chat_tokenizer, train_bpe

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if cfg.tokenizer.path:
        tok = load_tokenizer(cfg.tokenizer.path, cfg.model.trust_remote_code)
    else:
        texts = [r["text"] for r in blend.dataset().select_columns(["text"]).take(cfg.tokenizer.train_rows)]
        log(f"training a {cfg.tokenizer.train_vocab_size}-token BPE tokenizer on {len(texts):,} documents")
        tok = train_bpe(texts, cfg.tokenizer.train_vocab_size, tmp)
    tok = prepare_chat_tokenizer(tok)
    model = presets.init_model(cfg.model.preset, tok, cfg.model.attn_implementation, seed=cfg.seed)
    n = presets.count_parameters(model)
    log(f"initialised a {cfg.model.preset} Llama: {n / 1e6:.2f}M parameters, vocab {len(tok)}")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / MANIFEST).write_text(json.dumps({"preset": cfg.model.preset, "parameters": n, "vocab": len(tok)}))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


# --------------------------------------------------------------------------- stages


_DECONTAMINATORS: dict[str, object] = {}


def stage_blend(cfg: ExperimentConfig, stage: StageConfig, storage: Path | Storage) -> Blend:
    """A stage's blend, decontaminated against every evaluation set of the experiment.

    The n-gram index is built once per evaluation config (not per stage) and its key
    enters the blend's cache key, so changing the eval suite rebuilds the blends.
    """
    from tinyreason.data.decontam import decontaminator_for

    key = digest(cfg.evaluation.model_dump())
    if key not in _DECONTAMINATORS:
        _DECONTAMINATORS[key] = decontaminator_for(cfg)
    store = as_storage(storage)
    blend = build_blend(stage.data.resolved_blend(), stage.kind, store.local_root / "blends", seed=cfg.seed,
                        decontaminate=_DECONTAMINATORS[key])
    if store.is_remote:  # Ray Data's read tasks run on any node: they read the uploaded copy
        if not store.exists(f"blends/{blend.path.name}/manifest.json"):
            publish(store, blend.path, marker="manifest.json")
        blend.store = store
    return blend


def stage_key(stage: StageConfig, parent: ModelRef, blend: Blend, seed: int) -> str:
    return digest({"stage": stage.model_dump(mode="json"), "parent": parent.key, "blend": blend.manifest["key"],
                   "seed": seed})


def run_stage(cfg: ExperimentConfig, index: int, stage: StageConfig, parent: ModelRef, storage: Path | Storage,
              group: str | None = None, job_overrides: dict | None = None, data_hook=None,
              callbacks: list | None = None) -> StageOutcome:
    """Train one stage unless its content-addressed output is complete.

    Sweeps pass `data_hook` (e.g. to attach shared reference log-probs to the
    tokenized rows) and Ray Train `callbacks` (to forward reports to Tune).
    """
    prefix = f"stage {index + 1}/{len(cfg.stages)} {stage.name} ({stage.kind})"
    store = as_storage(storage)
    storage = store.local_root  # where this process works; `store` is where outputs live
    blend = stage_blend(cfg, stage, store)
    log(f"{prefix}: blend {blend.rows:,} rows{' (cached)' if blend.cached else ''} at {blend.path}")
    key = stage_key(stage, parent, blend, cfg.seed)
    out = storage / "stages" / f"{index:02d}-{stage.name}-{key}"
    rel = f"stages/{out.name}"
    if store.exists(f"{rel}/{MANIFEST}"):
        log(f"{prefix}: already complete, reusing {store.uri if store.is_remote else out}")
        _fetch(store, rel, (MANIFEST, common.METRICS_FILE))
        return StageOutcome(index, stage, out, json.loads((out / MANIFEST).read_text()), True,
                            metrics=common.read_metrics(out))

    launch.check_resources(stage)
    out.mkdir(parents=True, exist_ok=True)
    module = launch.module_for(stage.kind)
    tok_dir = _prepare_tokenizer(module, stage, parent, out, cfg.model.trust_remote_code, store)
    publish(store, tok_dir)
    tokenized = training_rows(prefix, stage, module, blend, located(store, tok_dir), data_hook)
    n_rows = tokenized.count()
    # Ray Train keeps the run's checkpoints under <storage>/ray/<stage dir name>: an earlier
    # attempt that died after saving left them there, and the new TorchTrainer resumes from the latest.
    resumed = bool(list_saved(store.filesystem, store.fs_path(f"ray/{out.name}")))
    if resumed:
        log(f"{prefix}: an interrupted attempt exists; resuming from its latest checkpoint")
    else:
        for name in (common.METRICS_FILE, common.WORKERS_FILE):
            (out / name).unlink(missing_ok=True)
    job_fields = dict(stage=stage, parent_model=parent.path, tokenizer_dir=tok_dir, output_dir=str(out),
                      ray_run_dir=store.ray_storage_path(f"ray/{out.name}"), storage=store,
                      trust_remote_code=cfg.model.trust_remote_code, attn_implementation=cfg.model.attn_implementation,
                      run_name=f"{cfg.name}/{stage.name}",
                      env=wandb_env(cfg.tracking, storage, group=group or cfg.name, tags=[stage.kind, cfg.name]))
    job = common.StageJob(**{**job_fields, **(job_overrides or {})})
    t0 = time.time()
    launch.fit_stage(job, tokenized, store.ray_storage_path("ray"), callbacks=callbacks)
    _fetch(store, rel, (common.METRICS_FILE,))  # rank 0 wrote it, maybe on another node
    manifest = _stage_manifest(stage, key, parent, blend, out, n_rows, time.time() - t0)
    manifest["checkpoints"] = best_and_kept(store.filesystem, store.fs_path(f"ray/{out.name}"),
                                            stage.checkpoints.mode)
    manifest["resumed"] = resumed
    _write_model_card(store, out, manifest)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    publish(store, out / MANIFEST)  # written last: marks the stage complete
    log(f"{prefix}: done in {manifest['train_seconds']:.0f}s; loss {manifest['summary'].get('loss_first', 0):.3f} "
        f"-> {manifest['summary'].get('loss_last', 0):.3f}; model at {out / 'model'}")
    return StageOutcome(index, stage, out, manifest, False, resumed=resumed, metrics=common.read_metrics(out))


def training_rows(prefix: str, stage: StageConfig, module, blend: Blend, tok_dir: str, data_hook=None):
    """The stage's blend tokenized and packed, materialized as a Ray Dataset.

    On Ray Data for real blends; in this process for small ones (`data.tokenize_in_driver_max_rows`),
    where Ray Data's workers would spend longer starting and importing transformers than the
    work takes. The same batch functions at the same batch sizes run either way.
    """
    import ray.data

    # Same rows in the same order on every attempt: a resumed trainer skips the batches it
    # has seen by position, so the packed sequences must not be reshuffled by Ray Data.
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    steps = module.tokenize_steps(tok_dir, stage)
    if blend.rows <= stage.data.tokenize_in_driver_max_rows:
        import pyarrow as pa

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
    log(f"{prefix}: {n_rows:,} training sequences of <= {stage.data.max_length} tokens; training on "
        f"{stage.scaling.num_workers} worker(s)")
    return ds


def _fetch(store: Storage, rel: str, names: tuple[str, ...]) -> None:
    """Bring a stage's small files into this process's mirror (a no-op on local storage)."""
    if not store.is_remote:
        return
    for name in names:
        if store.exists(f"{rel}/{name}"):
            store.local_copy(f"{rel}/{name}")


def _prepare_tokenizer(module, stage: StageConfig, parent: ModelRef, out: Path, trust_remote_code: bool,
                       store: Storage) -> str:
    from tinyreason.model.tokenizer import load_tokenizer

    tok = module.prepare_tokenizer(load_tokenizer(localize(store, parent.tokenizer), trust_remote_code), stage)
    tok_dir = out / "tokenizer"
    tok.save_pretrained(tok_dir)
    return str(tok_dir)


def summarize_metrics(metrics: list[dict]) -> dict:
    """First/last loss, median throughput, and the DPO reward statistics at the end."""
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
    for k in ("mean_token_accuracy", "entropy", "rewards/chosen", "rewards/rejected", "rewards/margins",
              "rewards/accuracies"):
        if steps and k in steps[-1]:
            out[k] = steps[-1][k]
    return out


def _stage_manifest(stage, key, parent, blend, out, n_rows, seconds) -> dict:
    return {
        "stage": stage.name, "kind": stage.kind, "key": key,
        "parent": {"name": parent.name, "path": parent.path, "key": parent.key},
        "blend": {"path": str(blend.path), "key": blend.manifest["key"], "rows": blend.rows,
                  "content_hash": blend.manifest["content_hash"]},
        "config": stage.model_dump(mode="json"),
        "sequences": n_rows, "train_seconds": seconds,
        "summary": summarize_metrics(common.read_metrics(out)),
        "completed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _write_model_card(store: Storage, out: Path, manifest: dict) -> None:
    s = manifest["summary"]
    card = (
        f"---\nlibrary_name: transformers\ntags: [tinyreason, {manifest['kind']}]\n---\n"
        f"# {manifest['stage']} ({manifest['kind']})\n\n"
        f"Trained by tinyreason from `{manifest['parent']['path']}` on blend `{manifest['blend']['key']}` "
        f"({manifest['blend']['rows']:,} rows, content hash `{manifest['blend']['content_hash']}`).\n\n"
        f"Loss {s.get('loss_first', float('nan')):.3f} -> {s.get('loss_last', float('nan')):.3f} over "
        f"{s.get('steps', 0)} steps. Full config and metrics: `../manifest.json`.\n"
    )
    rel = f"stages/{out.name}/model"
    store.write_text(f"{rel}/README.md", card)
    store.write_text(f"{rel}/tinyreason_manifest.json", json.dumps(manifest, indent=2))


# --------------------------------------------------------------------------- evaluation


def evaluate(cfg: ExperimentConfig, model: ModelRef, cache_dir: Path, stage: StageConfig | None = None) -> dict | None:
    """Held-out problems (accuracy + <think> health), the lm-eval suite and, when `stage` is a
    pretrain stage, perplexity on its blend's held-out split plus fixed-prompt samples
    (result["pretrain"]); each a Ray task so it lands wherever a CPU or GPU is free. Cached
    next to the model by eval settings. The base model passes the first pretrain stage, so
    its perplexity is the "before" of that stage's.

    A failure here never costs the trained model: the stage's manifest is already
    written, and the error names the stage, the task and where the model is.
    """
    import ray

    from tinyreason.eval import pretrain
    from tinyreason.eval.harness import EvalError, run_suite_remote
    from tinyreason.eval.heldout import evaluate_heldout
    from tinyreason.runtime import free_task, root_message

    ev = cfg.evaluation
    store = as_storage(cfg.storage.path)
    key = ev.model_dump()
    blend = None
    if stage is not None and stage.kind == "pretrain":
        blend = stage_blend(cfg, stage, store)
        key["pretrain"] = {"blend": blend.manifest["key"], "max_length": stage.data.max_length, **pretrain.settings()}
    if ev.heldout_problems == 0 and not ev.benchmarks.tasks and blend is None:
        return None
    path = cache_dir / f"eval-{digest(key)}.json"
    cached = store.key_of(path)
    if cached is not None and store.exists(cached):
        return json.loads(store.local_copy(cached).read_text())
    if path.exists():  # a cache dir outside storage (jobs/evaluate.py --out)
        return json.loads(path.read_text())
    result: dict = {}
    part = "the held-out problems"
    try:
        if ev.heldout_problems:
            task = free_task(on_node(evaluate_heldout, store), num_cpus=1)
            result = ray.get(task.remote(model.path, ev.heldout_problems, ev.max_new_tokens, ev.batch_size,
                                         cfg.model.trust_remote_code))
        if ev.benchmarks.tasks:
            part = f"the lm-eval suite ({', '.join(t.task for t in ev.benchmarks.tasks)})"
            result["benchmarks"] = run_suite_remote(model.path, ev.benchmarks, cache_dir / "lm-eval",
                                                    cfg.model.trust_remote_code, store=store)
        if blend is not None:
            heldout = str(blend.path / "heldout") if blend.manifest.get("heldout_rows") else None
            part = f"pre-training perplexity on {heldout or blend.path}"
            result["pretrain"] = pretrain.evaluate_pretrain_remote(model.path, heldout, stage.data.max_length,
                                                                   ev.batch_size, cfg.model.trust_remote_code,
                                                                   store=store)
    except (EvalError, OSError, ValueError, ray.exceptions.RayTaskError) as e:
        cause = e.cause if isinstance(e, ray.exceptions.RayTaskError) and e.cause is not None else e
        why = str(cause) if isinstance(cause, EvalError) else root_message(cause)  # ours is already phrased
        raise EvalError(f"evaluating {model.name} failed in {part}: {why.rstrip('. ')}. "
                        f"The trained model is kept at {model.path}; fix the cause and re-run to evaluate it") from None
    if blend is not None:
        p = result["pretrain"]
        log(f"{model.name}: held-out perplexity {p['perplexity']:.3f} over {p['tokens']:,} tokens"
            if p["perplexity"] is not None else
            f"{model.name}: no held-out perplexity: blend {blend.path.name} keeps no rows back "
            "(set data.blend.heldout_fraction, e.g. 0.01)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    if cached is not None:
        publish(store, path)
    return result


# --------------------------------------------------------------------------- why a stage ran

STAGES_RECORD = "stages.json"  # per run: each stage's key and inputs at its last completion


def why_trained(previous: dict | None, outcome: StageOutcome) -> str:
    """One sentence for the report: why this stage was trained this time, or that it was reused.

    Compares the stage with what the same experiment ran last time (`stages.json` in the
    run dir): its own config (field by field), its blend, its parent, the seed.
    """
    m = outcome.manifest
    if outcome.cached:
        return "unchanged since its last run: reused"
    resumed = "; it resumed an interrupted attempt from its latest checkpoint" if outcome.resumed else ""
    if previous is None:
        return "this experiment had not run it before" + resumed
    reasons = []
    changed = _diff(previous["config"], m["config"])
    if changed:
        shown = ", ".join(f"{k} {a!r} -> {b!r}" for k, a, b in changed[:4])
        reasons.append(f"its config changed ({shown}{', ...' if len(changed) > 4 else ''})")
    if previous["blend"] != m["blend"]["key"]:
        reasons.append("its blend changed (sources, filters or file contents)")
    if previous["parent"] != m["parent"]["key"]:
        reasons.append(f"its parent {m['parent']['name']} changed")
    if not reasons:
        reasons.append("its output was missing (deleted, or the seed changed)")
    return " and ".join(reasons) + resumed


def _diff(a, b, prefix: str = "") -> list[tuple[str, object, object]]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [(prefix.rstrip("."), a, b)]


def _record_stage(store: Storage, run_dir: Path, record: dict, outcome: StageOutcome) -> None:
    m = outcome.manifest
    record[outcome.stage.name] = {"key": m["key"], "config": m["config"], "blend": m["blend"]["key"],
                                  "parent": m["parent"]["key"], "dir": str(outcome.dir)}
    (run_dir / STAGES_RECORD).write_text(json.dumps(record, indent=2))
    publish(store, run_dir / STAGES_RECORD)


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


# --------------------------------------------------------------------------- the curriculum


@dataclass
class CurriculumResult:
    config: ExperimentConfig
    run_dir: Path
    base: ModelRef
    base_eval: dict | None
    stages: list[StageOutcome]


def run_curriculum(cfg: ExperimentConfig) -> CurriculumResult:
    check_storage(cfg.storage.path)
    store = Storage(cfg.storage.path)
    storage = store.local_root  # absolute: Ray workers run in their own working dirs
    run_dir = storage / "runs" / cfg.name
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(dump_config(cfg), indent=2))
    publish(store, run_dir / "config.json")
    _fetch(store, f"runs/{cfg.name}", (STAGES_RECORD,))

    for stage in cfg.stages:  # before hours of stage 1, not when stage 3 cannot be scheduled
        launch.check_resources(stage)
    base = prepare_base(cfg, store)
    log(f"base model: {base.path}")
    base_eval = None
    # The base is scored on the first pretrain stage's held-out documents too: the "before" of its perplexity
    first_pretrain = next((s for s in cfg.stages if s.kind == "pretrain"), None)
    if cfg.evaluation.after_each_stage:  # a from-scratch base scores chance: the floor of the table
        base_eval = evaluate(cfg, base, storage / "base-evals" / base.key, stage=first_pretrain)
    outcomes, parent = [], base
    record = _read_json(run_dir / STAGES_RECORD)  # the last run's stages, updated as each one completes
    for i, stage in enumerate(cfg.stages):
        outcome = run_stage(cfg, i, stage, parent, store)
        outcome.reason = why_trained(record.get(stage.name), outcome)
        if not outcome.cached:
            log(f"stage {i + 1}/{len(cfg.stages)} {stage.name} was trained because {outcome.reason}")
        _record_stage(store, run_dir, record, outcome)
        if cfg.evaluation.after_each_stage:
            outcome.evaluation = evaluate(cfg, outcome.model, outcome.dir, stage=stage)
            if outcome.evaluation:
                from tinyreason.eval.scores import primary_scores

                shown = ", ".join(f"{k} {v:.3f}" for k, v in primary_scores(outcome.evaluation).items())
                log(f"stage {i + 1}/{len(cfg.stages)} {stage.name}: {shown}")
        outcomes.append(outcome)
        parent = outcome.model
    return CurriculumResult(cfg, run_dir, base, base_eval, outcomes)
