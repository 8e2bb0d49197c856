"""Test tiers by folder: unit (no Ray), ray (a real local Ray, num_cpus=2),
e2e (ray start --head + ray job submit), gpu (skipped without a GPU)."""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "platform"))
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no test touches the network
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_collection_modifyitems(config, items):
    for item in items:
        tier = Path(str(item.fspath)).parent.name
        if tier in ("ray", "e2e", "gpu"):
            item.add_marker(getattr(pytest.mark, tier))
        if tier == "gpu":
            try:
                import torch

                has_gpu = torch.cuda.is_available()
            except ImportError:
                has_gpu = False
            if not has_gpu:
                item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))


# Fake credentials every Ray worker sees, as on a real cluster with wandb and hub tokens set:
# tests check that none of them ever lands in a file the platform writes.
FAKE_SECRETS = {"WANDB_API_KEY": "0f3e9c1d2bfake7f3e9c1d2bfake7f3e9c1d2bfake", "HF_TOKEN": "hf_fakeTokenTinyreason4821"}


@pytest.fixture(scope="session")
def ray_local():
    """One real local Ray for the whole session: starting Ray costs ~4 s on 2 cores."""
    import ray

    if not ray.is_initialized():
        # Workers inherit the environment of the raylet this starts (as with runtime.init_ray);
        # a runtime_env would start each worker through a second interpreter. They carry the
        # fake secrets; this process gets them back out of its environment at once.
        saved = {k: os.environ.get(k) for k in FAKE_SECRETS}
        os.environ.update(FAKE_SECRETS)
        try:
            ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        finally:
            for k, v in saved.items():
                os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def fake_secrets():
    return dict(FAKE_SECRETS)


@pytest.fixture(scope="session")
def micro_storage(tmp_path_factory):
    """One storage path for every test that runs the micro curriculum: stages are
    content-addressed, so a sweep's parents are the curriculum test's stages (~2 min saved)."""
    return tmp_path_factory.mktemp("micro-storage")
