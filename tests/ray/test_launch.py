"""A stage's Ray Train launch (train/launch.py via train/compat.torch_trainer): where the cluster
serves no state API, as on the local Ray that runtime.init_ray and this session start without a
dashboard, Ray Train's placement-group cleaner, which polls that API, is left out; a cluster
that serves it keeps the cleaner. Every stage test in this tier launches through it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from ray import cloudpickle
from ray.train import RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer
from ray.train.v2._internal.callbacks.backend_setup import BackendSetupCallback
from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback
from ray.util.state.exception import ServerUnavailable

from tinyreason.train import compat

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import a test module


def _noop(config):
    pass


def _callbacks(trainer_cls, tmp_path):
    trainer = trainer_cls(_noop, scaling_config=ScalingConfig(num_workers=1),
                          run_config=RunConfig(name="noop", storage_path=str(tmp_path)))
    return {type(c) for c in trainer._create_default_callbacks()}


@pytest.fixture
def fresh_probe():
    compat._state_api_served.cache_clear()
    yield
    compat._state_api_served.cache_clear()


def test_without_a_state_api_the_trainer_has_no_cleaner_and_still_fits(ray_local, tmp_path, fresh_probe):
    trainer_cls = compat.torch_trainer()
    assert trainer_cls is not TorchTrainer and issubclass(trainer_cls, TorchTrainer)
    callbacks = _callbacks(trainer_cls, tmp_path)
    assert PlacementGroupCleanerCallback not in callbacks and BackendSetupCallback in callbacks
    assert PlacementGroupCleanerCallback in _callbacks(TorchTrainer, tmp_path)  # Ray Train's own default
    result = trainer_cls(_noop, scaling_config=ScalingConfig(num_workers=1),
                         run_config=RunConfig(name="fits", storage_path=str(tmp_path))).fit()
    assert result.error is None


def test_a_cluster_that_serves_the_state_api_keeps_the_cleaner(ray_local, monkeypatch, fresh_probe):
    monkeypatch.setattr(compat, "list_nodes", lambda **kw: [])  # the dashboard answered
    assert compat.torch_trainer() is TorchTrainer
    compat._state_api_served.cache_clear()

    def refused(**kw):
        raise ServerUnavailable("Failed to connect to API server")

    monkeypatch.setattr(compat, "list_nodes", refused)
    assert compat.torch_trainer() is not TorchTrainer


def test_the_probe_asks_its_own_cluster_while_another_local_ray_is_up(ray_local):
    """A job's own local Ray beside another (here, this session's): the state API is asked of
    the job's cluster by address; with no address it refuses to guess between the two."""
    root = Path(__file__).resolve().parents[2]
    probe = ("import ray; ray.init(address='local', num_cpus=1, include_dashboard=False, log_to_driver=False); "
             "from tinyreason.train import compat; print(compat.torch_trainer().__name__)")
    job = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(root / "platform")})
    assert job.returncode == 0, job.stderr[-3000:]
    assert job.stdout.strip().splitlines()[-1] == "_TorchTrainerNoCleaner"
