"""What trained a stage, as part of its cache key: the versions of the libraries that change
training numerics, and a fingerprint of the platform code its kind runs.

An upgrade of TRL or a fix to `train/sft.py` changes the key of every stage it touches, so
a re-run trains those stages again and says why (`trl 1.16.0 -> 1.17.0`, `train/sft.py
changed`). `reuse_stale: true` (`--reuse-stale`) keeps such stages instead, found by their
content key (config, parent, blend, seed: what the key was before code entered it), and the
report marks them.

Computed once per run (`TrainedBy`): reading the package's import graph costs ~1 s on 2
cores, so it is read once and each kind's fingerprint is kept; a stage lookup costs a dict
access. A kind registered from outside the package (a plug-in, a test) is fingerprinted by
its own module's source file.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import sys
from pathlib import Path

import tinyreason
from tinyreason.imports import import_graph
from tinyreason.outputs import MANIFEST, StageOutput
from tinyreason.machine import numerics_versions
from tinyreason.provenance import code_fingerprint, diff_fingerprints
from tinyreason.storage import Storage
from tinyreason.train import registry

log = logging.getLogger(__name__)

PACKAGE_DIR = Path(tinyreason.__file__).resolve().parent
SHOWN_CHANGES = 4  # a report line names this many changes, then "and N more"


class TrainedBy:
    """The libraries and the platform code that train stages in this run.

    `versions` and `package_dir` are parameters so that a test can describe another
    installation (an upgraded TRL, an edited stage module) without installing one.
    """

    def __init__(self, package_dir: Path | None = None, versions: dict[str, str] | None = None):
        self.package_dir = Path(package_dir or PACKAGE_DIR)
        self.versions = dict(versions) if versions is not None else numerics_versions()
        self.git: dict | None = None  # the run's commit and dirty flag (run_provenance): recorded, not keyed
        self._graph: dict[str, set[str]] | None = None
        self._code: dict[str, dict[str, str]] = {}

    def __repr__(self) -> str:
        return f"TrainedBy({self.package_dir}, {len(self.versions)} libraries, kinds {sorted(self._code)})"

    def code(self, kind: str) -> dict[str, str]:
        """{path relative to the package: short hash} of every module the kind can execute."""
        if kind not in self._code:
            modules = kind_modules(kind)
            inside = [m for m in modules if m == "tinyreason" or m.startswith("tinyreason.")]
            if self._graph is None:
                self._graph = import_graph(self.package_dir)
            code = code_fingerprint(self.package_dir, inside, graph=self._graph) if inside else {}
            for name in sorted(set(modules) - set(inside)):
                code[f"<{name}>"] = _module_hash(name)
            self._code[kind] = code
        return self._code[kind]

    def of(self, kind: str) -> dict:
        """What a stage of this kind is trained by: its part of the stage key and manifest."""
        return {"versions": dict(self.versions), "code": self.code(kind)}


def kind_modules(kind: str) -> list[str]:
    """The modules that define a kind's behaviour: where its loop, tokenize steps, tokenizer
    preparation, config rules and review live (pretrain trains with sft's loop: both count)."""
    k = registry.get(kind)
    parts = (k.trl_config, k.train_loop, k.tokenize_steps, k.prepare_tokenizer, k.check, k.review)
    fns = [inspect.unwrap(getattr(fn, "func", fn)) for fn in parts if fn is not None]  # partials: their function
    return sorted({m for fn in fns if (m := getattr(fn, "__module__", None))})


def _module_hash(name: str) -> str:
    module = sys.modules.get(name)
    path = getattr(module, "__file__", None)
    if not path or not Path(path).is_file():
        return "unknown"  # defined interactively: no file to hash, so no change can be seen
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


# --------------------------------------------------------------------------- what changed, in words


def changes(old: dict | None, new: dict) -> list[str]:
    """Each difference between two `TrainedBy.of` records as a report phrase:
    "trl 1.16.0 -> 1.17.0", "peft 0.14.0 added", "train/sft.py changed"."""
    if not old:
        return ["it was trained by a tinyreason that did not record its code and libraries"]
    lines = []
    before, after = old.get("versions", {}), new.get("versions", {})
    for lib in sorted(set(before) | set(after)):
        a, b = before.get(lib), after.get(lib)
        if a != b:
            lines.append(f"{lib} {a} -> {b}" if a and b else f"{lib} {b} added" if b else f"{lib} {a} removed")
    return lines + diff_fingerprints(old.get("code", {}), new.get("code", {}))


def summarize(lines: list[str], shown: int = SHOWN_CHANGES) -> str:
    """The first few changes, and how many more: one sentence stays readable."""
    head = ", ".join(lines[:shown])
    return head + (f" and {len(lines) - shown} more" if len(lines) > shown else "")


# --------------------------------------------------------------------------- stale stages


def find_stale(store: Storage, index: int, name: str, content_key: str) -> StageOutput | None:
    """The newest complete stage dir for the same position, name and content key that was
    trained by other code or libraries, or None.

    Matches a manifest whose `provenance.content_key` is `content_key`, and a stage trained
    before code entered the key, whose dir is named by that content key itself.
    """
    prefix = f"{index:02d}-{name}-"
    found: list[tuple[str, StageOutput]] = []
    for entry in store.listdir("stages"):
        if not entry.startswith(prefix):
            continue
        out = StageOutput(store, f"stages/{entry}")
        if not store.exists(f"{out.rel}/{MANIFEST}"):
            continue
        manifest = out.manifest()
        recorded = (manifest.get("provenance") or {}).get("content_key")
        if recorded == content_key or (recorded is None and entry == prefix + content_key):
            found.append((str(manifest.get("completed_at", "")), out))
    if not found:
        return None
    found.sort(key=lambda pair: pair[0])
    return found[-1][1]
