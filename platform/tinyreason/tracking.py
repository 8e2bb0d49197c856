"""Experiment tracking: wandb, online when credentials exist, offline files otherwise.

Nothing ever asks for a login: with no WANDB_API_KEY (and mode `auto`) runs are
written offline under `<storage>/wandb` and can be uploaded later with
`wandb sync`. One wandb group per curriculum run or sweep; one run per stage or trial.
Credentials are read from the environment by wandb itself and never copied into
the env we build, the configs or the manifests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from tinyreason.config import TrackingConfig

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
        "WANDB_DISABLE_GIT": "true",
        # Ray kills a worker (and its wandb-core child) when the loop returns, a fault hits or a
        # scheduler stops a trial; wandb-core flushes the .wandb file every 15 s by default, so a
        # 10 s micro stage left a header-only file. Once a second is one small append.
        "WANDB__TRANSACTION_LOG_FLUSH_INTERVAL": "1",
    }


def report_to(env: dict[str, str]) -> list[str]:
    return ["wandb"] if env.get("WANDB_MODE") in ("online", "offline") else []


def finish_run() -> None:
    """Close this process's wandb run, if it has one: flushes the last rows and writes the
    exit record. transformers' WandbCallback never calls wandb.finish() and Ray Train kills
    its workers when the loop returns, so without this every stage's run ends without an
    exit record (`wandb sync` shows it crashed) and may lose its last second of logs.
    For rank 0 at the end of training (train/common.py, on_train_end)."""
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()


def redact(text: str) -> str:
    """Replace the value of any secret in the environment with ***."""
    for name in SECRET_ENV:
        value = os.environ.get(name)
        if value and len(value) >= 6:
            text = text.replace(value, "***")
    return text


# --------------------------------------------------------------------------- reading offline runs


@dataclass
class OfflineRun:
    """What one offline wandb run recorded, read back from its .wandb file."""

    path: Path
    name: str
    project: str
    group: str
    tags: list[str]
    config: dict
    history: list[dict] = field(default_factory=list)
    exit_code: int | None = None  # None: the run never finished (its process was killed)

    def series(self, key: str) -> list:
        return [row[key] for row in self.history if key in row]


# The .wandb file is a LevelDB-style log of protobuf `Record`s, the file `wandb sync`
# uploads: a 7-byte header, then 32 KiB blocks of chunks, each with a 7-byte header
# (crc32 over type byte + data, length, type: full / first / middle / last).
_BLOCK, _CHUNK_HEADER = 32768, 7


def _wandb_records(path: Path):
    import struct
    import zlib

    data = Path(path).read_bytes()
    ident, magic, _version = struct.unpack("<4sHB", data[:7])
    if ident != b":W&B" or magic != 0xBEE1:
        raise ValueError(f"{path} is not a wandb transaction log")
    pos, pending = 7, b""
    while pos + _CHUNK_HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _CHUNK_HEADER:  # block tail too short for a header: zero padding
            pos += left
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos:pos + _CHUNK_HEADER])
        chunk = data[pos + _CHUNK_HEADER:pos + _CHUNK_HEADER + length]
        if kind == 0 or len(chunk) < length or crc != zlib.crc32(chunk, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF:
            return  # the rest was never written (a run killed mid-write ends here)
        pos += _CHUNK_HEADER + length
        if kind == 1:
            yield chunk
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            yield pending + chunk


def read_offline_run(run_dir: str | Path) -> OfflineRun:
    """The run record (name, project, group, tags), the config and every history row of
    an offline run dir (`<storage>/wandb/wandb/offline-run-*`), without uploading it."""
    import json

    from wandb.proto import wandb_internal_pb2 as pb

    run_dir = Path(run_dir)
    files = sorted(run_dir.glob("*.wandb"))
    if not files:
        raise FileNotFoundError(f"no .wandb file in {run_dir}")
    run = OfflineRun(files[0], "", "", "", [], {})

    def key(item) -> str:
        return item.key or "/".join(item.nested_key)

    for raw in _wandb_records(files[0]):
        record = pb.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run.name, run.project, run.group, run.tags = r.display_name, r.project, r.run_group, list(r.tags)
            run.config.update({key(u): json.loads(u.value_json) for u in r.config.update})
        elif kind == "config":
            run.config.update({key(u): json.loads(u.value_json) for u in record.config.update})
        elif kind == "history":
            run.history.append({key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    return run


def offline_runs(storage: str | Path) -> list[OfflineRun]:
    """Every offline run under a storage path, oldest first."""
    return [read_offline_run(d) for d in sorted((Path(storage) / "wandb" / "wandb").glob("offline-run-*"))]
