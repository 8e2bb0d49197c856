"""Data sources read into Ray Data: the synthetic world, local files, Hugging Face hub.

Every reader returns a `ray.data.Dataset` of raw rows in whatever shape the source
ships; normalizing to the stage schema happens later in `blend.py`, so adding a
source never touches validation. JSON rows travel as one string column (`_json`)
and are parsed inside the blend's map_batches: Arrow then never has to unify the
nested shapes of real chat dumps, and a garbage line is one rejected row, not a
failed read.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from pathlib import Path

import ray
import ray.data

from tinyreason.config.sections import SourceConfig
from tinyreason.data import phrasings, synthetic, world
from tinyreason.data.tokenize import rows_of

DEFAULT_SYNTHETIC_ROWS = 2000
SYNTHETIC_SCHEMA = {name: schema for name, (_, schema) in synthetic.GENERATORS.items()}  # generator -> row schema
READERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
RAW_JSON = "_json"  # column holding one unparsed JSON row
BAD_JSON = "\x00bad_json"  # key of the stand-in row for a line that is not JSON
JSON_CELLS = ("messages", "conversations", "chosen", "rejected")  # csv/parquet exports store these as JSON text
# Hub streams are cut into 2,000-row Arrow chunks put in the object store one at a
# time: the driver holds ~2k rows (tens of MB of traces), never the whole cap.
HUB_CHUNK_ROWS = 2000
# Files up to 64 MiB are fingerprinted by content (~50 ms); bigger ones by size,
# mtime and their first/last MiB, so a 20 GB dump is not re-read on every run.
FULL_HASH_BYTES = 64 << 20


class DataError(ValueError):
    """Input data that cannot be used, phrased with the fix."""


def expand_files(spec: str | list[str]) -> list[str]:
    patterns = [spec] if isinstance(spec, str) else list(spec)
    paths: list[str] = []
    for pattern in patterns:
        hits = sorted(os.path.abspath(p) for p in glob.glob(os.path.expanduser(pattern), recursive=True))
        hits = [p for p in hits if os.path.isfile(p)]
        if not hits:
            raise DataError(f"no file matches {pattern!r}; check the path (relative paths start at the working dir)")
        paths += hits
    for p in paths:
        if Path(p).suffix.lower() not in READERS:
            raise DataError(f"{p}: unsupported file type; use one of {', '.join(READERS)}")
    return paths


def check_readable(path: str) -> None:
    """Fail on non-UTF-8 text files before Ray does, with the file named."""
    if Path(path).suffix.lower() in (".jsonl", ".json", ".csv"):
        try:
            with open(path, encoding="utf-8") as f:
                while f.read(1 << 20):
                    pass
        except UnicodeDecodeError as e:
            raise DataError(f"{path} is not UTF-8 (byte {e.start} of a 1 MiB chunk); re-encode it, "
                            f"e.g. iconv -f latin1 -t UTF-8 {Path(path).name} > fixed{Path(path).suffix}") from None
        except OSError as e:
            raise DataError(f"{path} cannot be read: {e.strerror}; check permissions") from None


def raw_rows(batch) -> list:
    """A Ray Data batch (Arrow table or dict of columns) as raw rows, `_json` strings parsed."""
    rows = batch.to_pylist() if hasattr(batch, "to_pylist") else rows_of(batch)
    out = []
    for r in rows:
        if RAW_JSON in r:
            try:
                r = json.loads(r[RAW_JSON].lstrip("\ufeff"))  # a BOM on line 1 is not a broken row
            except (TypeError, ValueError):
                r = {BAD_JSON: str(r[RAW_JSON])[:500]}
        out.append(r)
    return out


def decode_json_cells(row: dict) -> dict:
    for c in JSON_CELLS:
        v = row.get(c)
        if isinstance(v, str) and v.lstrip()[:1] in ("[", "{"):
            try:
                row[c] = json.loads(v)
            except ValueError:
                pass  # left as text: validation rejects it as bad_messages
    return row


def read_source(src: SourceConfig):
    """Raw rows of one source, capped at `entries` rows read (before validation)."""
    if src.synthetic:
        make, _ = synthetic.GENERATORS[src.synthetic]
        rows = make(src.entries or DEFAULT_SYNTHETIC_ROWS, src.seed, **({"tasks": src.tasks} if src.tasks else {}))
        return ray.data.from_items(rows)
    if src.files:
        return _read_files(src)
    if src.teacher:
        raise DataError(f"source {src.label} generates with a model, which the experiment resolves first: build its "
                        "blend through a curriculum (jobs/curriculum.py) or jobs/build_blends.py --config")
    return _read_hub(src)


def _read_files(src: SourceConfig):
    paths = expand_files(src.files)
    for p in paths:
        check_readable(p)
    kinds = {READERS[Path(p).suffix.lower()] for p in paths}
    if len(kinds) > 1:
        raise DataError(f"source {src.label} mixes file types {sorted(kinds)}; give one source per type")
    kind = kinds.pop()
    if kind == "json":
        arrays = [p for p in paths if _is_json_array(p)]
        lines = [p for p in paths if p not in arrays]
        parts = []
        if lines:  # JSON Lines are read by Ray tasks, one line per row
            parts.append(ray.data.read_text(lines, drop_empty_lines=True).rename_columns({"text": RAW_JSON}))
        if arrays:  # a JSON array must be parsed whole; that happens here, in the driver
            parts.append(ray.data.from_items([{RAW_JSON: s} for p in arrays for s in _array_items(p, src.entries)]))
        ds = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    else:
        ds = getattr(ray.data, f"read_{kind}")(paths)
    return ds.limit(src.entries) if src.entries else ds


def _is_json_array(path: str) -> bool:
    with open(path, encoding="utf-8") as f:
        head = f.read(4096).lstrip()
    return head.startswith("[")


def _array_items(path: str, cap: int | None) -> list[str]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}; fix the file or export it as "
                        "JSON Lines (one object per line), where a bad line is only one rejected row") from None
    return [json.dumps(item, ensure_ascii=False) for item in data[:cap]]


def _read_hub(src: SourceConfig):
    """Hub datasets stream, so a 50k-row cap on a 3M-row subset downloads 50k rows.

    `hub:` may also be a local dataset dir laid out like a hub repo (README `configs:`
    and parquet files); `datasets.load_dataset` reads both the same way.
    """
    import datasets  # heavy (~1.5 s): only hub sources need it, and every Ray Data worker imports this module

    try:
        ds = datasets.load_dataset(src.hub, src.subset, split=src.split, streaming=src.streaming,
                                   revision=src.revision)
    except Exception as e:  # the hub client raises many types; all mean "cannot get it"
        raise DataError(
            f"cannot load {src.hub} (subset={src.subset}, split={src.split}, revision={src.revision or 'unpinned'}): "
            f"{type(e).__name__}: {e}. "
            "Check the name, subset and split, and your network, or download it and use `files:` instead"
        ) from None
    if not src.streaming:
        if src.entries:
            ds = ds.select(range(min(src.entries, len(ds))))
        return ray.data.from_arrow(ds.with_format("arrow")[:])
    if src.entries:
        ds = ds.take(src.entries)
    refs = [ray.put(t) for t in ds.with_format("arrow").iter(batch_size=HUB_CHUNK_ROWS)]
    if not refs:
        raise DataError(f"{src.hub} (subset={src.subset}, split={src.split}) has no rows; check the split name")
    return ray.data.from_arrow_refs(refs)


def file_digest(path: str) -> str:
    size = os.path.getsize(path)
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        if size <= FULL_HASH_BYTES:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        else:
            h.update(str(os.stat(path).st_mtime_ns).encode())
            h.update(f.read(1 << 20))
            f.seek(size - (1 << 20))
            h.update(f.read())
    return h.hexdigest()[:16]


def is_local(src: SourceConfig) -> bool:
    """Files, or a hub source that is a local dir (a dataset's local copy): named by a path."""
    return bool(src.files) or bool(src.hub and os.path.isdir(src.hub))


def fingerprint(src: SourceConfig) -> dict:
    """What identifies a source's content, for the blend cache key.

    Files (and hub sources that are local dirs) by content; synthetic sources by
    the generator's code, so editing synthetic.py, world.py or phrasings.py rebuilds
    their blends. Remote hub
    sources by name/subset/split (in the config) and their `revision`: only a pinned one
    (a commit sha) freezes their content.
    """
    if src.files:
        return {"files": [(p, file_digest(p)) for p in expand_files(src.files)]}
    if src.synthetic:
        code = b"".join(Path(m.__file__).read_bytes() for m in (synthetic, world, phrasings))
        return {"generator": hashlib.sha256(code).hexdigest()[:16]}
    if is_local(src):  # a hub dataset's local copy
        files = sorted(p for p in glob.glob(os.path.join(src.hub, "**", "*"), recursive=True) if os.path.isfile(p))
        return {"files": [(os.path.relpath(p, src.hub), file_digest(p)) for p in files]}
    return {"revision": src.revision} if src.revision else {}
