"""A training worker's first steps: pin the device, read the job, pick the precision, and
say which process trains which rank.

Ray Train has already formed the process group (gloo on CPU, NCCL on GPU) and set RANK /
LOCAL_RANK / WORLD_SIZE, which transformers, accelerate and DeepSpeed all read.
"""

from __future__ import annotations

import os
import socket
import time

import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist

from tinyreason.config.sections import DeepSpeedConfig
from tinyreason.cost import NODE_TYPE_LABEL
from tinyreason.outputs import ENVIRONMENT, WORKERS, StageOutput
from tinyreason.tracking import report_to
from tinyreason.train import compat, lora
from tinyreason.train.job import StageJob


class Timeline:
    """Wall-clock marks from worker start to the first optimizer step: where start-up goes."""

    def __init__(self):
        self.t0 = self.last = time.perf_counter()
        self.phases: dict[str, float] = {}

    def mark(self, phase: str) -> None:
        now = time.perf_counter()
        self.phases[phase] = round(now - self.last, 3)
        self.last = now


def is_rank_zero() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def resolve_precision(ds: DeepSpeedConfig) -> str:
    """bf16 where the GPU supports it (Ampere+), fp32 on CPU.

    On CPU, `auto` stays exact: bf16 only pays on parts with AMX (Sapphire Rapids and
    later; emulated elsewhere, slower than fp32). Measured on an AMX Xeon with the `tiny`
    preset: `precision: bf16` trains 1.26x faster and ends 20 steps 2.6% higher in loss
    (bench/results/trainer_sft_precision.json), a trade to choose, not a default."""
    if ds.precision != "auto":
        return ds.precision
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def begin_worker(config: dict) -> tuple[StageJob, Timeline, str]:
    """The first lines of every stage's loop: pin the device, read the job, pick precision.

    The device comes first, before anything touches CUDA: DeepSpeed and Ray must agree
    on this worker's GPU (see set_local_device).
    """
    timeline = Timeline()
    device = set_local_device()
    job: StageJob = config["job"]
    job.output.path.mkdir(parents=True, exist_ok=True)  # on object storage: this node's mirror
    _record_worker(job.output, device)
    if job.describe is not None and is_rank_zero():
        job.output.write_json(ENVIRONMENT, job.describe())  # the machine that trained it, for the manifest
    if not torch.cuda.is_available() and not job.stage.deepspeed.optimizer:
        compat.skip_deepspeed_shm_comm()
    compat.muon_compiles_on_first_use()  # ~0.8-2.3 s of CPU per worker, per ZeRO stage
    if report_to(job.env or {}):
        compat.wandb_init_skips_unstaged_launch_inputs()  # ~1.3-1.8 s of CPU on rank 0, per stage
    timeline.mark("setup")
    return job, timeline, resolve_precision(job.stage.deepspeed)


def on_trainer(trainer, job: StageJob) -> None:
    """What every kind does once its TRL trainer exists, before train(): a one-rank DeepSpeed
    engine skips its all-reduce over one rank (compat.one_rank_skips_allreduce), and a LoRA stage
    gets its fixes and its parameter count (train/lora.py)."""
    compat.one_rank_skips_allreduce(trainer)
    lora.on_trainer(trainer, job)


def _record_worker(output: StageOutput, device) -> None:
    """One line per worker per attempt: which process on which node trained which rank.
    What an operator reads first when a stage hangs or a node is lost. Rank 0's line opens
    the attempt and lists every rank's node type, which is what cost.py prices."""
    ctx = ray.train.get_context()
    node_type = node_type_of_this_node()
    record = {"rank": ctx.get_world_rank(), "local_rank": ctx.get_local_rank(), "pid": os.getpid(),
              "node_id": ray.get_runtime_context().get_node_id(), "hostname": socket.gethostname(),
              "device": str(device), "node_type": node_type, "world_size": ctx.get_world_size(), "time": time.time()}
    types = [node_type]
    if ctx.get_world_size() > 1:  # every rank calls this once per attempt: a collective is safe here
        types = [None] * ctx.get_world_size()
        dist.all_gather_object(types, node_type)
    if ctx.get_world_rank() == 0:
        record["node_types"] = types
    output.append(record, to=WORKERS)


def node_type_of_this_node() -> str | None:
    """The cluster file's node type this worker's node was launched as (Ray's autoscaler labels
    its nodes), or None on a cluster started by hand."""
    labels = ray.get_runtime_context().get_node_labels() or {}
    return labels.get(NODE_TYPE_LABEL) or os.environ.get("RAY_NODE_TYPE_NAME") or None


def set_local_device():
    """Pin this Ray Train worker to the GPU Ray assigned it, and make LOCAL_RANK name it.

    DeepSpeed's engine calls torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    (deepspeed/runtime/engine.py, `_set_distributed_vars`), while Ray Train and accelerate
    place tensors on `ray.train.torch.get_device()`: the index of this worker's GPU id in its
    CUDA_VISIBLE_DEVICES. The two agree only for one whole GPU per worker with Ray's shared
    CUDA_VISIBLE_DEVICES on a node with < 11 GPUs (ids sort as strings). With 2 GPUs per
    worker, fractional GPUs, per-worker CUDA_VISIBLE_DEVICES
    (RAY_TRAIN_ENABLE_SHARE_CUDA_VISIBLE_DEVICES=0) or 16-GPU nodes they differ, and the
    worker dies with "invalid device ordinal" or trains on another worker's GPU. Returns the
    device; a no-op on CPU.
    """
    if not torch.cuda.is_available():
        return torch.device("cpu")
    device = ray.train.torch.get_device()
    if device.type != "cuda":
        return device
    torch.cuda.set_device(device)
    os.environ["ACCELERATE_TORCH_DEVICE"] = str(device)  # accelerate's PartialState reads this
    if os.environ.get("LOCAL_RANK") != str(device.index):
        os.environ["LOCAL_RANK"] = str(device.index)  # what DeepSpeed's engine turns into its device
    return device
