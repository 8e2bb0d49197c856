"""TRL and DeepSpeed arguments of a stage: the trainer settings as written (TRL's names),
plus what the platform owns (output dir, DeepSpeed, precision, logging, reporting)."""

from __future__ import annotations

import os
from typing import Any

import torch

from tinyreason.config.sections import DeepSpeedConfig
from tinyreason.tracking import report_to
from tinyreason.train import elastic
from tinyreason.train.elastic import Resume
from tinyreason.train.job import StageJob
from tinyreason.train.worker import is_rank_zero


def deepspeed_config(ds: DeepSpeedConfig, precision: str, universal: bool = False) -> dict | None:
    """A DeepSpeed ZeRO config; 'auto' values are filled in from the TRL arguments so
    the two never disagree (transformers rejects a mismatch). `universal`: the resume reads a
    universal checkpoint (train/elastic.py)."""
    if not ds.enabled:
        return None
    zero: dict[str, Any] = {"stage": ds.zero_stage}
    if ds.zero_stage >= 2:
        zero.update(overlap_comm=False, contiguous_gradients=True)
    if ds.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True  # export a whole model, not shards
    if ds.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    cfg: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": "auto",
        "train_batch_size": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "zero_optimization": zero,
        "bf16": {"enabled": precision == "bf16"},
        "fp16": {"enabled": precision == "fp16"},
        "steps_per_print": 10**9,  # the trainer logs; DeepSpeed's own prints would duplicate them
    }
    if ds.optimizer:
        cfg["optimizer"] = ds.optimizer
    if universal:
        cfg["checkpoint"] = {"load_universal": True}
    return cfg


def trl_arguments(cls, job: StageJob, precision: str, resume: Resume | None = None, **platform: Any):
    """Build SFTConfig / DPOConfig from the stage's TRL settings plus what the platform owns.

    On fewer workers than scaling.num_workers each accumulates more micro-batches, so the
    global batch stays the config's (train/elastic.py)."""
    stage = job.stage
    settings = stage.trainer.to_trl()
    # One local copy: the copies that count are on storage, where Ray keeps the last N
    settings["save_total_limit"] = 1
    settings["gradient_accumulation_steps"] = elastic.accumulation(stage, int(os.environ.get("WORLD_SIZE", "1")))
    ds_cfg = deepspeed_config(stage.deepspeed, precision, universal=bool(resume and resume.universal))
    os.environ.update(job.env or {})
    return cls(
        output_dir=str(job.output.trainer_dir),
        deepspeed=ds_cfg,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not torch.cuda.is_available(),
        report_to=report_to(job.env or {}),
        run_name=job.run_name,
        save_strategy="steps",
        remove_unused_columns=False,
        dataloader_drop_last=True,  # equal step counts on every rank, or collectives hang
        disable_tqdm=not is_rank_zero(),
        include_num_input_tokens_seen="non_padding",  # summed over ranks: tokens/s is the whole stage's
        **{**settings, **platform},
    )


