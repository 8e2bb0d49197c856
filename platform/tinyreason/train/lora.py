"""LoRA on any stage that takes a `peft:` section: the adapter's config for the TRL trainer,
the check of its target modules against the real parent, and the export.

The export is a plain model: the adapter merged into the parent's weights (`model/`), so
the next stage, the evaluator and users load it with transformers alone; the adapter itself
is kept beside it (`model/adapter/`), loadable onto the parent with peft. Tokens the stage
adds (<think>) get trainable embedding rows (peft's `trainable_token_indices`): a frozen
embedding would leave them at their initial values.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from tinyreason.config.lora import check_targets
from tinyreason.model.presets import module_types
from tinyreason.train.job import StageJob

log = logging.getLogger(__name__)

ADAPTER_DIR = "adapter"  # inside the stage's model dir
PEFT_EVENT = "peft"  # the metrics.jsonl line that records the adapter's size


def preflight(job: StageJob) -> None:
    """Driver side, before any worker: the adapter's target modules exist in the model the stage
    really starts from (the config checked presets and local dirs; a hub parent is checked here)."""
    if job.stage.peft is None:
        return
    parent = Path(job.local(job.parent_model))
    types = module_types(config_dir=str(parent) if parent.is_dir() else job.parent_model)
    check_targets(job.stage.peft.target_modules, types, f"stage {job.stage.name}", job.parent_model)


def parent_vocab(job: StageJob) -> int:
    """Embedding rows of the parent model, before the stage grows them for new tokens."""
    config = Path(job.local(job.parent_model)) / "config.json"
    if config.is_file():
        return int(json.loads(config.read_text())["vocab_size"])
    # on use: only a hub parent without a local copy gets here
    from transformers import AutoConfig

    return int(AutoConfig.from_pretrained(job.parent_model, trust_remote_code=job.trust_remote_code).vocab_size)


def peft_config(job: StageJob, tok):
    """The stage's LoraConfig for the TRL trainer's `peft_config`, or None without a peft section."""
    if job.stage.peft is None:
        return None
    # worker-only import: peft loads torch and transformers (the driver imports this module for preflight)
    from peft import LoraConfig

    settings = job.stage.peft.to_peft()
    new = list(range(parent_vocab(job), len(tok)))
    if new:
        trainable = dict(settings.get("trainable_token_indices") or {})
        trainable["embed_tokens"] = sorted({*trainable.get("embed_tokens", []), *new})
        settings["trainable_token_indices"] = trainable
    return LoraConfig(task_type="CAUSAL_LM", **settings)


def on_trainer(trainer, job: StageJob) -> None:
    """Once the TRL trainer has wrapped the model in the adapter: let TRL's fused LM head read a
    head peft wrapped for the new tokens' rows, and write one metrics.jsonl line with how many
    parameters the adapter trains, of how many."""
    from tinyreason.train import compat  # worker side only: DeepSpeed and TRL (the driver imports this module)

    if job.stage.peft is None:
        return
    compat.fused_head_sees_trainable_tokens(trainer.model)
    if not trainer.is_world_process_zero():
        return
    params = list(trainer.model.parameters())
    trainable = sum(p.numel() for p in params if p.requires_grad)
    total = sum(p.numel() for p in params)
    job.output.append({"event": PEFT_EVENT, "trainable_parameters": trainable, "parameters": total,
                       "trainable_share": round(trainable / max(total, 1), 5)})


def export_merged(trainer, tok, job: StageJob) -> None:
    """The adapter to model/adapter/ (every rank calls it: saving may gather), then on rank 0 the
    adapter merged into the weights, saved as the stage's plain model."""
    adapter = job.output.model_dir / ADAPTER_DIR
    trainer.save_model(str(adapter))
    if not trainer.is_world_process_zero():
        return
    (adapter / "training_args.bin").unlink(missing_ok=True)  # a pickle; the manifest holds the settings
    model = trainer.accelerator.unwrap_model(trainer.model)
    merged = model.merge_and_unload()  # training is over: merging in place costs no copy
    merged.save_pretrained(job.export_dir)
    tok.save_pretrained(str(adapter))  # the adapter fits the parent's weights with this stage's tokenizer
    log.info("merged the LoRA adapter into %s; the adapter is kept in %s", job.export_dir, adapter)
