"""Ray Train glue on the driver side: one `TorchTrainer` per stage.

The only module in `train/` that touches Ray Train's driver API; the stage kind
modules hold the worker loops and the Ray Data tokenizers.
"""

from __future__ import annotations

import os

import ray
from ray.data import ExecutionOptions
from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer

from tinyreason.config.experiment import StageConfig
from tinyreason.train import checkpoints, registry
from tinyreason.train.job import StageJob
from tinyreason.train.shards import shard_name


def scaling_config(stage: StageConfig) -> ScalingConfig:
    s = stage.scaling
    resources = {"CPU": s.cpus_per_worker}
    if s.use_gpu:
        resources["GPU"] = s.gpus_per_worker
    return ScalingConfig(
        num_workers=s.num_workers,
        use_gpu=s.use_gpu,
        resources_per_worker=resources,
        placement_strategy=s.placement_strategy,
    )


def check_resources(stage: StageConfig) -> None:
    """Fail before training when the cluster cannot ever hold the stage's workers;
    Ray would otherwise wait forever for an autoscaler that is not coming."""
    total = ray.cluster_resources()
    s = stage.scaling
    need = {"CPU": s.num_workers * s.cpus_per_worker}
    if s.use_gpu:
        need["GPU"] = s.num_workers * s.gpus_per_worker
    for res, amount in need.items():
        have = total.get(res, 0)
        if amount > have and not _autoscaling():
            raise RuntimeError(
                f"stage {stage.name} asks for {amount:g} {res} ({s.num_workers} workers) but the cluster has "
                f"{have:g}; lower stages.{stage.name}.scaling.num_workers"
                + (" or set use_gpu: false" if res == "GPU" else " or cpus_per_worker")
            )


def _autoscaling() -> bool:
    return os.environ.get("TINYREASON_AUTOSCALING", "") == "1"


def fit_stage(job: StageJob, train_ds, resume_from: str | None = None, callbacks: list | None = None):
    """Run the stage's TorchTrainer to completion; returns Ray Train's Result.

    Each rank gets a fixed shard (a deterministic split of the materialized rows, read
    in order) rather than Ray Data's streaming split, which hands blocks to whichever
    worker asks first. Resume relies on this: the trainer skips the batches it has
    already seen, and they must be the same batches on the new attempt.
    """
    stage = job.stage
    n = stage.scaling.num_workers
    if registry.get(stage.kind).shards == "whole" or n == 1:
        shards = [train_ds] * n  # every rank reads every row; the trainer's own sampler deals them out
    else:
        shards = train_ds.split(n, equal=True)
    policy = stage.checkpoints
    keepers = [checkpoints.best_keeper(policy.mode)] if policy.keep_best else []
    trainer = TorchTrainer(
        registry.get(stage.kind).train_loop,
        train_loop_config={"job": job, "resume_from": resume_from},
        scaling_config=scaling_config(stage),
        torch_config=TorchConfig(backend="nccl" if stage.scaling.use_gpu else "gloo"),
        datasets={shard_name(rank): shard for rank, shard in enumerate(shards)},
        dataset_config=DataConfig(datasets_to_split=[], execution_options=ExecutionOptions(preserve_order=True)),
        run_config=RunConfig(
            name=job.output.name,
            storage_path=job.output.store.ray_storage_path("ray"),
            failure_config=FailureConfig(max_failures=stage.scaling.max_failures),
            # Ray keeps the last N; the keeper copies the best model aside (see checkpoints.py)
            checkpoint_config=CheckpointConfig(num_to_keep=stage.trainer.save_total_limit),
            callbacks=[*keepers, *(callbacks or [])],
        ),
    )
    return trainer.fit()
