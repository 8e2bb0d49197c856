"""What a number in a paper must be tied to: the code, the libraries, the machine, the cluster.

Nothing here raises for a missing tool or a machine without git: each part records
why it is missing instead, so provenance never costs a run. Whatever shells out
(git, nvidia-smi, sysctl) is cut off after a few seconds.

`ray job submit` uploads the working dir without `.git`, so the driver on the head
node cannot ask git: the submitting machine writes `git_state` into a record that
travels with the upload (`write_client_record`), and the driver reads it back
(`resolve_git_state` prefers a live git, then the record).
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from tinyreason.imports import dependencies, import_graph, package_modules

log = logging.getLogger(__name__)

# git status on a large checkout takes about a second; 10 s means something is wrong
# (a network file system, a lock), and provenance must not hold a submission hostage.
COMMAND_TIMEOUT_S = 10
# A diff past 1 MB is a data file or generated code checked in by mistake; the head
# of it still says what changed, and the record must stay small enough to upload.
DIFF_CAP_BYTES = 1_000_000
UNTRACKED_CAP = 1000
# Not in .gitignore on purpose: Ray's working_dir upload skips whatever .gitignore
# names, and this file must travel. git_state leaves the directory out instead.
RECORD_DIR = ".tinyreason"
RECORD_PATH = Path(RECORD_DIR) / "submit.json"
NUMERICS_LIBRARIES = (
    "torch", "transformers", "trl", "deepspeed", "tokenizers", "accelerate", "datasets", "peft",
    "numpy", "flash-attn", "liger-kernel", "bitsandbytes",
)


def _run(cmd: list[str], cwd: Path | None = None, stdin: str | None = None) -> tuple[bytes | None, str | None]:
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


def _git(root: Path, *args: str, stdin: str | None = None) -> tuple[str | None, str | None]:
    out, why = _run(["git", "-c", "core.quotepath=off", *args], cwd=root, stdin=stdin)
    return (out.decode(errors="replace").strip(), None) if out is not None else (None, why)


# --------------------------------------------------------------------------- git


def git_state(repo_root: Path) -> dict:
    """Commit, branch, dirty flag, uncommitted diff and untracked files of the checkout.

    `dirty` counts untracked files too: a new module not yet added still runs.
    `{"available": False, "why": ...}` outside a checkout or without git.
    """
    root = Path(repo_root)
    if not root.is_dir():
        return {"available": False, "why": f"{root} is not a directory"}
    top, why = _git(root, "rev-parse", "--show-toplevel")
    if top is None:
        return {"available": False, "why": why}
    top_dir = Path(top)
    # A checkout above repo_root that does not track it (a dotfiles repo in $HOME, around
    # Ray's unpacked working dir) describes some other code: say so rather than report it.
    tracked, why = _git(root, "ls-files", "-z", "--", ".")
    if not tracked:
        return {"available": False, "why": why or f"{root} has no files tracked by the checkout at {top}"}
    commit, _ = _git(top_dir, "rev-parse", "--verify", "-q", "HEAD")  # None before the first commit
    branch, _ = _git(top_dir, "symbolic-ref", "--short", "-q", "HEAD")  # None on a detached HEAD
    diff, diff_bytes, notes = _diff(top_dir, commit)
    untracked, more = _untracked(top_dir)
    notes += more
    return {
        "available": True, "root": top, "commit": commit, "branch": branch,
        "dirty": bool(diff) or bool(untracked), "diff": diff, "diff_bytes": diff_bytes,
        "untracked": untracked, "notes": notes,
    }


def _diff(top: Path, commit: str | None) -> tuple[str, int, list[str]]:
    """Tracked changes, staged or not, against HEAD (or the empty tree before a first commit)."""
    base = commit
    if base is None:
        base, why = _git(top, "hash-object", "-t", "tree", "--stdin", stdin="")
        if base is None:
            return "", 0, [f"no diff: {why}"]
    out, why = _run(["git", "-c", "core.quotepath=off", "diff", "--no-color", "--no-ext-diff", base], cwd=top)
    if out is None:
        return "", 0, [f"no diff: {why}"]
    if len(out) <= DIFF_CAP_BYTES:
        return out.decode(errors="replace"), len(out), []
    note = f"diff cut at {DIFF_CAP_BYTES} of {len(out)} bytes"
    return out[:DIFF_CAP_BYTES].decode(errors="ignore"), len(out), [note]


def _untracked(top: Path) -> tuple[list[str], list[str]]:
    """Untracked files git does not ignore, except this module's own record directory."""
    out, why = _git(top, "ls-files", "--others", "--exclude-standard", "-z")
    if out is None:
        return [], [f"no untracked list: {why}"]
    names = sorted(n for n in out.split("\0") if n and RECORD_DIR not in Path(n).parts)
    if len(names) > UNTRACKED_CAP:
        return names[:UNTRACKED_CAP], [f"untracked list cut at {UNTRACKED_CAP} of {len(names)} files"]
    return names, []


# --------------------------------------------------------------------------- client record


def write_client_record(
    repo_root: Path, path: Path | None = None, package_dir: Path | None = None, extra: dict | None = None
) -> Path:
    """Write the submitting machine's git state into the working dir that Ray uploads.

    `path` is relative to repo_root unless absolute (default `.tinyreason/submit.json`).
    With `package_dir`, the record also carries a fingerprint of every package file, so
    the head node can tell whether the upload is the code this record describes.
    """
    root = Path(repo_root)
    target = root / (path or RECORD_PATH)
    record = {
        "schema": 1,
        "written_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "hostname": socket.gethostname(),
        "git": git_state(root),
        **({"package_fingerprint": package_fingerprint(package_dir)} if package_dir else {}),
        **(extra or {}),
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
    os.replace(tmp, target)  # a reader never sees half a record
    log.info("submit record: %s (commit %s)", target, record["git"].get("commit"))
    return target


def read_client_record(repo_root: Path, path: Path | None = None, package_dir: Path | None = None) -> dict | None:
    """The record `write_client_record` left, or None when there is none.

    With `package_dir` and a fingerprint in the record, `changed_since_record` lists the
    package files that differ from the ones it describes: a stale record from an older
    submission (or an upload made without the wrapper) shows up there, not silently.
    """
    target = Path(repo_root) / (path or RECORD_PATH)
    if not target.is_file():
        return None
    try:
        record = json.loads(target.read_text())
    except (OSError, ValueError) as e:
        return {"available": False, "why": f"{target} is unreadable ({e}); re-submit to rewrite it"}
    if package_dir and "package_fingerprint" in record:
        now = package_fingerprint(package_dir)
        record["changed_since_record"] = diff_fingerprints(record["package_fingerprint"], now)
    return record


def resolve_git_state(repo_root: Path, package_dir: Path | None = None) -> dict:
    """Live git when this machine has the checkout, else the submitting machine's record.

    Live git comes first: a record left in a local checkout by an earlier submission
    describes that submission, not this run.
    """
    live = git_state(repo_root)
    if live["available"]:
        return {**live, "source": "git"}
    record = read_client_record(repo_root, package_dir=package_dir)
    if record and record.get("git", {}).get("available"):
        changed = record.get("changed_since_record", [])
        if changed:
            log.warning("the uploaded code is not what the submit record describes: %s", ", ".join(changed))
        return {**record["git"], "source": "client record", "recorded_at": record.get("written_at"),
                "recorded_on": record.get("hostname"), "changed_since_record": changed}
    if record is None:
        why = f"no {RECORD_PATH} (submitted without the wrapper?)"
    else:
        why = record.get("why") or f"the submit record says: {record.get('git', {}).get('why')}"
    return {"available": False, "source": None, "why": f"{live['why']}; {why}"}


# --------------------------------------------------------------------------- code fingerprint


def _hash_file(path: Path) -> str:
    # 16 hex digits (64 bits): collisions among a few hundred files are out of reach.
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _module_name(name: str, package: str) -> str:
    """Accept `tinyreason.train.sft`, `train.sft` or `train/sft.py` for the same module."""
    if name.endswith(".py"):
        name = name[:-3].replace("/", ".").removesuffix(".__init__").removesuffix("__init__")
    return name if name == package or name.startswith(package + ".") else f"{package}.{name}".rstrip(".")


def code_fingerprint(package_dir: Path, modules: list[str], package: str = "tinyreason",
                     graph: dict[str, set[str]] | None = None) -> dict[str, str]:
    """A short content hash per source file of `modules` and every package module they import,
    keyed by path relative to the package dir ("train/sft.py"): a change to a stage kind or a
    function it reaches changes it; a change to a module it never imports does not. `graph`:
    the package's `import_graph`, read once for many fingerprints."""
    package_dir = Path(package_dir)
    graph = graph if graph is not None else import_graph(package_dir, package)
    files = package_modules(package_dir, package)
    wanted: set[str] = set()
    for name in modules:
        module = _module_name(name, package)
        dependencies(graph, module)  # raises, naming close matches, for a typo
        # Importing a.b.c runs a/__init__.py and a/b/__init__.py first, and what they import.
        parts = module.split(".")
        for start in {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & set(graph):
            wanted |= {start} | dependencies(graph, start)
    return {files[m].relative_to(package_dir).as_posix(): _hash_file(files[m]) for m in sorted(wanted)}


def package_fingerprint(package_dir: Path) -> dict[str, str]:
    """Every Python file of the package, hashed as `code_fingerprint` does."""
    package_dir = Path(package_dir)
    return {p.relative_to(package_dir).as_posix(): _hash_file(p) for p in sorted(package_dir.rglob("*.py"))}


def diff_fingerprints(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """Each difference as a report line: "train/sft.py changed", "data/tokenize.py added"."""
    lines = []
    for path in sorted(set(old) | set(new)):
        if path not in old:
            lines.append(f"{path} added")
        elif path not in new:
            lines.append(f"{path} removed")
        elif old[path] != new[path]:
            lines.append(f"{path} changed")
    return lines


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
        "cpu": _cpu(),
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
    out, why = _run(["nvidia-smi", "--query-gpu=driver_version,name,memory.total", "--format=csv,noheader"])
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


def _cpu(cpuinfo: Path = Path("/proc/cpuinfo"), caches: Path = Path("/sys/devices/system/cpu/cpu0/cache")) -> dict:
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
        out, _ = _run(["sysctl", "-n", "machdep.cpu.brand_string"])
        model = out.decode().strip() if out else None
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    # A container's CPU quota (cgroup v2 cpu.max, "200000 100000" = 2 CPUs) is what a
    # benchmark actually gets; cpu_count reports the host's cores.
    quota = (_read_cgroup("cpu.max") or "max").split()
    quota = round(int(quota[0]) / int(quota[1]), 2) if quota[0] != "max" and len(quota) > 1 else None
    return {"model": model or platform.processor() or None, "count": os.cpu_count(), "usable": usable,
            "cgroup_quota": quota, "id": ident or None, "isa": [f for f in CPU_ISA_FLAGS if f in flags] or None,
            "cache": _cpu_caches(caches)}


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
