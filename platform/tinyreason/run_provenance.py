"""A run's provenance, in its run record: what a reported number must be tied to.

`provenance.json` holds the platform version and command, git (commit, branch, dirty flag,
diff: live git, or the record `jobs/submit.py` made on the submitting machine, since Ray
uploads the working dir without `.git`), the resolved config, the numerics libraries, the
driver's environment and one Ray worker's (pip freeze, Python, torch and its CUDA build,
GPU driver, CPU and GPU models and counts), the Ray cluster shape, and start and end times.
Beside it, for people and tools: `git.diff` (a dirty tree: `git apply` it on the commit),
`requirements-driver.txt` and `requirements-worker.txt` (`pip install -r` them).

It is written when the run starts (a run that dies keeps it, with no end time) and again
when it ends, with the worker's environment, which a Ray task collects meanwhile. Training
workers write their own `environment.json` into each stage dir (train/worker.py), and
`machine_summary` is the part of it the stage's manifest keeps.
"""

from __future__ import annotations

import datetime
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import ray

import tinyreason
from tinyreason.config.loading import dump_config
from tinyreason.outputs import ENVIRONMENT, OutputDir, RunRecord, digest
from tinyreason.machine import environment, ray_cluster_shape
from tinyreason.provenance import read_client_record, resolve_git_state
from tinyreason.runtime import free_task
from tinyreason.tracking import redact
from tinyreason.uris import redact as redact_uri

if TYPE_CHECKING:
    from tinyreason.context import RunContext

log = logging.getLogger(__name__)

PROVENANCE = "provenance.json"
GIT_DIFF = "git.diff"
REQUIREMENTS = "requirements-{who}.txt"
REPO_ROOT = Path(tinyreason.__file__).resolve().parents[2]  # platform/tinyreason/ -> the checkout (or upload)
# The worker's environment comes from a fresh Ray worker that imports torch (2 to 7 s on 2
# cores); a cluster that cannot place a 0-CPU task in 2 minutes has bigger problems, recorded.
WORKER_TIMEOUT_S = 120


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def shown_command(argv: list[str]) -> list[str]:
    """The command line as recorded: a URI's credentials (`--set storage.path=s3://k:s@b`) and
    any secret value from the environment become ***."""
    shown = []
    for arg in argv:
        key, eq, value = arg.partition("=")
        shown.append(redact(key + eq + redact_uri(value) if eq else redact_uri(arg)))
    return shown


def git_brief(git: dict) -> dict:
    """What a stage manifest and a wandb config keep of the git state: enough to check it out."""
    if not git.get("available"):
        return {"available": False, "why": git.get("why")}
    return {"commit": git.get("commit"), "branch": git.get("branch"), "dirty": git.get("dirty"),
            "diff_digest": digest(git.get("diff", "")) if git.get("dirty") else None, "source": git.get("source")}


def machine_summary(env: dict | None) -> dict | None:
    """The lines of an `environment()` record that change numbers: host, Python, torch and its
    CUDA build, GPUs and their driver, the CPU; the package list as a count and a digest."""
    if not env:
        return None
    torch, nvidia, cpu = env.get("torch", {}), env.get("nvidia", {}), env.get("cpu", {})
    return {
        "hostname": env.get("hostname"), "python": env.get("python", {}).get("version"),
        "torch": torch.get("version"), "cuda_build": torch.get("cuda_build"),
        "gpus": torch.get("gpus") or [g["name"] for g in nvidia.get("gpus", [])],
        "nvidia_driver": nvidia.get("driver"), "cpu": cpu.get("model"), "cpu_count": cpu.get("usable"),
        "cpu_id": cpu.get("id"), "cpu_capability": torch.get("cpu_capability"), "cpu_cache": cpu.get("cache"),
        "packages": len(env.get("packages", [])), "packages_digest": digest(env.get("packages", [])),
    }


def worker_environment() -> dict:
    """`machine.environment()` as a Ray worker on the cluster sees it, with its node."""
    return {**environment(), "node_id": ray.get_runtime_context().get_node_id()}


class RunProvenance:
    """Collects a run's provenance at its start and writes it again at its end."""

    def __init__(self, run: RunRecord, record: dict, probe=None):
        self.run, self.record, self.probe = run, record, probe

    @classmethod
    def start(cls, ctx: RunContext, run: RunRecord, repo_root: Path | None = None) -> RunProvenance:
        """Record everything known at the start; `ctx.trained_by.git` carries the git state
        into every stage manifest this run writes."""
        root = Path(repo_root or REPO_ROOT)
        git = resolve_git_state(root, package_dir=Path(tinyreason.__file__).resolve().parent)
        submit = read_client_record(root) if git.get("source") == "client record" else None
        if not git.get("available"):
            log.warning("git state unknown (%s); submit with `python jobs/submit.py -- ...` to record it",
                        git.get("why"))
        elif git.get("dirty"):
            log.info("code: commit %s with uncommitted changes (recorded in %s)", str(git.get("commit"))[:12],
                     f"{run.shown()}/{GIT_DIFF}")
        ctx.trained_by.git = git_brief(git)
        record = {
            "schema": 1, "experiment": run.experiment, "run_id": run.run_id, "started_at": now(), "ended_at": None,
            "status": "running", "platform": {"name": "tinyreason", "version": tinyreason.__version__},
            "command": shown_command(sys.argv),
            "git": git, "submit": {k: v for k, v in (submit or {}).items() if k not in ("git", "package_fingerprint")},
            "config": dump_config(ctx.cfg), "seed": ctx.cfg.seed, "reuse_stale": ctx.cfg.reuse_stale,
            "numerics": ctx.trained_by.versions, "driver": environment(), "worker": None,
            "ray": ray_cluster_shape(ray),
        }
        probe = None
        if ray.is_initialized():
            probe = free_task(worker_environment, num_cpus=0).remote()
        prov = cls(run, record, probe)
        prov.write()
        return prov

    def finish(self, status: str = "finished") -> dict:
        """The worker's environment, the end time and the cluster as it ended, written."""
        if self.probe is not None:
            try:
                self.record["worker"] = ray.get(self.probe, timeout=WORKER_TIMEOUT_S)
            except Exception as e:  # noqa: BLE001  (a lost node or a timeout: recorded, never fatal)
                self.record["worker"] = {"available": False, "why": f"{type(e).__name__}: {e}"[:500]}
            self.probe = None
        self.record.update(ended_at=now(), status=status, ray_at_end=ray_cluster_shape(ray))
        self.write()
        return self.record

    def write(self) -> None:
        write_record(self.run, self.record)


def write_record(out: OutputDir, record: dict) -> None:
    """provenance.json, and the files a person (or `git apply`, `pip install -r`) reads directly."""
    out.write_json(PROVENANCE, record)
    git = record.get("git") or {}
    if git.get("diff"):
        out.write_text(GIT_DIFF, git["diff"])
    for who in ("driver", "worker"):
        packages = (record.get(who) or {}).get("packages")
        if packages:
            out.write_text(REQUIREMENTS.format(who=who), "\n".join(packages) + "\n")


def read_record(out: OutputDir) -> dict | None:
    return out.read_json(PROVENANCE)
