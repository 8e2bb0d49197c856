"""Elastic stages: the same training on fewer (or more) workers, resumed from a checkpoint
that another number of workers wrote.

What stays the same, and how:

- **The global batch.** `scaling.num_workers` defines it: num_workers x
  gradient_accumulation_steps micro-batches per optimizer step. On W workers each rank
  accumulates num_workers x gradient_accumulation_steps / W of them (config validation
  makes every W from `min_workers` to `num_workers` divide it), so the step count and the
  learning-rate schedule (whose length is counted in steps) do not change.
- **The data position.** Micro-batches are cut from every row in one seeded order and
  dealt round-robin to the ranks (data/batching.py: `deal`): step s trains global
  micro-batches [s x per_step, (s + 1) x per_step) on any W. The Trainer's resume skips
  global_step x accumulation micro-batches of each rank's share, which is the same global
  position; "same data position" means the same rows in the same steps, not only the same
  count of samples seen.
- **The optimizer state.** A DeepSpeed ZeRO-1/2 checkpoint holds one flat fp32 partition of
  the weights and Adam moments per rank, and DeepSpeed 0.19.8 refuses to load it on
  another number of ranks ("Automatic adjustment of ZeRO's optimizer state partitioning
  with a new world size is not currently supported", engine.py `_load_zero_checkpoint`;
  `zero_optimization.elastic_checkpoint` is stopped by the same check). Its universal
  checkpoint is the way through: `deepspeed.checkpoint.ds_to_universal` (run as its
  command line) turns the partitions into one folder per parameter (fp32, exp_avg,
  exp_avg_sq, step), and an engine configured with `checkpoint.load_universal` slices its
  own partition out of them on any number of ranks. The Hugging Face Trainer's resume
  (`deepspeed_load_checkpoint`) loads it as it is once the folder sits beside the trainer
  state as `global_step<N>_universal` with a `latest_universal` tag file. ZeRO-3 is refused
  at config time: its conversion is not exercised here.
- **The random state.** Rank r restores `rng_state_r.pth` where the checkpoint has one
  (rank 0's becomes `rng_state.pth` on one worker); ranks the checkpoint did not have start
  fresh, which only matters for dropout and NEFTune noise.

Resizing costs the steps since the latest checkpoint: Ray Train restarts the worker group
to resize it (checkpoints.every_minutes bounds that).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch.distributed as dist

if TYPE_CHECKING:
    from tinyreason.config.experiment import StageConfig

UNIVERSAL_TAG_FILE = "latest_universal"  # DeepSpeed reads the tag of a universal checkpoint from this file
DONE_FILE = ".converted"


def micro_batches_per_step(stage: StageConfig) -> int:
    """Micro-batches in one optimizer step, summed over workers: fixed by the config."""
    return stage.scaling.num_workers * stage.trainer.gradient_accumulation_steps


def accumulation(stage: StageConfig, world: int) -> int:
    """Gradient accumulation steps on `world` workers that keep the stage's global batch."""
    per_step = micro_batches_per_step(stage)
    if per_step % world:
        raise ValueError(f"stage {stage.name} runs on {world} workers, which cannot share its {per_step} micro-batches "
                         f"per step (scaling.num_workers x trainer.gradient_accumulation_steps); "
                         f"scaling.min_workers should have prevented this")
    return per_step // world


def deepspeed_tag(ckpt: Path) -> str | None:
    """The DeepSpeed checkpoint tag inside a Hugging Face checkpoint dir (global_step<N>)."""
    latest = ckpt / "latest"
    if latest.exists():
        return latest.read_text().strip()
    tags = sorted(p.name for p in ckpt.glob("global_step*") if p.is_dir() and not p.name.endswith("_universal"))
    return tags[-1] if tags else None


def written_by(ckpt: Path) -> int | None:
    """How many data-parallel ranks wrote a checkpoint's ZeRO optimizer partitions (one file
    each); None when the optimizer state is not partitioned (no DeepSpeed, ZeRO-0), which
    loads on any number of workers."""
    tag = deepspeed_tag(ckpt)
    if tag is None:
        return None
    return len(list((ckpt / tag).glob("*zero_pp_rank_*_mp_rank_*optim_states.pt"))) or None


@dataclass(frozen=True)
class Resume:
    """Where the Trainer resumes from, and whether DeepSpeed must read it as a universal checkpoint."""

    path: str | None
    universal: bool = False
    written_by: int | None = None  # the worker count that wrote it, when it differs from this attempt's


def plan(ckpt: str | None, world: int, rank: int, local_rank: int, scratch: Path) -> Resume:
    """The resume of this attempt: the checkpoint as it is when the same number of workers
    (or any number, for an unpartitioned optimizer) wrote it; otherwise a universal copy of
    it, converted once per node (by local rank 0, while the others wait) into `scratch`."""
    if ckpt is None:
        return Resume(None)
    writers = written_by(Path(ckpt))
    if writers is None or writers == world:
        return Resume(ckpt)
    # named by its DeepSpeed tag (global_step<N>), which every rank sees alike: on object storage
    # each rank downloads the checkpoint to a directory of its own
    dest = scratch / f"{deepspeed_tag(Path(ckpt))}-universal-from-{writers}"
    if local_rank == 0:
        error = None
        try:
            make_universal(Path(ckpt), dest)
        except Exception as e:  # every rank must reach the barrier, or the others hang in it
            error = e
        _barrier()
        if error is not None:
            raise error
    else:
        _barrier()
    if not (dest / DONE_FILE).exists():
        raise RuntimeError(f"the universal copy of {ckpt} for {world} workers is missing at {dest}; "
                           "see local rank 0's log for the conversion error")
    link_rng_states(Path(ckpt), dest, world, rank)
    return Resume(str(dest), universal=True, written_by=writers)


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def make_universal(ckpt: Path, dest: Path) -> Path:
    """`dest`: the Hugging Face checkpoint `ckpt` with its DeepSpeed partitions converted to a
    universal checkpoint (`global_step<N>_universal` + `latest_universal`). Idempotent; built
    under a temporary name and renamed whole, so a reader never sees half of it."""
    if (dest / DONE_FILE).exists():
        return dest
    tag = deepspeed_tag(ckpt)
    if tag is None:
        raise ValueError(f"{ckpt} holds no DeepSpeed checkpoint to convert")
    tmp = dest.with_name(dest.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for entry in ckpt.iterdir():  # the trainer state, scheduler, RNG and model files, linked not copied
        if entry.is_file() and entry.name not in ("latest", "zero_to_fp32.py"):
            _link(entry, tmp / entry.name)
    universal_tag = f"{tag}_universal"
    # DeepSpeed's documented entry point is this command line; it extracts the partitions in
    # worker processes, 4 at most (a 135M model's optimizer state is ~1.6 GB)
    workers = str(max(1, min(4, len(os.sched_getaffinity(0)))))
    cmd = [sys.executable, "-m", "deepspeed.checkpoint.ds_to_universal", "--input_folder", str(ckpt / tag),
           "--output_folder", str(tmp / universal_tag), "--num_extract_workers", workers,
           "--num_merge_workers", workers, "--inject_missing_state"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"converting {ckpt / tag} to a universal checkpoint failed ({done.returncode}):\n"
                           f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    (tmp / UNIVERSAL_TAG_FILE).write_text(universal_tag)
    (tmp / DONE_FILE).write_text(tag)
    try:
        tmp.rename(dest)
    except OSError:  # another node sharing this disk finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def link_rng_states(ckpt: Path, dest: Path, world: int, rank: int) -> None:
    """Rank r of the new group resumes rank r's random state when the checkpoint has it;
    on one worker the Trainer looks for `rng_state.pth`, which gets rank 0's."""
    if world == 1 and not (dest / "rng_state.pth").exists() and (ckpt / "rng_state_0.pth").exists():
        _link(ckpt / "rng_state_0.pth", dest / "rng_state.pth")


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except FileExistsError:
        pass
    except OSError:  # a filesystem without hard links, or across devices
        shutil.copy2(src, dst)
