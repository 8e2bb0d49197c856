"""Checkpoints on storage: what each one records, how it is uploaded, which are kept.

Every `save_steps` each worker's Hugging Face checkpoint (model, optimizer and
DeepSpeed shards, scheduler, RNG, trainer state) is reported to Ray Train, which
copies it to `<storage>/ray/<stage run>/checkpoint_*` and hands the latest back
after a fault. Rank 0 adds a small `tinyreason_checkpoint.json` (step and the
policy's metric) so retention can be decided from storage alone, with no state in
the driver: a re-submitted job after a driver crash applies the same policy.

Retention keeps the last `save_total_limit` checkpoints plus the best by the
policy's metric. Ray's own `num_to_keep` keeps the top-K by one score plus the
latest, which cannot express "the last N and the best", so Ray keeps everything
and `Retention` (a Ray Train callback on the controller) deletes the rest.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

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


def write_info(ckpt_dir: Path, step: int, metric: str, value: float | None) -> None:
    (ckpt_dir / INFO_FILE).write_text(json.dumps({"step": step, "metric": metric, "value": value}))


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


# --------------------------------------------------------------------------- retention


@dataclass(frozen=True)
class Saved:
    """One checkpoint on storage, as its info file describes it."""

    path: str
    step: int
    value: float | None


def choose_kept(saved: list[Saved], keep_last: int | None, keep_best: bool, mode: str) -> set[str]:
    """The paths to keep: the `keep_last` most recent by step, and the best by value.

    `keep_last=None` keeps everything. Ties go to the later checkpoint."""
    if keep_last is None:
        return {s.path for s in saved}
    by_step = sorted(saved, key=lambda s: s.step)
    kept = {s.path for s in by_step[-keep_last:]}
    scored = [s for s in by_step if s.value is not None]
    if keep_best and scored:
        sign = 1 if mode == "min" else -1
        kept.add(min(reversed(scored), key=lambda s: sign * s.value).path)
    return kept


def list_saved(fs, run_dir: str) -> list[Saved]:
    """Every complete checkpoint under a Ray Train run dir (one whose info file arrived)."""
    import pyarrow.fs as pafs

    out = []
    try:
        entries = fs.get_file_info(pafs.FileSelector(run_dir, allow_not_found=True))
    except (OSError, FileNotFoundError):
        return []
    for entry in entries:
        if entry.type != pafs.FileType.Directory or not entry.base_name.startswith("checkpoint_"):
            continue
        try:
            with fs.open_input_stream(f"{entry.path}/{INFO_FILE}") as f:
                info = json.loads(f.read().decode())
        except (OSError, FileNotFoundError, ValueError):
            continue  # an upload in progress, or a checkpoint from before this policy: leave it alone
        out.append(Saved(entry.path, int(info["step"]), info.get("value")))
    return out


def best_and_kept(fs, run_dir: str, mode: str) -> dict:
    """For the stage manifest: the checkpoints left on storage and the best of them."""
    saved = list_saved(fs, run_dir)
    scored = [s for s in saved if s.value is not None]
    sign = 1 if mode == "min" else -1
    best = min(reversed(sorted(scored, key=lambda s: s.step)), key=lambda s: sign * s.value, default=None)
    return {
        "kept": [{"path": s.path, "step": s.step, "value": s.value} for s in sorted(saved, key=lambda s: s.step)],
        "best": None if best is None else {"path": best.path, "step": best.step, "value": best.value},
    }


def retention_callback(keep_last: int | None, keep_best: bool, mode: str):
    """A Ray Train callback that applies `choose_kept` after each registered checkpoint."""
    from ray.train.v2.api.callback import UserCallback

    class Retention(UserCallback):
        def after_report(self, run_context, metrics, checkpoint):
            if checkpoint is None or keep_last is None:
                return
            fs, run_dir = checkpoint.filesystem, str(Path(checkpoint.path).parent)
            saved = list_saved(fs, run_dir)
            newest = max((s.step for s in saved), default=0)
            kept = choose_kept(saved, keep_last, keep_best, mode)
            for s in saved:
                # Only checkpoints older than the newest complete one: later ones may still be uploading.
                if s.path not in kept and s.step < newest and s.path != checkpoint.path:
                    fs.delete_dir(s.path)

    return Retention()
