"""The machine a number was measured on: Python, OS, packages, torch and its kernels, GPUs,
CPU, memory and the Ray cluster's shape, for provenance.json and the stages' environment.json.

Nothing here raises for a missing tool: each part records why it is missing instead, so
describing a machine never costs a run. Whatever shells out (nvidia-smi, sysctl, and git for
provenance.py, through `run_command`) is cut off after a few seconds.
"""

from __future__ import annotations

import csv
import importlib.metadata
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

# git status on a large checkout takes about a second; 10 s means something is wrong
# (a network file system, a lock), and provenance must not hold a submission hostage.
COMMAND_TIMEOUT_S = 10
# The libraries whose upgrades change training numbers (lineage keys a stage's reuse on them).
NUMERICS_LIBRARIES = (
    "torch", "transformers", "trl", "deepspeed", "tokenizers", "accelerate", "datasets", "peft",
    "numpy", "flash-attn", "liger-kernel", "bitsandbytes",
)


def run_command(cmd: list[str], cwd: Path | None = None, stdin: str | None = None) -> tuple[bytes | None, str | None]:
    """(stdout, None), or (None, why) when the tool is missing, fails or is too slow."""
    if shutil.which(cmd[0]) is None:
        return None, f"{cmd[0]} is not on PATH"
    # No optional locks: a provenance read must never block, or be blocked by, the user's git.
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    try:
        done = subprocess.run(
            cmd, cwd=cwd, env=env, capture_output=True, timeout=COMMAND_TIMEOUT_S,
            input=stdin.encode() if stdin is not None else None,
        )
    except subprocess.TimeoutExpired:
        return None, f"`{' '.join(cmd)}` took more than {COMMAND_TIMEOUT_S} s"
    except OSError as e:
        return None, f"`{' '.join(cmd)}` could not run: {e}"
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().splitlines()
        return None, f"`{' '.join(cmd)}` failed: {message[0] if message else f'exit {done.returncode}'}"
    return done.stdout, None


# --------------------------------------------------------------------------- libraries and machine


def installed_packages() -> list[str]:
    """`pip freeze` without pip: "name==version", sorted, the first of duplicates (what imports)."""
    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(re.sub(r"[-_.]+", "-", name).lower(), f"{name}=={dist.version}")
    return sorted(found.values(), key=str.lower)


def numerics_versions() -> dict[str, str]:
    """Versions of the installed libraries whose upgrades change training numbers."""
    versions = {}
    for name in NUMERICS_LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def environment() -> dict:
    """Python, OS, packages, torch and its CUDA build, GPUs, CPU, memory, hostname.

    Imports torch (seconds, when not yet imported) and asks it about CUDA: call it from
    the driver, not from a process that will later fork CUDA workers.
    """
    return {
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation(),
                   "executable": sys.executable},
        "os": {"platform": platform.platform(), "system": platform.system(), "release": platform.release(),
               "machine": platform.machine()},
        "hostname": socket.gethostname(),
        "cpu": cpu(),
        "memory": _memory(),
        "packages": installed_packages(),
        "torch": _torch(),
        "nvidia": nvidia_gpus(),
    }


def _torch() -> dict:
    try:
        # Deferred: torch costs 2 to 7 s at import on 2 cores, and only this part needs it.
        import torch
    except ImportError as e:
        return {"available": False, "why": f"torch does not import: {e}"}
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    available = torch.cuda.is_available()
    return {
        "available": True, "version": torch.__version__, "cuda_build": torch.version.cuda,
        "hip_build": getattr(torch.version, "hip", None), "cudnn_build": cudnn, "cuda_available": available,
        "gpu_count": torch.cuda.device_count() if available else 0,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if available else [],
        # the kernels ATen dispatches to on this CPU (DEFAULT, AVX2, AVX512, SVE256...)
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def nvidia_gpus() -> dict:
    """Driver version, GPU names and memory from nvidia-smi, or why there are none."""
    out, why = run_command(["nvidia-smi", "--query-gpu=driver_version,name,memory.total", "--format=csv,noheader"])
    if out is None:
        return {"available": False, "why": why}
    rows = [r for r in csv.reader(out.decode(errors="replace").splitlines(), skipinitialspace=True) if len(r) == 3]
    return {
        "available": True, "driver": rows[0][0] if rows else None, "count": len(rows),
        "gpus": [{"name": name, "memory": memory} for _, name, memory in rows],
    }


# The vector extensions that decide which CPU kernels run (and so the float rounding of a CPU
# run): two machines with the same model name (a VM's is often just "Intel Xeon Processor") and the
# same packages can still train to different numbers when these, or the cache sizes that size
# MKL's and oneDNN's blocks, differ.
CPU_ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_bf16", "amx_int8", "asimd", "sve")


def cpu(cpuinfo: Path = Path("/proc/cpuinfo"), caches: Path = Path("/sys/devices/system/cpu/cpu0/cache")) -> dict:
    """The first processor's name, identity (vendor, family, model, stepping), vector extensions
    and cache sizes, and how many cores this process may use."""
    model, ident, flags = None, {}, set()
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = (x.strip() for x in line.partition(":"))
            if not key:
                break  # the first processor's block is enough
            if key in ("model name", "Hardware", "cpu model") and model is None:
                model = value
            elif key in ("vendor_id", "cpu family", "model", "stepping", "CPU implementer", "CPU part"):
                ident[key.replace(" ", "_")] = value
            elif key in ("flags", "Features"):
                flags = set(value.split())
    if model is None and platform.system() == "Darwin":
        out, _ = run_command(["sysctl", "-n", "machdep.cpu.brand_string"])
        model = out.decode().strip() if out else None
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    # A container's CPU quota (cgroup v2 cpu.max, "200000 100000" = 2 CPUs) is what a
    # benchmark actually gets; cpu_count reports the host's cores.
    quota = (_read_cgroup("cpu.max") or "max").split()
    quota = round(int(quota[0]) / int(quota[1]), 2) if quota[0] != "max" and len(quota) > 1 else None
    return {"model": model or platform.processor() or None, "count": os.cpu_count(), "usable": usable,
            "cgroup_quota": quota, "id": ident or None, "isa": [f for f in CPU_ISA_FLAGS if f in flags] or None,
            "cache": _cpu_caches(caches)}


def cpu_id_text(ident: dict | None) -> str | None:
    """"family 23 model 1" (x86) or "implementer 0x41 part 0xd0c" (Arm): what tells apart two
    CPUs sold under one name. A VM's "AMD EPYC" was a Zen 1 on one day of this project and a
    Zen 4 on another, with half the speed and other float rounding (README, Reproducibility)."""
    ident = ident or {}
    if "cpu_family" in ident:
        return f"family {ident['cpu_family']} model {ident.get('model', '?')}"
    if "CPU_implementer" in ident:
        return f"implementer {ident['CPU_implementer']} part {ident.get('CPU_part', '?')}"
    return None


def last_level_cache(cpu: dict) -> str | None:
    """"L3 8192K": the largest cache level recorded ("L3" sorts after "L1d" and "L2")."""
    llc = max((cpu.get("cache") or {}).items(), default=None)
    return llc and f"{llc[0]} {llc[1]}"


def _cpu_caches(caches: Path) -> dict | None:
    """Sizes of the first CPU's caches by level ("L1d", "L2", "L3"), as sysfs gives them."""
    out = {}
    for index in sorted(caches.glob("index*")):
        try:
            level, kind, size = ((index / f).read_text().strip() for f in ("level", "type", "size"))
        except OSError:
            continue
        out[f"L{level}" + {"Data": "d", "Instruction": "i"}.get(kind, "")] = size
    return out or None


def _memory() -> dict:
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        total = None
    limit = _read_cgroup("memory.max")
    return {"total_bytes": total, "cgroup_limit_bytes": int(limit) if limit and limit.isdigit() else None}


def _read_cgroup(name: str) -> str | None:
    try:
        return Path("/sys/fs/cgroup", name).read_text().strip()
    except OSError:
        return None


# --------------------------------------------------------------------------- Ray cluster


def ray_cluster_shape(ray_module) -> dict:
    """Nodes alive and their CPUs, GPUs, memory and accelerator types, from the public
    `ray.nodes()` and `ray.cluster_resources()` (the module is a parameter so tests can
    pass a stand-in and this module never imports Ray)."""
    try:
        nodes = ray_module.nodes()
        total = ray_module.cluster_resources()
    except Exception as e:  # noqa: BLE001  (Ray not initialised, or the GCS gone: recorded, not raised)
        return {"available": False, "why": f"{type(e).__name__}: {e}"}
    alive = [n for n in nodes if n.get("Alive")]
    shapes = []
    for node in alive:
        res = node.get("Resources", {})
        shapes.append({
            "node_id": node.get("NodeID"), "hostname": node.get("NodeManagerHostname"),
            "address": node.get("NodeManagerAddress"), "cpus": res.get("CPU", 0), "gpus": res.get("GPU", 0),
            "memory_bytes": res.get("memory", 0),
            "accelerators": sorted(k.split(":", 1)[1] for k in res if k.startswith("accelerator_type:")),
        })
    shapes.sort(key=lambda s: (str(s["hostname"]), str(s["node_id"])))
    return {
        "available": True, "nodes_alive": len(alive), "nodes_dead": len(nodes) - len(alive), "nodes": shapes,
        "total": {"cpus": total.get("CPU", 0), "gpus": total.get("GPU", 0), "memory_bytes": total.get("memory", 0)},
    }
