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
from tinyreason.data.blend import Blend, build_blend
from tinyreason.model import presets
from tinyreason.tracking import wandb_env
from tinyreason.train import common, launch

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
    evaluation: dict | None = None
    metrics: list[dict] = field(default_factory=list)

    @property
    def model(self) -> ModelRef:
        return ModelRef(self.stage.name, str(self.dir / "model"), str(self.dir / "model"), self.manifest["key"])


# --------------------------------------------------------------------------- base


def prepare_base(cfg: ExperimentConfig, storage: Path) -> ModelRef:
    """The model stage 1 starts from: a hub/local model, or a fresh preset with a
    BPE tokenizer trained on the first pretrain blend."""
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
    out = storage / "base" / f"{cfg.model.preset}-{key}"
    if not (out / MANIFEST).exists():
        _build_base(cfg, blend, out)
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


def stage_blend(cfg: ExperimentConfig, stage: StageConfig, storage: Path) -> Blend:
    """A stage's blend, decontaminated against every evaluation set of the experiment.

    The n-gram index is built once per evaluation config (not per stage) and its key
    enters the blend's cache key, so changing the eval suite rebuilds the blends.
    """
    from tinyreason.data.decontam import decontaminator_for

    key = digest(cfg.evaluation.model_dump())
    if key not in _DECONTAMINATORS:
        _DECONTAMINATORS[key] = decontaminator_for(cfg)
    return build_blend(stage.data.resolved_blend(), stage.kind, storage / "blends", seed=cfg.seed,
                       decontaminate=_DECONTAMINATORS[key])


def stage_key(stage: StageConfig, parent: ModelRef, blend: Blend, seed: int) -> str:
    return digest({"stage": stage.model_dump(mode="json"), "parent": parent.key, "blend": blend.manifest["key"],
                   "seed": seed})


def run_stage(cfg: ExperimentConfig, index: int, stage: StageConfig, parent: ModelRef, storage: Path,
              group: str | None = None, job_overrides: dict | None = None, data_hook=None,
              callbacks: list | None = None) -> StageOutcome:
    """Train one stage unless its content-addressed output is complete.

    Sweeps pass `data_hook` (e.g. to attach shared reference log-probs to the
    tokenized rows) and Ray Train `callbacks` (to forward reports to Tune).
    """
    prefix = f"stage {index + 1}/{len(cfg.stages)} {stage.name} ({stage.kind})"
    blend = stage_blend(cfg, stage, storage)
    log(f"{prefix}: blend {blend.rows:,} rows{' (cached)' if blend.cached else ''} at {blend.path}")
    key = stage_key(stage, parent, blend, cfg.seed)
    out = storage / "stages" / f"{index:02d}-{stage.name}-{key}"
    if (out / MANIFEST).exists():
        log(f"{prefix}: already complete, reusing {out}")
        return StageOutcome(index, stage, out, json.loads((out / MANIFEST).read_text()), True,
                            metrics=common.read_metrics(out))

    launch.check_resources(stage)
    out.mkdir(parents=True, exist_ok=True)
    module = launch.module_for(stage.kind)
    tok_dir = _prepare_tokenizer(module, stage, parent, out, cfg.model.trust_remote_code)
    tokenized = module.tokenize(blend.dataset(), tok_dir, stage)
    if data_hook is not None:
        tokenized = data_hook(tokenized, tok_dir)
    tokenized = tokenized.materialize()
    n_rows = tokenized.count()
    if n_rows < stage.scaling.num_workers:
        raise ValueError(
            f"{prefix}: only {n_rows} training sequences after tokenizing, fewer than its "
            f"{stage.scaling.num_workers} workers; add data or raise data.max_length"
        )
    log(f"{prefix}: {n_rows:,} training sequences of <= {stage.data.max_length} tokens; training on "
        f"{stage.scaling.num_workers} worker(s)")
    # Ray Train keeps the run's checkpoints under <storage>/ray/<stage dir name>: an earlier
    # attempt that died left them there, and the new TorchTrainer resumes from the latest.
    if (storage / "ray" / out.name).exists():
        log(f"{prefix}: an interrupted attempt exists; resuming from its latest checkpoint")
    else:
        (out / common.METRICS_FILE).unlink(missing_ok=True)
    job_fields = dict(stage=stage, parent_model=parent.path, tokenizer_dir=tok_dir, output_dir=str(out),
                      trust_remote_code=cfg.model.trust_remote_code, attn_implementation=cfg.model.attn_implementation,
                      run_name=f"{cfg.name}/{stage.name}",
                      env=wandb_env(cfg.tracking, storage, group=group or cfg.name, tags=[stage.kind, cfg.name]))
    job = common.StageJob(**{**job_fields, **(job_overrides or {})})
    t0 = time.time()
    launch.fit_stage(job, tokenized, str(storage / "ray"), callbacks=callbacks)
    manifest = _stage_manifest(stage, key, parent, blend, out, n_rows, time.time() - t0)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))  # written last: marks the stage complete
    _write_model_card(out, manifest)
    log(f"{prefix}: done in {manifest['train_seconds']:.0f}s; loss {manifest['summary'].get('loss_first', 0):.3f} "
        f"-> {manifest['summary'].get('loss_last', 0):.3f}; model at {out / 'model'}")
    return StageOutcome(index, stage, out, manifest, False, metrics=common.read_metrics(out))


def _prepare_tokenizer(module, stage: StageConfig, parent: ModelRef, out: Path, trust_remote_code: bool) -> str:
    from tinyreason.model.tokenizer import load_tokenizer

    tok = module.prepare_tokenizer(load_tokenizer(parent.tokenizer, trust_remote_code), stage)
    tok_dir = out / "tokenizer"
    tok.save_pretrained(tok_dir)
    return str(tok_dir)


def summarize_metrics(metrics: list[dict]) -> dict:
    """First/last loss, median throughput, and the DPO reward statistics at the end."""
    steps = [m for m in metrics if "loss" in m]
    out: dict = {}
    if steps:
        out["loss_first"], out["loss_last"] = steps[0]["loss"], steps[-1]["loss"]
        out["steps"] = steps[-1].get("step", 0)
    tps = sorted(m["tokens_per_s"] for m in steps[1:] if "tokens_per_s" in m)  # first log includes warm-up
    if tps:
        out["tokens_per_s"] = tps[len(tps) // 2]
    startup = next((m for m in metrics if m.get("event") == "startup"), None)
    if startup:
        out["worker_to_first_step_s"] = startup["to_first_step"]
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


def _write_model_card(out: Path, manifest: dict) -> None:
    s = manifest["summary"]
    card = (
        f"---\nlibrary_name: transformers\ntags: [tinyreason, {manifest['kind']}]\n---\n"
        f"# {manifest['stage']} ({manifest['kind']})\n\n"
        f"Trained by tinyreason from `{manifest['parent']['path']}` on blend `{manifest['blend']['key']}` "
        f"({manifest['blend']['rows']:,} rows, content hash `{manifest['blend']['content_hash']}`).\n\n"
        f"Loss {s.get('loss_first', float('nan')):.3f} -> {s.get('loss_last', float('nan')):.3f} over "
        f"{s.get('steps', 0)} steps. Full config and metrics: `../manifest.json`.\n"
    )
    (out / "model" / "README.md").write_text(card, encoding="utf-8")
    (out / "model" / "tinyreason_manifest.json").write_text(json.dumps(manifest, indent=2))


# --------------------------------------------------------------------------- evaluation


def evaluate(cfg: ExperimentConfig, model: ModelRef, cache_dir: Path) -> dict | None:
    """Held-out problems (accuracy + <think> health) and the lm-eval suite, each a Ray task
    so it lands wherever a CPU or GPU is free. Cached next to the model by eval settings.

    A failure here never costs the trained model: the stage's manifest is already
    written, and the error names the stage, the task and where the model is.
    """
    import ray

    from tinyreason.eval.harness import EvalError, run_suite_remote
    from tinyreason.eval.heldout import evaluate_heldout
    from tinyreason.runtime import free_task

    ev = cfg.evaluation
    if ev.heldout_problems == 0 and not ev.benchmarks.tasks:
        return None
    path = cache_dir / f"eval-{digest(ev.model_dump())}.json"
    if path.exists():
        return json.loads(path.read_text())
    result: dict = {}
    try:
        if ev.heldout_problems:
            task = free_task(evaluate_heldout, num_cpus=1)
            result = ray.get(task.remote(model.path, ev.heldout_problems, ev.max_new_tokens, ev.batch_size,
                                         cfg.model.trust_remote_code))
        if ev.benchmarks.tasks:
            result["benchmarks"] = run_suite_remote(model.path, ev.benchmarks, cache_dir / "lm-eval",
                                                    cfg.model.trust_remote_code)
    except (EvalError, OSError, ray.exceptions.RayTaskError) as e:
        from tinyreason.runtime import root_message

        raise EvalError(f"evaluating {model.name} failed: {root_message(e)}. "
                        f"The trained model is kept at {model.path}; fix the cause and re-run to evaluate it") from None
    cache_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    return result


# --------------------------------------------------------------------------- the curriculum


@dataclass
class CurriculumResult:
    config: ExperimentConfig
    run_dir: Path
    base: ModelRef
    base_eval: dict | None
    stages: list[StageOutcome]


def run_curriculum(cfg: ExperimentConfig) -> CurriculumResult:
    # absolute: Ray workers run in their own working dirs
    storage = check_storage(cfg.storage.path)
    run_dir = storage / "runs" / cfg.name
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(dump_config(cfg), indent=2))

    base = prepare_base(cfg, storage)
    log(f"base model: {base.path}")
    base_eval = None
    if cfg.evaluation.after_each_stage:  # a from-scratch base scores chance: the floor of the table
        base_eval = evaluate(cfg, base, storage / "base-evals" / base.key)
    outcomes, parent = [], base
    for i, stage in enumerate(cfg.stages):
        outcome = run_stage(cfg, i, stage, parent, storage)
        if cfg.evaluation.after_each_stage:
            outcome.evaluation = evaluate(cfg, outcome.model, outcome.dir)
            if outcome.evaluation:
                from tinyreason.eval.scores import primary_scores

                shown = ", ".join(f"{k} {v:.3f}" for k, v in primary_scores(outcome.evaluation).items())
                log(f"stage {i + 1}/{len(cfg.stages)} {stage.name}: {shown}")
        outcomes.append(outcome)
        parent = outcome.model
    return CurriculumResult(cfg, run_dir, base, base_eval, outcomes)
