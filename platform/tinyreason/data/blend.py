"""The blend builder: sources -> caps -> columns -> normalize -> validate -> provenance
-> seeded shuffle -> parquet shards + card.md + manifest.json, on Ray Data.

Bad rows never crash a build: each is tagged with a reason code, counted per
source, and a sample is kept in `rejected.jsonl` for inspection. A blend whose
config and source fingerprints are unchanged is not rebuilt.
"""

from __future__ import annotations

import collections
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from tinyreason.config import SCHEMA_OF_KIND, BlendConfig, SourceConfig
from tinyreason.data import schema
from tinyreason.data.sources import DataError, fingerprint, read_source
from tinyreason.data.tokenize import rows_of

BLEND_FORMAT = 1  # bump when the output layout or validation rules change
COLUMNS = {
    "text": ["text"],
    "chat": ["messages", "chat_template_kwargs"],
    "preference": ["prompt", "chosen", "rejected", "chat_template_kwargs"],
}
PROVENANCE = ["_source_dataset", "_source_subset", "_source_split"]
EMPTY = {"text": "", "messages": [], "prompt": [], "chosen": [], "rejected": [], "chat_template_kwargs": "{}"}


@dataclass
class Blend:
    path: Path
    manifest: dict
    rows: int = field(init=False)
    cached: bool = False

    def __post_init__(self):
        self.rows = self.manifest["rows"]

    @property
    def data_dir(self) -> Path:
        return self.path / "data"

    def dataset(self):
        import ray.data

        return ray.data.read_parquet(str(self.data_dir))


def blend_key(blend: BlendConfig, kind: str, seed: int, extra: dict | None = None) -> str:
    spec = {
        "format": BLEND_FORMAT,
        "kind": kind,
        "seed": seed,
        "blend": blend.model_dump(mode="json"),
        "sources": [fingerprint(s) for s in blend.sources],
        "extra": extra or {},
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def clean_batch(batch: dict, src: SourceConfig, index: int, kind: str, max_chars: int) -> dict:
    """Pure: raw rows -> canonical columns + provenance + `_reject` ('' when kept)."""
    cols = COLUMNS[SCHEMA_OF_KIND[kind]]
    out = collections.defaultdict(list)
    for raw in rows_of(batch):
        row = {k: v for k, v in raw.items() if k not in src.drop_columns}
        row = {src.rename_columns.get(k, k): v for k, v in row.items()}
        try:
            row = schema.normalize_row(row, kind)
            reason = schema.validate_row(row, kind, max_chars=max_chars)
        except schema.RowError as e:
            reason = e.reason
        kept = reason is None
        for c in cols:
            value = row.get(c) if kept else None
            if c == "chat_template_kwargs":
                value = json.dumps(value or {}, sort_keys=True)
            out[c].append(EMPTY[c] if value is None else value)
        out["_reject"].append("" if kept else reason)
        out["_raw"].append("" if kept else json.dumps(raw, default=str)[:2000])
        out["_source_id"].append(index)
        out["_source_dataset"].append(src.hub or src.label)
        out["_source_subset"].append(src.subset or "")
        out["_source_split"].append(src.split)
    return dict(out)


def build_blend(blend: BlendConfig, kind: str, out_dir: str | Path, seed: int = 0, decontaminate=None) -> Blend:
    """Build (or reuse) a blend for a stage kind under out_dir/<name>-<key>/."""
    key = blend_key(blend, kind, seed, extra={"decon": getattr(decontaminate, "key", None)})
    name = blend.name or f"{kind}-blend"
    path = Path(out_dir) / f"{name}-{key}"
    manifest_path = path / "manifest.json"
    if manifest_path.exists():
        return Blend(path, json.loads(manifest_path.read_text()), cached=True)

    from ray.data.expressions import col

    datasets = []
    for i, src in enumerate(blend.sources):
        ds = read_source(src)
        datasets.append(
            ds.map_batches(clean_batch, fn_kwargs=dict(src=src, index=i, kind=kind, max_chars=blend.max_chars),
                           batch_size=256)
        )
    ds = datasets[0].union(*datasets[1:]) if len(datasets) > 1 else datasets[0]
    ds = ds.materialize()
    tags = ds.select_columns(["_source_id", "_reject"]).take_all()
    rejected = ds.filter(expr=col("_reject") != "").select_columns(["_source_id", "_reject", "_raw"]).take(200)
    kept = ds.filter(expr=col("_reject") == "")

    decon_counts: collections.Counter = collections.Counter()
    if decontaminate is not None:
        kept, decon_counts = decontaminate(kept)
    n_kept = kept.count()
    if n_kept == 0:
        raise DataError(
            f"blend {name} for a {kind} stage is empty after filtering "
            f"({len(tags)} rows read, all rejected or removed); see {path}/rejected.jsonl and the card, "
            "then fix the sources or their column mapping"
        )
    cols = COLUMNS[SCHEMA_OF_KIND[kind]] + PROVENANCE
    kept = kept.select_columns(cols + ["_source_id"])
    per_source_kept = collections.Counter(r["_source_id"] for r in kept.select_columns(["_source_id"]).take_all())
    data_dir = path / "data"
    kept.drop_columns(["_source_id"]).random_shuffle(seed=seed).write_parquet(str(data_dir))

    manifest = _manifest(blend, kind, key, tags, per_source_kept, decon_counts, data_dir)
    _write_outputs(path, blend, manifest, rejected)
    return Blend(path, manifest)


def _content_hash(data_dir: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(data_dir.glob("*.parquet")):
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _manifest(blend, kind, key, tags, per_source_kept, decon_counts, data_dir) -> dict:
    read = collections.Counter(t["_source_id"] for t in tags)
    reasons: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    for t in tags:
        if t["_reject"]:
            reasons[t["_source_id"]][t["_reject"]] += 1
    total = sum(per_source_kept.values())
    sources = []
    for i, src in enumerate(blend.sources):
        sources.append({
            "source": src.hub or src.label,
            "subset": src.subset or "",
            "split": src.split,
            "requested": src.entries,
            "read": read.get(i, 0),
            "kept": per_source_kept.get(i, 0),
            "rejected": dict(reasons[i]),
            "decontaminated": decon_counts.get(i, 0),
            "share": per_source_kept.get(i, 0) / total if total else 0.0,
        })
    return {
        "name": blend.name, "kind": kind, "key": key, "rows": total,
        "content_hash": _content_hash(data_dir), "sources": sources,
        "rejected_total": sum(sum(c.values()) for c in reasons.values()),
        "decontaminated_total": sum(decon_counts.values()),
    }


def _write_outputs(path: Path, blend: BlendConfig, manifest: dict, rejected: list[dict]) -> None:
    with open(path / "rejected.jsonl", "w", encoding="utf-8") as f:
        for r in rejected:
            f.write(json.dumps({"source": blend.sources[r["_source_id"]].label, "reason": r["_reject"],
                                "row": r["_raw"]}) + "\n")
    (path / "card.md").write_text(render_card(manifest), encoding="utf-8")
    # The manifest is written last: its presence marks the blend complete.
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")


def composition_table(manifest: dict) -> str:
    lines = [
        "| source | subset | requested | kept | rejected | decontaminated | share |",
        "| --- | --- | ---: | ---: | --- | ---: | ---: |",
    ]
    for s in manifest["sources"]:
        rej = ", ".join(f"{k}: {v}" for k, v in sorted(s["rejected"].items())) or "0"
        lines.append(
            f"| {s['source']} | {s['subset'] or '-'} | {s['requested'] or 'all'} | {s['kept']:,} | {rej} "
            f"| {s['decontaminated']} | {s['share']:.1%} |"
        )
    lines.append(f"| **total** | | | **{manifest['rows']:,}** | {manifest['rejected_total']} "
                 f"| {manifest['decontaminated_total']} | 100% |")
    return "\n".join(lines)


def render_card(manifest: dict) -> str:
    used = sorted({r for s in manifest["sources"] for r in s["rejected"]})
    reasons = "\n".join(f"- `{r}`: {schema.REASONS.get(r, r)}" for r in used) or "- none"
    return (
        f"# Dataset card: {manifest['name'] or manifest['kind'] + ' blend'}\n\n"
        f"Stage kind: `{manifest['kind']}`. Rows: {manifest['rows']:,}. "
        f"Content hash: `{manifest['content_hash']}`. Build key: `{manifest['key']}`.\n\n"
        f"## Composition\n\n{composition_table(manifest)}\n\n"
        f"## Reject reasons\n\n{reasons}\n\n"
        "Every row carries `_source_dataset`, `_source_subset` and `_source_split`. "
        "A sample of rejected rows is in `rejected.jsonl`.\n"
    )
