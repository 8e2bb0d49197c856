"""Data sources read into Ray Data: the synthetic world, local files, Hugging Face hub.

Every reader returns a `ray.data.Dataset` of raw rows in whatever shape the source
ships; normalizing to the stage schema happens later in `blend.py`, so adding a
source never touches validation.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

from tinyreason.config import SourceConfig
from tinyreason.data import synthetic

DEFAULT_SYNTHETIC_ROWS = 2000
SYNTHETIC = {
    "pretrain": synthetic.pretrain_rows,
    "chat": synthetic.chat_rows,
    "reasoning": synthetic.reasoning_rows,
    "preference": synthetic.preference_rows,
}
READERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


class DataError(ValueError):
    """Input data that cannot be used, phrased with the fix."""


def expand_files(spec: str | list[str]) -> list[str]:
    patterns = [spec] if isinstance(spec, str) else list(spec)
    paths: list[str] = []
    for pattern in patterns:
        hits = sorted(os.path.abspath(p) for p in glob.glob(os.path.expanduser(pattern), recursive=True))
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
            raise DataError(f"{path} is not UTF-8 (byte {e.start}); re-encode it, e.g. iconv -t UTF-8") from None
        except OSError as e:
            raise DataError(f"{path} cannot be read: {e.strerror}; check permissions") from None


def read_source(src: SourceConfig):
    import ray.data

    if src.synthetic:
        rows = SYNTHETIC[src.synthetic](src.entries or DEFAULT_SYNTHETIC_ROWS, src.seed)
        return ray.data.from_items(rows)
    if src.files:
        return _read_files(src)
    return _read_hub(src)


def _read_files(src: SourceConfig):
    import ray.data

    paths = expand_files(src.files)
    for p in paths:
        check_readable(p)
    kinds = {READERS[Path(p).suffix.lower()] for p in paths}
    if len(kinds) > 1:
        raise DataError(f"source {src.label} mixes file types {sorted(kinds)}; give one source per type")
    kind = kinds.pop()
    if kind == "json":
        # JSON is read in the driver: Arrow's JSON reader rejects rows whose nested
        # shapes differ (real chat dumps mix them), and we validate per row anyway.
        import json

        rows = []
        for p in paths:
            rows += _json_rows(p, json)
        ds = ray.data.from_items(rows)
    else:
        ds = getattr(ray.data, f"read_{kind}")(paths)
    return ds.limit(src.entries) if src.entries else ds


def _json_rows(path: str, json) -> list[dict]:
    text = Path(path).read_text(encoding="utf-8")
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: invalid JSON at line {e.lineno}; fix the file or export it as JSONL") from None
        return [r if isinstance(r, dict) else {"_bad": r} for r in data]
    rows = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = {"_bad_line": i}  # counted as a rejected row, not a crash
        rows.append(row if isinstance(row, dict) else {"_bad": row})
    return rows


def _read_hub(src: SourceConfig):
    """Hub datasets stream, so a 50k-row cap on a 3M-row subset downloads 50k rows."""
    import datasets
    import ray.data

    try:
        ds = datasets.load_dataset(src.hub, src.subset, split=src.split, streaming=src.streaming)
    except Exception as e:  # the hub client raises many types; all mean "cannot get it"
        raise DataError(
            f"cannot load {src.hub} (subset={src.subset}, split={src.split}): {type(e).__name__}: {e}. "
            "Check the name and your network, or download it and use `files:` instead"
        ) from None
    if src.streaming:
        rows = list(ds.take(src.entries)) if src.entries else list(ds)
        return ray.data.from_items(rows)
    if src.entries:
        ds = ds.select(range(min(src.entries, len(ds))))
    return ray.data.from_huggingface(ds)


def fingerprint(src: SourceConfig) -> dict:
    """What identifies a source's content, for the blend cache key."""
    if src.files:
        return {"files": [(p, os.path.getsize(p), int(os.path.getmtime(p))) for p in expand_files(src.files)]}
    return {}
