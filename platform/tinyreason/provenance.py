"""What a number in a paper must be tied to: the code (git, the submit record, code fingerprints);
the machine, libraries and cluster are described by machine.py.

Nothing here raises for a machine without git: each part records why it is missing
instead, so provenance never costs a run. git runs through `machine.run_command`,
cut off after a few seconds.

`ray job submit` uploads the working dir without `.git`, so the driver on the head
node cannot ask git: the submitting machine writes `git_state` into a record that
travels with the upload (`write_client_record`), and the driver reads it back
(`resolve_git_state` prefers a live git, then the record).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import socket
from pathlib import Path

from tinyreason.imports import dependencies, import_graph, package_modules
from tinyreason.machine import run_command
from tinyreason.tracking import redact

log = logging.getLogger(__name__)

# A diff past 1 MB is a data file or generated code checked in by mistake; the head
# of it still says what changed, and the record must stay small enough to upload.
DIFF_CAP_BYTES = 1_000_000
UNTRACKED_CAP = 1000
# Not in .gitignore on purpose: Ray's working_dir upload skips whatever .gitignore
# names, and this file must travel. git_state leaves the directory out instead.
RECORD_DIR = ".tinyreason"
RECORD_PATH = Path(RECORD_DIR) / "submit.json"


def _git(root: Path, *args: str, stdin: str | None = None) -> tuple[str | None, str | None]:
    out, why = run_command(["git", "-c", "core.quotepath=off", *args], cwd=root, stdin=stdin)
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
    # The diff is written to provenance.json, git.diff and wandb's config: a secret of this
    # environment typed into a tracked file not yet committed (a key pasted into a script)
    # would travel with it. It becomes ***; `git apply` then fails on those lines, and the note says why.
    diff, raw = redact(diff), diff
    if diff != raw:
        notes.append("the value of a secret in the environment (tracking.SECRET_ENV) was replaced with *** in the diff")
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
    out, why = run_command(["git", "-c", "core.quotepath=off", "diff", "--no-color", "--no-ext-diff", base], cwd=top)
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


