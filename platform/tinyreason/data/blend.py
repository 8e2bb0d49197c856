"""The blend builder: sources -> caps -> columns -> normalize -> validate -> provenance
-> decontaminate -> seeded shuffle -> parquet shards + card.md + manifest.json, on Ray Data.

Bad rows never crash a build: each is tagged with a reason code, counted per
source, and a few per reason are kept in `rejected.jsonl` for inspection. A
source whose every row is rejected is a mapping bug and fails the build, naming it.
A blend whose config, source fingerprints and validation rules are unchanged is
not rebuilt; a build writes to `<dir>.partial` and renames, so a crash never
leaves a half blend that looks finished.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import ray.data
from ray.data.expressions import col

from tinyreason.config.sections import BlendConfig, SourceConfig
from tinyreason.data import schema
from tinyreason.data.card import render_card
from tinyreason.data.sources import (BAD_JSON, DataError, decode_json_cells, fingerprint, is_local, raw_rows,
                                     read_source)
from tinyreason.data.teacher import FILTERED

BLEND_FORMAT = 2  # bump when the output layout changes (validation rules are hashed from schema.py)
COLUMNS = {  # by schema family (data/schema.py)
    "text": ["text"],
    "chat": ["messages", "chat_template_kwargs"],
    "preference": ["prompt", "chosen", "rejected", "chat_template_kwargs"],
    "prompt": ["prompt", "answer", "chat_template_kwargs"],
}
PROVENANCE = ["_source_dataset", "_source_subset", "_source_split"]
SAMPLES_PER_REASON = 3
ORDER_BITS = 60  # the shuffle key is a 60-bit hash: fits int64, ties only between identical rows
# Ray's distributed sort costs ~8 s of fixed overhead on 2 cores even for 3k rows
# (sampling + shuffle tasks); blends under 256 MiB sort in one task in < 1 s per 100 MB.
ONE_TASK_SORT_BYTES = 256 << 20
ROWS_PER_SHARD = 20_000  # ~100 MB parquet files at ~5 KB per chat row


@dataclass
class Blend:
    path: Path
    manifest: dict
    rows: int = field(init=False)
    cached: bool = False
    store: object = None  # a remote tinyreason.storage.Storage holding a copy: Ray Data reads from there

    def __post_init__(self):
        self.rows = self.manifest["rows"]

    @property
    def data_dir(self) -> Path:
        return self.path / "data"

    def dataset(self):
        return self._read("data")

    def heldout_dataset(self):
        """Rows kept back by `heldout_fraction` (validation perplexity), or None."""
        return self._read("heldout") if self.manifest.get("heldout_rows") else None

    def read_local(self, part: str = "data") -> dict[str, list]:
        """All rows of a part as columns, read in this process from the local copy."""
        return pq.read_table(self.path / part).to_pydict()

    def _read(self, part: str):
        """Read tasks run on any node: on a cluster with object storage they read the
        uploaded copy, not the driver's local files."""
        if self.store is not None and self.store.is_remote:
            key = f"{self.store.key_of(self.path)}/{part}"
            return ray.data.read_parquet(self.store.fs_path(key), filesystem=self.store.filesystem)
        return ray.data.read_parquet(str(self.path / part))


def _arrow_schema(row_schema: str):
    msgs = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    payload = [(c, pa.string() if c in ("text", "answer", "chat_template_kwargs") else msgs)
               for c in COLUMNS[schema.family(row_schema)]]
    meta = [("_reject", pa.string()), ("_raw", pa.string()), ("_columns", pa.string()), ("_source_id", pa.int32()),
            ("_h", pa.string()), ("_order", pa.int64())]
    return pa.schema(payload + [(c, pa.string()) for c in PROVENANCE] + meta)


def blend_key(blend: BlendConfig, row_schema: str, seed: int, extra: dict | None = None) -> str:
    rules = hashlib.sha256(Path(schema.__file__).read_bytes()).hexdigest()[:16]  # edits to validation rebuild
    spec = {"format": BLEND_FORMAT, "rules": rules, "schema": row_schema, "seed": seed,
            # a source's revision enters through its fingerprint, so unpinned blends keep their keys
            "blend": blend.model_dump(mode="json", exclude={"file": True, "sources": {"__all__": {"revision"}}}),
            "sources": [fingerprint(s) for s in blend.sources], "extra": extra or {}}
    # local sources shuffle by their place in the blend, not their path (order_name): blends
    # with one carry it, so a cache built when the path ordered them rebuilds; others keep keys
    order = {str(i): name for i, s in enumerate(blend.sources) if (name := order_name(s, i))}
    if order:
        spec["order"] = order
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- pure row transforms


def row_hash(row: dict, row_schema: str) -> str:
    """128-bit hash of a blend row's payload and provenance, as written to parquet."""
    payload = {c: row[c] for c in COLUMNS[schema.family(row_schema)] + PROVENANCE}
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def content_hash(row_hashes) -> str:
    """Order-free hash of a multiset of rows (sum of 128-bit row hashes): computable
    per batch in parallel; the row order is fixed separately by the seed."""
    hashes = list(row_hashes)
    return _combine(len(hashes), sum(int(h, 16) for h in hashes) % (1 << 128))


def _combine(n: int, total: int) -> str:
    return hashlib.sha256(f"{n}:{total:032x}".encode()).hexdigest()[:16]


def order_name(src: SourceConfig, index: int) -> str | None:
    """What names a local source (files, or a hub dataset's local copy) in its rows' shuffle
    key: its place in the blend, where its provenance names it by path. A path is where the data
    sits, not what it is: with it in the key, the same files in another directory (a colleague's
    checkout, a test's temporary dir) trained in another order, and so to other numbers. None for
    other sources: their row hash, label included, orders them as it always has."""
    return f"local#{index}" if is_local(src) else None


def shuffle_key(h: str, seed: int) -> int:
    return int(hashlib.sha256(f"{seed}:{h}".encode()).hexdigest()[:ORDER_BITS // 4], 16)


def clean_row(raw, src: SourceConfig, row_schema: str, max_chars: int,
              think: str = "reject") -> tuple[dict | None, str | None]:
    """(canonical row, None) or (None, reason code)."""
    if isinstance(raw, dict) and BAD_JSON in raw:
        return None, "bad_json"
    if not isinstance(raw, dict):
        return None, "not_a_dict"
    if raw.get(FILTERED):  # a teacher's sample its source's filters dropped (data/teacher.py)
        return None, raw[FILTERED]
    row = {src.rename_columns.get(k, k): v for k, v in raw.items() if k not in src.drop_columns}
    try:
        row = schema.normalize_row(decode_json_cells(row), row_schema)
        reason = schema.validate_row(row, row_schema, max_chars=max_chars, think=think)
    except schema.RowError as e:
        return None, e.reason
    return (row, None) if reason is None else (None, reason)


def clean_batch(batch, src: SourceConfig, index: int, row_schema: str, max_chars: int, seed: int = 0,
                think: str = "reject"):
    """Pure: raw rows -> an Arrow table of canonical columns + provenance + `_reject`
    ('' when kept), `_raw` (rejected rows only), `_h` (row hash), `_order` (shuffle key).

    The explicit schema makes every batch of every source the same Arrow type, so a
    batch of rejected rows (null payload) unions with kept ones.
    """
    cols = COLUMNS[schema.family(row_schema)]
    prov = {"_source_dataset": src.hub or src.label, "_source_subset": src.subset or "", "_source_split": src.split}
    ordered_as = order_name(src, index)
    raws = raw_rows(batch)
    seen = sorted({k for r in raws if isinstance(r, dict) for k in r if k != BAD_JSON})
    out = []
    for i, raw in enumerate(raws):
        row, reason = clean_row(raw, src, row_schema, max_chars, think)
        rec = {**prov, "_source_id": index, "_columns": json.dumps(seen) if i == 0 else "", "_h": "", "_order": 0}
        if row is not None:
            payload = {c: row.get(c) for c in cols}
            if "chat_template_kwargs" in payload:
                payload["chat_template_kwargs"] = json.dumps(payload["chat_template_kwargs"] or {}, sort_keys=True)
            try:
                rec["_h"] = row_hash({**payload, **prov}, row_schema)
                named = rec["_h"] if ordered_as is None else row_hash(
                    {**payload, **prov, "_source_dataset": ordered_as}, row_schema)
                rec.update(payload, _order=shuffle_key(named, seed))
            except UnicodeEncodeError:
                reason = "bad_unicode"
        rec["_reject"] = reason or ""
        rec["_raw"] = json.dumps(raw, default=str)[:2000] if reason else ""
        out.append(rec)
    return pa.Table.from_pylist(out, schema=_arrow_schema(row_schema))


# --------------------------------------------------------------------------- per-batch statistics


def read_stats_batch(batch):
    """Per (source, reason): row count, a few raw samples, and the raw column names seen."""
    d = batch.to_pydict()
    counts, samples, columns = collections.Counter(), collections.defaultdict(list), collections.defaultdict(set)
    for sid, reason, raw, cols in zip(d["_source_id"], d["_reject"], d["_raw"], d["_columns"]):
        counts[(sid, reason)] += 1
        if reason and len(samples[(sid, reason)]) < SAMPLES_PER_REASON:
            samples[(sid, reason)].append(raw)
        if cols:
            columns[sid].update(json.loads(cols))
    return pa.Table.from_pylist([
        {"sid": sid, "reason": reason, "count": n, "samples": json.dumps(samples[(sid, reason)]),
         "columns": json.dumps(sorted(columns[sid]))} for (sid, reason), n in counts.items()
    ], schema=pa.schema([("sid", pa.int32()), ("reason", pa.string()), ("count", pa.int64()),
                         ("samples", pa.string()), ("columns", pa.string())]))


def kept_stats_batch(batch):
    """Per source: kept rows and the sum of their 128-bit hashes (as hex: > int64)."""
    d = batch.to_pydict()
    acc: dict = collections.defaultdict(lambda: [0, 0])
    for sid, h in zip(d["_source_id"], d["_h"]):
        acc[sid][0] += 1
        acc[sid][1] = (acc[sid][1] + int(h, 16)) % (1 << 128)
    return pa.Table.from_pylist([{"sid": s, "count": c, "hsum": f"{t:032x}"} for s, (c, t) in acc.items()],
                                schema=pa.schema([("sid", pa.int32()), ("count", pa.int64()), ("hsum", pa.string())]))


def merge_read_stats(rows: list[dict], n_sources: int) -> list[dict]:
    out = [{"read": 0, "rejected": collections.Counter(), "samples": collections.defaultdict(list),
            "columns": set()} for _ in range(n_sources)]
    for r in rows:
        s = out[r["sid"]]
        s["read"] += r["count"]
        s["columns"].update(json.loads(r["columns"]))
        if r["reason"]:
            s["rejected"][r["reason"]] += r["count"]
            room = SAMPLES_PER_REASON - len(s["samples"][r["reason"]])
            s["samples"][r["reason"]] += json.loads(r["samples"])[:max(room, 0)]
    return out


# --------------------------------------------------------------------------- the build


@contextlib.contextmanager
def _ordered():
    """Deterministic caps: with preserve_order a `limit` takes the first rows, not the
    first blocks to finish, so a capped blend is the same on 2 cores or 200."""
    opts = ray.data.DataContext.get_current().execution_options
    before, opts.preserve_order = opts.preserve_order, True
    try:
        yield
    finally:
        opts.preserve_order = before


def build_blend(blend: BlendConfig, row_schema: str, out_dir: str | Path, seed: int = 0, decontaminate=None,
                think: str = "reject", reader=None) -> Blend:
    """Build (or reuse) a blend of `row_schema` rows under out_dir/<name>-<key>/. `think` is a chat
    schema's policy for assistant turns with <think> blocks (data.think_rows).

    `decontaminate(ds) -> (ds, Counter{source index: removed})`, with a `.key` that
    enters the cache key (see tinyreason.data.decontam.Decontaminator).
    `reader` reads the sources config alone cannot (teacher generation, tinyreason/teachers.py):
    `serves(src)`, `read(src, index) -> Dataset`, a `key` that enters the cache key (the
    teachers' identities), and `describe() -> dict`, merged into the manifest.
    """
    extra = {"decon": getattr(decontaminate, "key", None), **({"think": think} if row_schema == "chat" else {}),
             **({"reader": reader.key} if reader is not None else {})}
    key = blend_key(blend, row_schema, seed, extra=extra)
    name = blend.name or f"{row_schema}-blend"
    path = Path(out_dir) / f"{name}-{key}"
    if (path / "manifest.json").exists():
        return Blend(path, json.loads((path / "manifest.json").read_text()), cached=True)
    started, tmp = time.time(), path.with_name(path.name + ".partial")  # renamed to path when complete
    with _ordered():
        # Materialized once: hub streams and big files are read a single time for
        # the counts, the reject samples and the kept rows.
        ds = _read_all(blend, row_schema, seed, think, reader).materialize()
        stats = merge_read_stats(ds.select_columns(["_source_id", "_reject", "_raw", "_columns"])
                                 .map_batches(read_stats_batch, batch_format="pyarrow").take_all(), len(blend.sources))
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        _write_rejected(tmp / "rejected.jsonl", blend, stats)
        _check_sources(blend, name, row_schema, stats, tmp / "rejected.jsonl")
        kept = ds.filter(expr=col("_reject") == "")
        decon: collections.Counter = collections.Counter()
        if decontaminate is not None:
            kept, decon = decontaminate(kept)
        kept = kept.materialize()
        per_source, chash = _kept_stats(kept)
        if not per_source:
            raise DataError(f"blend {name} ({row_schema} rows) is empty after decontamination (removed {sum(decon.values())} "
                            "rows): it holds the evaluation set itself; check the sources and the eval set")
        heldout_rows = _write_rows(kept, row_schema, tmp, blend.heldout_fraction)
    manifest = _manifest(blend, name, row_schema, key, stats, per_source, decon, decontaminate, chash, heldout_rows)
    if reader is not None:
        manifest.update(reader.describe())
    if row_schema == "chat":
        manifest["think_rows"] = think
    manifest["build_seconds"] = round(time.time() - started, 1)
    _finish(tmp, path, manifest)
    return Blend(path, manifest)


def _read_all(blend: BlendConfig, row_schema: str, seed: int, think: str, reader=None):
    datasets = []
    for i, src in enumerate(blend.sources):
        kwargs = dict(src=src, index=i, row_schema=row_schema, max_chars=blend.max_chars, seed=seed, think=think)
        raw = reader.read(src, i) if reader is not None and reader.serves(src) else read_source(src)
        datasets.append(raw.map_batches(clean_batch, fn_kwargs=kwargs, batch_size=256, batch_format="pyarrow"))
    return datasets[0].union(*datasets[1:]) if len(datasets) > 1 else datasets[0]


def _kept_stats(kept) -> tuple[collections.Counter, str]:
    rows = kept.select_columns(["_source_id", "_h"]).map_batches(kept_stats_batch, batch_format="pyarrow").take_all()
    counts, total = collections.Counter(), 0
    for r in rows:
        counts[r["sid"]] += r["count"]
        total = (total + int(r["hsum"], 16)) % (1 << 128)
    return counts, _combine(sum(counts.values()), total)


def _write_rows(kept, row_schema: str, tmp: Path, heldout_fraction: float) -> int:
    """Seeded shuffle = sort by a hash of (seed, row): the same order for the same rows
    on any cluster size. The first `heldout_fraction` of that order is held out."""
    cols = COLUMNS[schema.family(row_schema)] + PROVENANCE
    if kept.size_bytes() <= ONE_TASK_SORT_BYTES:
        ds = kept.repartition(1).map_batches(lambda t: t.sort_by("_order"), batch_format="pyarrow", batch_size=None)
    else:
        ds = kept.sort("_order")
    cut = int(heldout_fraction * (1 << ORDER_BITS))
    heldout_rows = 0
    if cut:
        ds = ds.materialize()
        held = ds.filter(expr=col("_order") < cut).select_columns(cols).materialize()
        heldout_rows = held.count()
        if heldout_rows:
            held.write_parquet(str(tmp / "heldout"), max_rows_per_file=ROWS_PER_SHARD)
        ds = ds.filter(expr=col("_order") >= cut)
    ds.select_columns(cols).write_parquet(str(tmp / "data"), max_rows_per_file=ROWS_PER_SHARD)
    return heldout_rows


def _check_sources(blend: BlendConfig, name: str, row_schema: str, stats: list[dict], rejected: Path) -> None:
    for i, (src, s) in enumerate(zip(blend.sources, stats)):
        where = f"blend {name} ({row_schema} rows), source {i} ({src.label})"
        if s["read"] == 0:
            raise DataError(f"{where} has no rows; check its files, subset and split")
        if sum(s["rejected"].values()) == s["read"]:
            top = s["rejected"].most_common(3)
            fix = ("map its columns to the stage schema with rename_columns (e.g. {conversation: messages})"
                   if top[0][0].startswith("missing_") else
                   "loosen teacher.filters, raise num_samples or temperature, or use a stronger teacher"
                   if top[0][0].startswith("teacher_") else "check its column mapping and that it suits this stage")
            raise DataError(f"{where}: all {s['read']} rows were rejected ({', '.join(f'{r}: {n}' for r, n in top)}); "
                            f"{fix}. Rejected samples: {rejected}")
        unknown = [c for c in [*src.drop_columns, *src.rename_columns] if c not in s["columns"]]
        if unknown:
            raise DataError(f"{where}: drop_columns/rename_columns name {unknown}, which no row has; "
                            f"its columns are {sorted(s['columns'])}; fix the names")


def _write_rejected(path: Path, blend: BlendConfig, stats: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for src, s in zip(blend.sources, stats):
            for reason, raws in sorted(s["samples"].items()):
                for raw in raws:
                    f.write(json.dumps({"source": src.label, "reason": reason, "row": raw}, ensure_ascii=False) + "\n")


def _manifest(blend, name, row_schema, key, stats, per_source, decon, decontaminate, chash, heldout_rows) -> dict:
    total = sum(per_source.values())
    sources = [{"source": src.hub or src.label, "subset": src.subset or "", "split": src.split,
                **({"revision": src.revision} if src.hub and not Path(src.hub).expanduser().is_dir() else {}),
                "requested": src.entries, "read": s["read"], "kept": per_source.get(i, 0),
                "rejected": dict(sorted(s["rejected"].items())), "decontaminated": decon.get(i, 0),
                "share": per_source.get(i, 0) / total if total else 0.0, "columns": sorted(s["columns"])}
               for i, (src, s) in enumerate(zip(blend.sources, stats))]
    describe = getattr(decontaminate, "describe", None)
    hook = {"eval_set": f"the hook {getattr(decontaminate, '__name__', type(decontaminate).__name__)}"}
    return {
        "name": name, "schema": row_schema, "key": key, "rows": total - heldout_rows, "heldout_rows": heldout_rows,
        "content_hash": chash, "sources": sources,
        "rejected_total": sum(sum(s["rejected"].values()) for s in stats),
        "decontaminated_total": sum(decon.values()),
        "decontamination": describe() if callable(describe) else hook if decontaminate else None,
    }


def _finish(tmp: Path, path: Path, manifest: dict) -> None:
    (tmp / "card.md").write_text(render_card(manifest), encoding="utf-8")
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")  # last: marks it complete
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
