"""Checkpoints on storage: what each one records, how it is uploaded, which are kept.

Every `save_steps` each worker's Hugging Face checkpoint (model, optimizer and
DeepSpeed shards, scheduler, RNG, trainer state) is reported to Ray Train, which
copies it to `<storage>/ray/<stage run>/checkpoint_*` and hands the latest back
after a fault. Rank 0 adds a small `tinyreason_checkpoint.json` (step and the
policy's metric), so decisions can be made from storage alone, with no state in
the driver: a re-submitted job after a driver crash applies the same policy.

Ray keeps the last `save_total_limit` checkpoints (its own `num_to_keep`; its
snapshot of the run must only name checkpoints that exist, or a restarted driver
refuses to resume). The best by the policy's metric is kept beside them, outside
Ray's bookkeeping: when a checkpoint beats the best so far, `BestKeeper` copies its
model files (weights, config, tokenizer: what you load, not the optimizer state)
to `<run>/best/<checkpoint>/` and records it in `<run>/best.json`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs
import ray.train

from tinyreason.train import elastic

INFO_FILE = "tinyreason_checkpoint.json"


# --------------------------------------------------------------------------- worker side


class MetricWindow:
    """The policy metric averaged over the logs since the previous checkpoint."""

    def __init__(self, metric: str):
        self.metric, self.values, self.last = metric, [], None

    def add(self, logs: dict) -> None:
        if self.metric in logs:
            self.values.append(float(logs[self.metric]))
            self.last = self.values[-1]

    def take(self) -> float | None:
        value = sum(self.values) / len(self.values) if self.values else self.last  # save_steps < logging_steps
        self.values = []
        return value


def write_info(ckpt_dir: Path, step: int, metric: str, value: float | None, world_size: int = 1,
               cause: str = "save_steps") -> None:
    """`cause`: save_steps, every_minutes or a notice (SIGTERM, drain): why this step was saved."""
    (ckpt_dir / INFO_FILE).write_text(json.dumps({"step": step, "metric": metric, "value": value,
                                                  "world_size": world_size, "cause": cause}))


def stage_for_upload(ckpt_dir: Path, rank: int) -> Path:
    """A per-rank snapshot of the checkpoint that Ray may upload in the background.

    Hard links, so it costs no copy: the trainer can rotate or overwrite its own
    `checkpoint-N` while the upload still reads the snapshot, and ranks sharing a
    filesystem (workers on one machine) never delete each other's files. Ray
    deletes the snapshot once it is uploaded.
    """
    dest = ckpt_dir.parent / "upload" / f"{ckpt_dir.name}-rank{rank}"
    shutil.rmtree(dest, ignore_errors=True)

    def link(src, dst):
        try:
            os.link(src, dst)
        except OSError:  # a filesystem without hard links
            shutil.copy2(src, dst)

    shutil.copytree(ckpt_dir, dest, copy_function=link)
    return dest


def resume_checkpoint(fallback: str | None = None) -> str | None:
    """The checkpoint this attempt resumes from: Ray Train's latest reported one.

    After a worker fault Ray Train restarts the worker group and hands back the
    last checkpoint; after a driver fault a new TorchTrainer with the same run name
    and storage restores the same bookkeeping. The Hugging Face checkpoint inside
    holds optimizer, scheduler, RNG and trainer state (global step, data position),
    so training continues at the step it reached, not at the start of the epoch.
    """
    ckpt = ray.train.get_checkpoint()
    if ckpt is None:
        return fallback
    path = Path(ckpt.path)
    if path.exists() and (path / "trainer_state.json").exists():
        return str(path)  # local or shared storage: read in place
    # Object storage: a download dir of this rank's own. Ray's default dir is named by the
    # checkpoint alone, so the ranks of a node share it, and Checkpoint.to_directory locks it only
    # while one downloads: a rank that comes after the first has finished downloads it again, over
    # the files the first is already reading. A resume from S3 under load read an empty
    # trainer_state.json that way (rank 1, JSONDecodeError; 2026-12-06).
    rank = ray.train.get_context().get_world_rank()
    key = hashlib.sha256(ckpt.path.encode()).hexdigest()[:16]
    return ckpt.to_directory(str(Path(tempfile.gettempdir()) / f"tinyreason-resume-{key}-rank{rank}"))


def resume_plan(job, fallback: str | None = None) -> elastic.Resume:
    """This attempt's resume (`resume_checkpoint`), made loadable by this many workers:
    a checkpoint another number of workers wrote is converted first (train/elastic.py)."""
    ctx = ray.train.get_context()
    return elastic.plan(resume_checkpoint(fallback), ctx.get_world_size(), ctx.get_world_rank(),
                        ctx.get_local_rank(), job.output.trainer_dir / "elastic")


# --------------------------------------------------------------------------- the best, and what is left


BEST_DIR, BEST_FILE = "best", "best.json"
# What a loadable model needs; the rest of a checkpoint (optimizer and DeepSpeed shards,
# scheduler, RNG) only matters for resuming, which the last N checkpoints serve.
MODEL_FILES = (".safetensors", ".json", ".jinja", ".txt", ".model")


@dataclass(frozen=True)
class Saved:
    """One checkpoint on storage, as its info file describes it."""

    path: str
    step: int
    value: float | None


def is_better(value: float | None, best: float | None, mode: str) -> bool:
    if value is None:
        return False
    if best is None:
        return True
    return value < best if mode == "min" else value > best


def _read_json(fs, path: str) -> dict | None:
    try:
        with fs.open_input_stream(path) as f:
            return json.loads(f.read().decode())
    except (OSError, FileNotFoundError, ValueError):
        return None


def _write_json(fs, path: str, obj: dict) -> None:
    with fs.open_output_stream(path) as f:
        f.write(json.dumps(obj).encode())


SNAPSHOT_FILE = "checkpoint_manager_snapshot.json"  # Ray Train's record of the run's registered checkpoints


def list_saved(fs, run_dir: str) -> list[Saved]:
    """Every checkpoint Ray Train registered under a run dir (every rank's upload done).

    A checkpoint dir Ray does not list is an upload that never finished: a killed attempt
    can leave one holding some ranks' files and even the info file, but not all of its state.
    """
    snapshot = _read_json(fs, f"{run_dir}/{SNAPSHOT_FILE}") or {}
    registered = {r["checkpoint_dir_name"] for r in snapshot.get("checkpoint_results") or []}
    out = []
    try:
        entries = fs.get_file_info(pafs.FileSelector(run_dir, allow_not_found=True))
    except (OSError, FileNotFoundError):
        return []
    for entry in entries:
        if entry.type != pafs.FileType.Directory or entry.base_name not in registered:
            continue
        info = _read_json(fs, f"{entry.path}/{INFO_FILE}")
        if info is not None:  # else a checkpoint from before this policy
            out.append(Saved(entry.path, int(info["step"]), info.get("value")))
    return sorted(out, key=lambda s: s.step)


def keep_if_best(fs, checkpoint_path: str, mode: str) -> bool:
    """Copy a checkpoint's model files to `<run>/best/` when its metric beats the best so far."""
    run_dir = str(Path(checkpoint_path).parent)
    info = _read_json(fs, f"{checkpoint_path}/{INFO_FILE}")
    best = _read_json(fs, f"{run_dir}/{BEST_FILE}")
    if info is None or not is_better(info.get("value"), (best or {}).get("value"), mode):
        return False
    dest = f"{run_dir}/{BEST_DIR}/{Path(checkpoint_path).name}"
    fs.create_dir(dest, recursive=True)
    for entry in fs.get_file_info(pafs.FileSelector(checkpoint_path)):
        if entry.type == pafs.FileType.File and entry.base_name.endswith(MODEL_FILES):
            fs.copy_file(entry.path, f"{dest}/{entry.base_name}")
    # the pointer moves only once the copy is whole; then the previous best goes
    _write_json(fs, f"{run_dir}/{BEST_FILE}", {**info, "path": dest})
    if best and best.get("path") and best["path"] != dest:
        try:
            fs.delete_dir(best["path"])
        except (OSError, FileNotFoundError):
            pass
    return True


def best_and_kept(fs, run_dir: str, mode: str) -> dict:
    """For the stage manifest: the checkpoints left on storage and the best model so far."""
    saved = list_saved(fs, run_dir)
    best = _read_json(fs, f"{run_dir}/{BEST_FILE}")
    return {
        "kept": [{"path": s.path, "step": s.step, "value": s.value} for s in saved],
        "best": None if best is None else {"path": best["path"], "step": best["step"], "value": best["value"]},
    }


def best_keeper(mode: str):
    """A Ray Train callback that runs `keep_if_best` on each registered checkpoint."""

    class BestKeeper(ray.train.UserCallback):
        def after_report(self, run_context, metrics, checkpoint):
            if checkpoint is not None:
                keep_if_best(checkpoint.filesystem, checkpoint.path, mode)

    return BestKeeper()
