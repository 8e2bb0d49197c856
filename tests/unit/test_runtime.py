"""The driver's runtime helpers, in a subprocess where they touch interpreter exit."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_driver_that_exits_at_once_waits_for_the_background_import(tmp_path):
    """init_ray imports transformers on a thread. A driver that exits right after must let
    that import finish: a daemon thread is frozen at finalization holding an import lock, and
    a job driver then hung in `_get_module_lock` (the e2e probe job, 2 runs in 10)."""
    (tmp_path / "slowmod.py").write_text(textwrap.dedent("""
        import pathlib, time
        time.sleep(1.0)  # still importing when the main thread is done
        pathlib.Path(__file__).with_name("imported").write_text("done")
        X = 1
    """))
    script = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(tmp_path)!r}, {str(ROOT / "platform")!r}]
        from tinyreason.runtime import _import_in_background
        _import_in_background("slowmod", "X")
    """)
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "imported").exists(), "the process exited with the import still in flight"


def test_a_local_ray_polls_its_train_workers_often_unless_told_otherwise(monkeypatch):
    """Ray Train's controller notices a finished stage, and empties a worker's queued report,
    only when it polls: at Ray's 2 s a micro stage's fit() returned ~4 s after its workers were
    done (bench/results/health_check.json). What an operator already set is kept."""
    from tinyreason import runtime

    monkeypatch.delenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", raising=False)
    runtime.local_environment()
    assert float(os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"]) == 0.1
    monkeypatch.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "3")
    runtime.local_environment()
    assert os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] == "3"


def test_a_local_ray_starts_no_preemption_watcher_unless_told_otherwise(monkeypatch):
    """The watcher polls for draining nodes, and a local Ray is the driver's own machine: its
    reclaim arrives as SIGTERM (train/notice.py). Ray Train reads the switch in its controller;
    what an operator set is kept."""
    from ray._private import ray_constants
    from ray.train.v2._internal.constants import (DEFAULT_ENABLE_PREEMPTION_WATCHER,
                                                  ENABLE_PREEMPTION_WATCHER_ENV_VAR)

    from tinyreason import runtime

    monkeypatch.delenv(ENABLE_PREEMPTION_WATCHER_ENV_VAR, raising=False)
    assert ray_constants.env_bool(ENABLE_PREEMPTION_WATCHER_ENV_VAR, DEFAULT_ENABLE_PREEMPTION_WATCHER)
    runtime.local_environment()
    assert not ray_constants.env_bool(ENABLE_PREEMPTION_WATCHER_ENV_VAR, DEFAULT_ENABLE_PREEMPTION_WATCHER)
    monkeypatch.setenv(ENABLE_PREEMPTION_WATCHER_ENV_VAR, "1")
    runtime.local_environment()
    assert ray_constants.env_bool(ENABLE_PREEMPTION_WATCHER_ENV_VAR, DEFAULT_ENABLE_PREEMPTION_WATCHER)


def test_ray_train_workers_keep_pythons_print_locally_and_on_clusters(monkeypatch):
    """Ray Train's print patch logs every line a worker prints, even into a stream a library
    captured: dill's disassembly, captured while datasets fingerprints a shard, reached the run's
    log once a stage. A local raylet hands the switch on from this process's environment; a
    cluster's workers get it in the job's runtime_env. An operator's setting wins in both."""
    from ray._private import ray_constants
    from ray.train.v2._internal.constants import DEFAULT_ENABLE_PRINT_PATCH, ENABLE_PRINT_PATCH_ENV_VAR

    from tinyreason import runtime

    def patched() -> bool:  # read as Ray Train's worker reads it (patch_print_function)
        return ray_constants.env_bool(ENABLE_PRINT_PATCH_ENV_VAR, DEFAULT_ENABLE_PRINT_PATCH)

    monkeypatch.delenv(ENABLE_PRINT_PATCH_ENV_VAR, raising=False)
    assert patched()
    env, _ = runtime.cluster_runtime_env({})
    assert env["env_vars"][ENABLE_PRINT_PATCH_ENV_VAR] == "0"
    runtime.local_environment()
    assert not patched()

    monkeypatch.setenv(ENABLE_PRINT_PATCH_ENV_VAR, "1")
    runtime.local_environment()
    assert patched()
    env, _ = runtime.cluster_runtime_env({})
    assert env["env_vars"][ENABLE_PRINT_PATCH_ENV_VAR] == "1"  # the driver's environment
    env, _ = runtime.cluster_runtime_env({"env_vars": {ENABLE_PRINT_PATCH_ENV_VAR: "1"}})
    assert ENABLE_PRINT_PATCH_ENV_VAR not in env["env_vars"]  # the job's own runtime_env stands
