"""Process-level concerns of the entry points: starting Ray, and failing clearly.

Entry points wrap their work in `fail.on_error()`: a known problem (bad config,
bad data, not enough resources, a diverged stage) ends in one line that names
the problem and the fix and a non-zero exit, never a traceback from deep in a
library. Finished stages are on disk before any of this can happen.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import socket
import threading
import time
from pathlib import Path

import ray
import ray.data
from ray.exceptions import AuthenticationError
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

import tinyreason
from tinyreason import console
from tinyreason.config.base import ConfigError
from tinyreason.data.sources import DataError


class _Fail:
    exit_code = 0

    @contextlib.contextmanager
    def on_error(self):
        try:
            yield
        except (ConfigError, DataError, ValueError, RuntimeError, FloatingPointError, OSError) as e:
            self._report(e)
        except Exception as e:  # Ray wraps worker errors; unwrap to the cause the user can act on
            if type(e).__module__.startswith("ray"):
                self._report(e)
            else:  # a bug: one line on the console, the traceback in the log (stderr goes there)
                if console.is_setup():
                    console.error(f"{type(e).__name__}: {e} (an internal error, not your config; the traceback "
                                  f"is in {console.log_file()}; please report it)")
                raise

    def _report(self, e: BaseException) -> None:
        console.error(root_message(e))
        self.exit_code = 1


fail = _Fail()


def root_message(e: BaseException) -> str:
    """The innermost meaningful message of a (possibly Ray-wrapped) exception."""
    text = str(e)
    # Ray Train's WorkerGroupError lists each rank's traceback; the last line of a snippet is the error.
    for marker in ("FloatingPointError: ", "ValueError: ", "RuntimeError: ", "OSError: ", "DataError: "):
        if marker in text:
            return marker.rstrip(": ") + ": " + text.rsplit(marker, 1)[1].strip().splitlines()[0]
    return f"{type(e).__name__}: {text.strip().splitlines()[-1] if text.strip() else ''}"


def init_ray(config=None) -> None:
    """Join the cluster when there is one (`ray job submit`, RAY_ADDRESS), else start a local Ray.

    Locally the dashboard stays off (on 2 cores it costs ~1 s of start-up and a
    core's worth of polling) and anything Ray does serve binds to 127.0.0.1.
    """
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", WORKER_ENV["TOKENIZERS_PARALLELISM"])
    if os.environ.get("RAY_ADDRESS") or _inside_ray_job():
        _join_cluster(os.environ.get("RAY_ADDRESS", ""))
    else:
        # address="local": never attach to some other `ray start` cluster on this machine by accident.
        # No runtime_env: the local raylet inherits this process's environment, and any runtime_env
        # starts every worker through a second interpreter (setup_worker.py, ~0.4 s of CPU each).
        local_environment()
        ray.init(address="local", include_dashboard=False, dashboard_host="127.0.0.1", log_to_driver=True,
                 _system_config=local_system_config())
    # Ray Data's bars would land in the run's log file as thousands of redrawn lines; the
    # console draws one bar per training stage instead (console.py)
    ray.data.DataContext.get_current().enable_progress_bars = console.verbose()
    _import_in_background("transformers", "AutoTokenizer")


# How often a local Ray Train controller polls its workers, in seconds (Ray's default: 2).
HEALTH_CHECK_INTERVAL_S = "0.1"


def local_environment() -> None:
    """Environment a local Ray must start with: its raylet passes it to every worker it starts.

    Ray Train's controller polls its workers every RAY_TRAIN_HEALTH_CHECK_INTERVAL_S. A fit()
    returns only on the poll after its training function has, and in Ray 2.60 a worker's
    ray.train.report (a checkpoint, Tune's metrics) waits in a one-slot queue that each poll
    empties. At Ray's 2 s a micro stage's fit() returned ~4 s after its workers had exported;
    at 0.2 s, 0.45 s. The micro curriculum's five stages, from scratch on 2 CPUs: 112.5 s at 0.1 s
    against 140.2 s at 2 s, 3 runs each in turn (bench/results/health_check.json). A poll is
    one small actor call per worker, and a local Ray has one machine's workers. A poll that a
    busy worker answers late is not a failure: the controller keeps waiting on it, and marks the
    worker dead only after RAY_TRAIN_WORKER_HEALTH_CHECK_TIMEOUT_S (10 min; Ray's
    worker_group.py). On a cluster,
    Ray's default stays unless the variable is set; an operator who sets it is never overridden.

    Ray Train also starts a PreemptionWatcher actor for every worker group, one more process
    that polls the cluster for draining nodes. A local Ray is the driver's own machine: no
    autoscaler drains it, and a spot reclaim or `ray stop` reaches the workers as SIGTERM, which
    train/notice.py turns into a checkpoint without the watcher. On 2 CPUs its start cost each
    stage ~0.9 s: the micro curriculum's five stages trained in 74.7 s without it against 79.0 s
    with it, 3 runs each in turn (bench/results/preemption_watcher.json). Clusters keep it.

    The workers keep Python's own print (WORKER_ENV, which clusters get too).
    """
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", HEALTH_CHECK_INTERVAL_S)
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    for name, value in WORKER_ENV.items():
        os.environ.setdefault(name, value)


# Environment every Ray worker of a run gets: from the local raylet, or on a cluster through
# the job's runtime_env (cluster_runtime_env). What an operator set wins in both.
WORKER_ENV = {
    "TOKENIZERS_PARALLELISM": "false",  # Ray workers already fork; avoid nested pools
    # Ray Train replaces print in its workers with one that also logs every line, even a line
    # printed into a stream a library captured: dill finds a function's globals by disassembling
    # it into a captured stdout, so every stage's workers wrote Python bytecode into the run's
    # log (datasets fingerprints each shard through dill). Off, a worker's print goes to its
    # stdout, which Ray streams to the driver's log as before; only captured text stays captured.
    "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
}


# Idle worker processes a local Ray keeps, at least (Ray's own limit is one per CPU).
IDLE_WORKERS = 8


def local_system_config() -> dict:
    """Ray settings of a local Ray started here (and by the tests).

    Ray kills idle worker processes beyond one per CPU after a second. Every stage's Ray Train
    run starts about seven processes (controller, helpers, workers), so on a small machine the
    workers that ran the last evaluation's parts and Ray Data's blend tasks are killed while a
    stage trains, and the next evaluation starts new ones that import torch, transformers and
    lm-eval again: ~3 s of CPU each, three parts per evaluation. Keeping up to IDLE_WORKERS idle
    workers lets each evaluation reuse them, imports done (a part's import time went from 3.0-3.6 s
    to 0.0 s after a Ray Train run; README, "Two commands", on the test suite's time). Machines with more CPUs than that
    keep Ray's default. Each task seeds what it samples, so a reused process gives the same numbers."""
    return {"num_workers_soft_limit": IDLE_WORKERS} if (os.cpu_count() or 1) < IDLE_WORKERS else {}


def _import_in_background(module: str, attr: str) -> None:
    """Import what the driver needs next while it waits on Ray (building a blend is mostly
    waiting on Ray Data workers): `transformers` takes ~3 s to import, and the stage's
    tokenizer needs it right after the blend. Python's import lock makes a later import
    of the same module wait for this one, never run it twice.

    Not a daemon thread: a driver that exits while the import is still running (a job
    that fails or finishes right after init_ray) must wait for it. A daemon thread is
    frozen at interpreter finalization holding an import lock, and the next import a
    finalizer makes (Ray's weakref callbacks do) then waits forever: the job hung at
    exit in `_get_module_lock` in 2 of 10 short `ray job submit` runs."""
    def run():
        try:
            getattr(importlib.import_module(module), attr)
        except Exception:  # noqa: BLE001  (the real import, later, reports any problem)
            pass

    threading.Thread(target=run, name=f"import-{module}", daemon=False).start()


def _inside_ray_job() -> bool:
    return bool(os.environ.get("RAY_JOB_ID") or os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR"))


# --------------------------------------------------------------------------- joining a cluster


def _join_cluster(address: str) -> None:
    """ray.init against a running cluster, shipping this package to every worker.

    An unreachable GCS makes ray.init retry forever (measured: still waiting after
    5 min), so the address is checked first and a bad one fails in seconds.
    """
    check_cluster_address(address)
    env, override = cluster_runtime_env(_job_runtime_env(), address)
    previous = os.environ.get("RAY_OVERRIDE_JOB_RUNTIME_ENV")
    if override:  # the job already has py_modules: ours extends that list instead of conflicting with it
        os.environ["RAY_OVERRIDE_JOB_RUNTIME_ENV"] = "1"
    try:
        ray.init(address="auto", log_to_driver=True, runtime_env=env)
    except AuthenticationError as e:
        raise RuntimeError(
            f"the Ray cluster at {address or 'auto'} rejected this client's token ({_first_line(e)}); "
            "set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH to the cluster's token file (docs/cluster.md)"
        ) from e
    finally:
        if override:
            _restore_env("RAY_OVERRIDE_JOB_RUNTIME_ENV", previous)


def check_cluster_address(address: str, timeout_s: float = 10.0) -> None:
    """Fail with one line when RAY_ADDRESS cannot be a reachable Ray cluster."""
    address = address.strip()
    if address in ("", "auto"):
        return  # inside `ray job submit` Ray sets the address itself
    if address.startswith(("http://", "https://")):
        raise RuntimeError(
            f"RAY_ADDRESS={address} is a dashboard / job-submission address; submit with "
            f"`ray job submit --address {address} --working-dir . -- python jobs/...`, "
            "or unset RAY_ADDRESS to run on a local Ray"
        )
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise RuntimeError(f"RAY_ADDRESS={address} is not host:port (e.g. 10.0.0.5:6379); fix it or unset it")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=2):
                return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"cannot reach the Ray cluster at RAY_ADDRESS={address} ({e.strerror or e}); start it "
                    "(`ray start --head` / `ray up cluster.yaml`), fix RAY_ADDRESS, or unset it to run on a local Ray"
                ) from None
            time.sleep(1)


def cluster_runtime_env(job_env: dict | None = None, address: str = "") -> tuple[dict, bool]:
    """The runtime env this driver adds to the job's: this package as a py_module.

    `ray job submit --working-dir .` puts the repository root on the workers' path,
    but the package lives in platform/, so without this every Ray Data and Ray Train
    worker on a node without an install (or with a stale one) fails to unpickle
    `tinyreason...`. The package is uploaded from wherever this driver imported it:
    the submitted working dir inside a job, the checkout otherwise (~1 MB).

    Workers also get the GCS address: Ray Train's PlacementGroupCleaner looks the
    cluster up with address "auto", which fails on a machine running more than one
    Ray (a rehearsal, a shared dev box) and kills its monitor thread. And they get
    WORKER_ENV, unless the job's runtime_env or this driver's environment sets its own.
    Returns (runtime_env, whether it must override the job's own py_modules).
    """
    job_env = job_env or {}
    package = str(Path(tinyreason.__file__).resolve().parent)
    env: dict = {}
    override = False
    job_modules = list(job_env.get("py_modules") or [])
    if job_modules:
        if not any(str(m).rstrip("/").endswith("tinyreason") for m in job_modules):
            env["py_modules"], override = job_modules + [package], True
    else:
        env["py_modules"] = [package]
    wanted = {name: os.environ.get(name, value) for name, value in WORKER_ENV.items()}  # the driver's own win
    if address and "://" not in address and address != "auto":
        wanted["RAY_ADDRESS"] = address
    env_vars = {k: v for k, v in wanted.items() if k not in (job_env.get("env_vars") or {})}
    if env_vars:
        env["env_vars"] = env_vars
    return env, override


def _job_runtime_env() -> dict:
    """The runtime env `ray job submit` gave this driver (working_dir, py_modules, ...)."""
    raw = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")
    if not raw:
        return {}
    try:
        return dict(json.loads(raw).get("runtime_env") or {})
    except (ValueError, AttributeError):
        return {}


def _restore_env(key: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = value


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


# --------------------------------------------------------------------------- tasks


def free_task(fn, **resources):
    """A Ray remote of `fn` scheduled on the cluster, never inside the caller's placement group.

    A Tune trial runs in a placement group that holds only what its driver function
    needs (no CPU: its TorchTrainer reserves its own). Ray would place child tasks,
    such as the trial's evaluation, into that group by default, where they never fit.
    """
    return ray.remote(**resources)(fn).options(
        scheduling_strategy=PlacementGroupSchedulingStrategy(placement_group=None))
