"""Experiment tracking: wandb, online when credentials exist, offline files otherwise.

Nothing ever asks for a login: with no WANDB_API_KEY (and mode `auto`) runs are
written offline under `<storage>/wandb` and can be uploaded later with
`wandb sync`. One wandb group per curriculum run or sweep; one run per stage or trial.
Credentials are read from the environment by wandb itself and never copied into
the env we build, the configs or the manifests.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tinyreason.config.sections import TrackingConfig

SECRET_ENV = ("WANDB_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def wandb_mode(cfg: TrackingConfig) -> str:
    mode = cfg.wandb.mode
    if not cfg.wandb.enabled:
        return "disabled"
    if mode == "auto":
        return "online" if os.environ.get("WANDB_API_KEY") else "offline"
    return mode


def wandb_env(cfg: TrackingConfig, storage: Path, group: str, tags: list[str]) -> dict[str, str]:
    """Environment for the trainer's WandbCallback (it calls wandb.init on rank 0)."""
    mode = wandb_mode(cfg)
    if mode == "disabled":
        return {}
    wandb_dir = Path(storage) / "wandb"
    wandb_dir.mkdir(parents=True, exist_ok=True)
    return {
        "WANDB_MODE": mode,
        "WANDB_PROJECT": cfg.wandb.project,
        "WANDB_RUN_GROUP": group,
        "WANDB_TAGS": ",".join(tags),
        "WANDB_DIR": str(wandb_dir),
        "WANDB_SILENT": "true",
        "WANDB_CONSOLE": "off",  # console capture would copy every log line (and any secret in one) to files
        # wandb's own git capture runs in the training worker, whose working dir is Ray's upload
        # without .git: it would record no commit, or the commit of whatever checkout encloses
        # that dir. tinyreason records git itself (run_provenance: live git, or the record
        # jobs/submit.py made on the submitting machine) and logs it into the run's config.
        "WANDB_DISABLE_GIT": "true",
        # Ray kills a worker (and its wandb-core child) when the loop returns, a fault hits or a
        # scheduler stops a trial; wandb-core flushes the .wandb file every 15 s by default, so a
        # 10 s micro stage left a header-only file. At 1 s, an ASHA trial stopped at its first rung
        # under a local Ray's 0.1 s polling (runtime.local_environment) still left 7 bytes: micro
        # steps reach the rung in under a second. Four times a second is still one small append.
        "WANDB__TRANSACTION_LOG_FLUSH_INTERVAL": "0.25",
    }


def log_provenance(record: dict | None) -> None:
    """Add what trained this stage (libraries, code digest, git commit and dirty flag, seed) to
    this process's wandb run config, under `tinyreason`; a no-op without a wandb run. For rank 0
    when training begins, after transformers' WandbCallback has called wandb.init."""
    wandb = sys.modules.get("wandb")
    if record and wandb is not None and wandb.run is not None:
        wandb.config.update({"tinyreason": record}, allow_val_change=True)


def report_to(env: dict[str, str]) -> list[str]:
    return ["wandb"] if env.get("WANDB_MODE") in ("online", "offline") else []


def finish_run() -> None:
    """Close this process's wandb run, if it has one: flushes the last rows and writes the
    exit record. transformers' WandbCallback never calls wandb.finish() and Ray Train kills
    its workers when the loop returns, so without this every stage's run ends without an
    exit record (`wandb sync` shows it crashed) and may lose its last second of logs.
    `finish` returns once the exit record is handled, not once wandb-core has written the
    transaction log out (CI once read a log back without its last config record), so the
    teardown waits for the service to close the file before Ray can kill this process.
    For rank 0 at the end of training (train/reporting.py, on_train_end)."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()
        wandb.teardown()


def redact(text: str) -> str:
    """Replace the value of any secret in the environment with ***."""
    for name in SECRET_ENV:
        value = os.environ.get(name)
        if value and len(value) >= 6:
            text = text.replace(value, "***")
    return text
