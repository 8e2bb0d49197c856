"""Ray Train glue on the driver side: one `TorchTrainer` per stage.

The only module in `train/` that touches Ray Train's driver API; the stage kind
modules hold the worker loops and the Ray Data tokenizers.
"""

from __future__ import annotations

import os

import ray
from ray.data import ExecutionOptions
from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig

from tinyreason.config.experiment import StageConfig
from tinyreason.train import checkpoints, notice, registry
from tinyreason.train.job import StageJob
from tinyreason.train.shards import TRAIN_DATASET


# An elastic stage grows back (after a lost node returns) no more often than this: Ray Train
# resizes by restarting the worker group from the latest checkpoint, which costs start-up
# (~1-2 min at 135M) and the steps since that checkpoint, against Ray's default check every 60 s.
RESIZE_CHECK_S = 600.0


def scaling_config(stage: StageConfig) -> ScalingConfig:
    """Ray Train's scaling: a fixed worker count, or with scaling.min_workers Ray Train's
    elastic (min, max) range, which restarts the worker group with fewer workers when a node
    is lost and more when nodes come back (train/elastic.py keeps the training the same)."""
    s = stage.scaling
    resources = {"CPU": s.cpus_per_worker}
    if s.use_gpu:
        resources["GPU"] = s.gpus_per_worker
    fewest, most = s.worker_range
    elastic = {"num_workers": (fewest, most), "elastic_resize_monitor_interval_s": RESIZE_CHECK_S} \
        if fewest < most else {"num_workers": most}
    return ScalingConfig(
        **elastic,
        use_gpu=s.use_gpu,
        resources_per_worker=resources,
        placement_strategy=s.placement_strategy,
    )


def check_resources(stage: StageConfig) -> None:
    """Fail before training when the cluster cannot ever hold the stage's workers;
    Ray would otherwise wait forever for an autoscaler that is not coming."""
    total = ray.cluster_resources()
    s = stage.scaling
    fewest = s.worker_range[0]  # an elastic stage starts on as few as min_workers
    need = {"CPU": fewest * s.cpus_per_worker}
    if s.use_gpu:
        need["GPU"] = fewest * s.gpus_per_worker
    for res, amount in need.items():
        have = total.get(res, 0)
        if amount > have and not _autoscaling():
            raise RuntimeError(
                f"stage {stage.name} asks for {amount:g} {res} ({fewest} workers) but the cluster has "
                f"{have:g}; lower stages.{stage.name}.scaling.num_workers"
                + (" or set use_gpu: false" if res == "GPU" else " or cpus_per_worker")
            )


def _autoscaling() -> bool:
    return os.environ.get("TINYREASON_AUTOSCALING", "") == "1"


def fit_stage(job: StageJob, train_ds, resume_from: str | None = None, callbacks: list | None = None):
    """Run the stage's TorchTrainer to completion; returns Ray Train's Result.

    Every rank reads every row, in order (not Ray Data's streaming split, which hands blocks
    to whichever worker asks first), and takes its share of one global order of batches
    (train/shards.py). Resume relies on this: the trainer skips the batches it has already
    seen, and they must be the same batches on the new attempt, with as many workers or fewer.
    """
    stage = job.stage
    policy = stage.checkpoints
    keepers = [checkpoints.best_keeper(policy.mode)] if policy.keep_best else []
    from tinyreason.train import compat  # DeepSpeed and TRL (~3 s): only when a stage launches

    trainer = compat.torch_trainer()(
        registry.get(stage.kind).train_loop,
        train_loop_config={"job": job, "resume_from": resume_from},
        scaling_config=scaling_config(stage),
        torch_config=TorchConfig(backend="nccl" if stage.scaling.use_gpu else "gloo"),
        datasets={TRAIN_DATASET: train_ds},
        dataset_config=DataConfig(datasets_to_split=[], execution_options=ExecutionOptions(preserve_order=True)),
        run_config=RunConfig(
            name=job.output.name,
            storage_path=job.output.store.ray_storage_path("ray"),
            failure_config=FailureConfig(max_failures=stage.scaling.max_failures),
            # Ray keeps the last N; the keeper copies the best model aside (see checkpoints.py)
            checkpoint_config=CheckpointConfig(num_to_keep=stage.trainer.save_total_limit),
            callbacks=[*keepers, notice_handler(), *(callbacks or [])],
        ),
    )
    return trainer.fit()


def notice_handler():
    """A Ray Train worker callback that installs the SIGTERM notice handler (train/notice.py) on
    each worker's main thread, where Python runs signal handlers; the training function runs
    in another thread and could not install it."""
    from tinyreason.train import compat  # DeepSpeed and TRL (~3 s): only when a stage launches

    class InstallNoticeHandler(compat.train_worker_hooks()):
        def after_init_train_context(self):
            notice.install()

    return InstallNoticeHandler()
