"""Reading offline wandb runs back, for tests: what the platform logged, in the file that
`wandb sync` uploads.

wandb 0.31 writes an offline run only as its `.wandb` transaction log (no summary or history
files until it syncs), and its reader lives in wandb-core (Go), with no Python API. So the
tests read the log themselves: a LevelDB-style log of protobuf `Record`s, parsed with
wandb's own protobuf classes.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

@dataclass
class OfflineRun:
    """What one offline wandb run recorded, read back from its .wandb file."""

    path: Path
    name: str
    project: str
    group: str
    tags: list[str]
    config: dict
    history: list[dict] = field(default_factory=list)
    exit_code: int | None = None  # None: the run never finished (its process was killed)

    def series(self, key: str) -> list:
        return [row[key] for row in self.history if key in row]


# The .wandb file is a LevelDB-style log of protobuf `Record`s, the file `wandb sync`
# uploads: a 7-byte header, then 32 KiB blocks of chunks, each with a 7-byte header
# (crc32 over type byte + data, length, type: full / first / middle / last).
_BLOCK, _CHUNK_HEADER = 32768, 7


def _wandb_records(path: Path):
    data = Path(path).read_bytes()
    ident, magic, _version = struct.unpack("<4sHB", data[:7])
    if ident != b":W&B" or magic != 0xBEE1:
        raise ValueError(f"{path} is not a wandb transaction log")
    pos, pending = 7, b""
    while pos + _CHUNK_HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _CHUNK_HEADER:  # block tail too short for a header: zero padding
            pos += left
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos:pos + _CHUNK_HEADER])
        chunk = data[pos + _CHUNK_HEADER:pos + _CHUNK_HEADER + length]
        if kind == 0 or len(chunk) < length or crc != zlib.crc32(chunk, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF:
            return  # the rest was never written (a run killed mid-write ends here)
        pos += _CHUNK_HEADER + length
        if kind == 1:
            yield chunk
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            yield pending + chunk


def read_offline_run(run_dir: str | Path) -> OfflineRun:
    """The run record (name, project, group, tags), the config and every history row of
    an offline run dir (`<storage>/wandb/wandb/offline-run-*`), without uploading it."""
    run_dir = Path(run_dir)
    files = sorted(run_dir.glob("*.wandb"))
    if not files:
        raise FileNotFoundError(f"no .wandb file in {run_dir}")
    run = OfflineRun(files[0], "", "", "", [], {})

    def key(item) -> str:
        return item.key or "/".join(item.nested_key)

    for raw in _wandb_records(files[0]):
        record = pb.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run.name, run.project, run.group, run.tags = r.display_name, r.project, r.run_group, list(r.tags)
            run.config.update({key(u): json.loads(u.value_json) for u in r.config.update})
        elif kind == "config":
            run.config.update({key(u): json.loads(u.value_json) for u in record.config.update})
        elif kind == "history":
            run.history.append({key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    return run


def offline_runs(storage: str | Path) -> list[OfflineRun]:
    """Every offline run under a storage path, oldest first."""
    return [read_offline_run(d) for d in sorted((Path(storage) / "wandb" / "wandb").glob("offline-run-*"))]
