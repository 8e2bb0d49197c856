"""DeepSpeed inside Ray Train picks the GPU Ray assigned, not GPU number LOCAL_RANK.

DeepSpeed's engine calls torch.cuda.set_device(int(os.environ["LOCAL_RANK"])),
while Ray Train places the worker on `ray.train.torch.get_device()`. Two workers
sharing one GPU (0.5 each) reproduce the mismatch on a single-GPU machine:
CUDA_VISIBLE_DEVICES is "0" for both, and rank 1 has LOCAL_RANK=1, a device that
does not exist. `set_local_device()` makes both agree. Gloo, because NCCL refuses
two ranks on one GPU.
"""

import json
import os
import sys

import pytest


def _ship_this_module():
    """Workers cannot import a test module by name; pickle `_worker` by value."""
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _worker(config: dict) -> None:
    import os

    import deepspeed
    import ray.train
    import torch

    from tinyreason.train.worker import set_local_device

    rank = ray.train.get_context().get_world_rank()
    local_rank_before = os.environ["LOCAL_RANK"]
    device = set_local_device()
    model = torch.nn.Linear(8, 8)
    engine, *_ = deepspeed.initialize(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        config={"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 0}},
    )
    with open(f"{config['out']}/rank{rank}.json", "w") as f:
        json.dump({"local_rank_before": local_rank_before, "local_rank": os.environ["LOCAL_RANK"],
                   "ray_device": str(device), "engine_device": str(engine.device),
                   "param_device": str(next(engine.module.parameters()).device),
                   "current": torch.cuda.current_device()}, f)


def test_deepspeed_engine_uses_the_ray_assigned_gpu(ray_local, tmp_path):
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    _ship_this_module()
    trainer = TorchTrainer(
        _worker,
        train_loop_config={"out": str(tmp_path)},
        scaling_config=ScalingConfig(num_workers=2, use_gpu=True, resources_per_worker={"CPU": 1, "GPU": 0.5}),
        torch_config=TorchConfig(backend="gloo"),
        run_config=RunConfig(name="local-rank", storage_path=str(tmp_path / "ray")),
    )
    trainer.fit()
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert results[1]["local_rank_before"] == "1"  # the pitfall: no cuda:1 is visible to this worker
    for r in results:
        assert r["ray_device"] == r["engine_device"] == r["param_device"] == "cuda:0", r
        assert r["local_rank"] == "0" and r["current"] == 0, r


def test_set_local_device_is_a_no_op_on_cpu(monkeypatch):
    import torch

    from tinyreason.train.worker import set_local_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert set_local_device() == torch.device("cpu")
    assert os.environ["LOCAL_RANK"] == "3"

