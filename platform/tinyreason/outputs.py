"""Where every output lives in storage, and one object per output directory that owns it.

    stages/NN-<stage>-<key>/     a stage: model/, tokenizer/, metrics.jsonl, workers.jsonl, environment.json,
                                 eval-*.json, manifest.json
    base/<preset>-<key>/         a from-scratch base model (tokenizer + initial weights); converted GGUF models
    base-evals/<key>/            the base model's (or a sweep parent's) evaluations
    blends/<name>-<key>/         data blends (data/blend.py writes them)
    ray/NN-<stage>-<key>/        Ray Train's checkpoints of a stage
    runs/<experiment>/<run id>/  one record per invocation: config, report, results, logs
    sweeps/<name>/, ref-logps/<key>/, studies/<name>/

An output directory is complete when its manifest exists, and the manifest is written
last, after every file it vouches for: on an object store a reader never sees a manifest
before the files. Code works on the local mirror (`path`) and moves files with `fetch`
and `publish`; on local storage both are no-ops and `path` is the storage itself.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from tinyreason.storage import Storage

MANIFEST = "manifest.json"
METRICS = "metrics.jsonl"
WORKERS = "workers.jsonl"
ENVIRONMENT = "environment.json"  # the machine rank 0 trained on (machine.environment)


def digest(obj) -> str:
    """The 12-hex-digit content key of any JSON-able object: what names a content-addressed output."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@dataclass(frozen=True)
class ModelRef:
    """A model a stage can start from or an evaluation can score: an exported dir or a hub
    id, with the cache key that everything trained from it inherits."""

    name: str
    path: str
    tokenizer: str
    key: str
    revision: str | None = None  # a hub model's pinned revision (model.revision); None for dirs

    @property
    def tokenizer_revision(self) -> str | None:
        """The pin applies to the tokenizer when it comes from the same hub repo."""
        return self.revision if self.tokenizer == self.path else None


class OutputDir:
    """A directory in storage under key `rel`, complete once its manifest is written."""

    def __init__(self, store: Storage, rel: str):
        self.store, self.rel = store, rel.strip("/")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.rel!r} in {self.store})"

    @property
    def path(self) -> Path:
        """The local copy this process reads and writes (the storage itself when it is local)."""
        return self.store.local_root / self.rel

    @property
    def name(self) -> str:
        return Path(self.rel).name

    def file(self, name: str) -> Path:
        return self.path / name

    def shown(self) -> str:
        """How messages and reports name this directory: its key in storage, never a machine's path."""
        return self.rel

    # ------------------------------------------------------------------ completeness

    def complete(self) -> bool:
        return self.store.exists(f"{self.rel}/{MANIFEST}")

    def manifest(self) -> dict:
        self.fetch(MANIFEST)
        return json.loads(self.file(MANIFEST).read_text(encoding="utf-8"))

    def commit(self, manifest: dict) -> None:
        """Write the manifest, and with it declare the directory complete: call it last."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.file(MANIFEST).write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
        self.publish(MANIFEST)

    # ------------------------------------------------------------------ moving files

    def fetch(self, *names: str) -> None:
        """Bring these files (or subdirs) of the directory into the local copy, where they exist."""
        if not self.store.is_remote:
            return
        for name in names:
            if self.store.exists(f"{self.rel}/{name}"):
                self.store.local_copy(f"{self.rel}/{name}")

    def fetch_all(self) -> Path:
        return self.store.local_copy(self.rel) if self.store.is_remote else self.path

    def publish(self, *names: str, marker: str | None = None) -> None:
        """Copy these local files or subdirs to storage (every one of them, with no names)."""
        if not self.store.is_remote:
            return
        if not names:
            self.store.publish(self.path, marker=marker)
        for name in names:
            if self.file(name).exists():
                self.store.publish(self.file(name))

    def write_text(self, name: str, text: str) -> None:
        """A whole file, written locally and to storage."""
        self.file(name).parent.mkdir(parents=True, exist_ok=True)
        self.file(name).write_text(text, encoding="utf-8")
        self.publish(name)

    def read_json(self, name: str) -> dict | None:
        """A JSON file of this directory, fetched when needed; None when absent."""
        if self.store.is_remote:
            self.fetch(name)
        path = self.file(name)
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None

    def write_json(self, name: str, obj) -> None:
        self.write_text(name, json.dumps(obj, indent=2, default=str))


class StageOutput(OutputDir):
    """One stage's directory: the exported model, its tokenizer, training logs, evaluations.

    Both sides of Ray Train use it: the driver decides, fetches and commits; rank 0 of the
    workers appends to the logs and publishes the export when training ends.
    """

    @property
    def model_dir(self) -> Path:
        return self.path / "model"

    @property
    def tokenizer_dir(self) -> Path:
        return self.path / "tokenizer"

    @property
    def trainer_dir(self) -> Path:
        """The trainer's own scratch space (checkpoints before Ray Train uploads them)."""
        return self.path / "trainer"

    @property
    def ray_run(self) -> str:
        """Where Ray Train keeps this stage's checkpoints: RunConfig(storage_path=..., name=self.name)."""
        return self.store.ray_storage_path(f"ray/{self.name}")

    @property
    def ray_run_fs_path(self) -> str:
        return self.store.fs_path(f"ray/{self.name}")

    def metrics(self) -> list[dict]:
        self.fetch(METRICS)
        return read_jsonl(self.file(METRICS))

    def workers(self) -> list[dict]:
        self.fetch(WORKERS)
        return read_jsonl(self.file(WORKERS))

    def append(self, record: dict, to: str = METRICS) -> None:
        """One JSON line appended to a log of this stage, in this process's copy."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.file(to), "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def start_attempt(self, resumed: bool) -> None:
        """A fresh attempt starts fresh logs; a resumed one appends to the interrupted one's."""
        self.path.mkdir(parents=True, exist_ok=True)
        if not resumed:
            for name in (METRICS, WORKERS):
                self.file(name).unlink(missing_ok=True)

    def model_ref(self, stage_name: str, key: str) -> ModelRef:
        return ModelRef(stage_name, str(self.model_dir), str(self.model_dir), key)

    def publish_training(self) -> None:
        """The worker's last act: the export and the logs go to storage (a no-op on local storage)."""
        self.publish("model", METRICS, WORKERS)


class RunRecord(OutputDir):
    """One invocation of an experiment: `runs/<experiment>/<run id>/`. Runs never overwrite
    each other; `runs/<experiment>/LATEST` names the newest (and on local storage the symlink
    `latest` points at it), and `stages.json` beside it keeps what each stage was at its last
    completion (why a stage trained again is read from it)."""

    STAGES = "stages.json"
    LATEST = "LATEST"
    LATEST_LINK = "latest"

    def __init__(self, store: Storage, experiment: str, run_id: str | None = None):
        self.experiment = experiment
        self.run_id = run_id or new_run_id()
        super().__init__(store, f"runs/{experiment}/{self.run_id}")
        self.home = OutputDir(store, f"runs/{experiment}")

    @property
    def logs_dir(self) -> Path:
        return self.path / "logs"

    def start(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.home.write_text(self.LATEST, self.run_id + "\n")
        if not self.store.is_remote:  # object stores have no links; LATEST says the same everywhere
            link = self.home.file(self.LATEST_LINK)
            tmp = link.with_name(f".{self.LATEST_LINK}-{self.run_id}")
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(self.run_id, target_is_directory=True)  # relative: the tree can move
            tmp.replace(link)  # atomic: a reader sees the old run or the new one

    def stages_record(self) -> dict:
        return self.home.read_json(self.STAGES) or {}

    def save_stages_record(self, record: dict) -> None:
        self.home.write_json(self.STAGES, record)


def new_run_id() -> str:
    """Time-ordered to the millisecond and unique: sorting run ids sorts runs by start time
    (two runs a second apart, as a test or a script makes them, included)."""
    now = time.time()
    return f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime(now))}.{int(now * 1000) % 1000:03d}-{uuid.uuid4().hex[:4]}"


class Outputs:
    """The storage layout of one storage root: where each kind of output lives."""

    def __init__(self, store: Storage):
        self.store = store

    def stage(self, index: int, name: str, key: str) -> StageOutput:
        return StageOutput(self.store, f"stages/{index:02d}-{name}-{key}")

    def base(self, name: str) -> OutputDir:
        return OutputDir(self.store, f"base/{name}")

    def base_evals(self, key: str) -> OutputDir:
        return OutputDir(self.store, f"base-evals/{key}")

    def run(self, experiment: str, run_id: str | None = None) -> RunRecord:
        return RunRecord(self.store, experiment, run_id)

    def latest_run(self, experiment: str) -> RunRecord | None:
        """The experiment's newest run record (`runs/<experiment>/LATEST`), or None before its first."""
        home = OutputDir(self.store, f"runs/{experiment}")
        home.fetch(RunRecord.LATEST)
        latest = home.file(RunRecord.LATEST)
        run_id = latest.read_text(encoding="utf-8").strip() if latest.exists() else ""
        return RunRecord(self.store, experiment, run_id) if run_id else None

    def sweep(self, name: str) -> OutputDir:
        return OutputDir(self.store, f"sweeps/{name}")

    def study(self, name: str) -> OutputDir:
        return OutputDir(self.store, f"studies/{name}")

    def ref_logps(self, key: str) -> StageOutput:
        return StageOutput(self.store, f"ref-logps/{key}")  # a tokenizer dir and rows, like a stage's

    @property
    def blends_dir(self) -> Path:
        return self.store.local_root / "blends"

    @property
    def ray(self) -> str:
        """Ray Train's and Tune's storage_path for this root."""
        return self.store.ray_storage_path("ray")
