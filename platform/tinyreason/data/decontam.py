"""N-gram overlap decontamination between a training blend and evaluation sets.

A training row is contaminated when it contains at least `threshold` of one
evaluation item's word n-grams (the Tulu 3 rule: 8-grams, 50% of the test item).
Counting per item, not per row, matters both ways: a 4k-token trace that quotes a
whole GSM8K question has only ~1% of its own n-grams in the eval set, and a
templated synthetic question shares one or two 8-grams ("how many apples does tom
have") with hundreds of different training problems without being one of them.

Items shorter than n words count as one n-gram of their own length, if they have
at least `min_words` words ("Which is smaller, 39 or 52?" is 6 words). Shorter
ones ("Yes") are skipped: they would match everything.

The pure parts (normalize, n-grams, index, match) are plain functions over strings; the
`Decontaminator` runs them in Ray Data map_batches with the index broadcast once
through the object store (a 10k-item eval suite is ~30 MB of n-grams). Which evaluation
sets an experiment has is eval/sets.py's business, not this module's.
"""

from __future__ import annotations

import collections
import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import ray
from ray.data.expressions import col

from tinyreason.data import phrasings, synthetic, world
from tinyreason.data.sources import DataError, check_readable, expand_files

DEFAULT_N = 13  # the GPT-3 / Llama convention for benchmark-length items
SYNTHETIC_N = 8  # synthetic questions are 6-24 words: 13-grams would miss half of them
DEFAULT_THRESHOLD = 0.5  # share of one eval item's n-grams found in a single training row
# Synthetic problems are templates that differ in their numbers: at 0.5, 7% of synthetic
# training rows "match" one of 1,000 held-out problems; at 1.0 (the whole item), none of
# 14,000 training rows do, while a planted held-out question still does.
SYNTHETIC_THRESHOLD = 1.0
DEFAULT_MIN_WORDS = 5
TEXT_FIELDS = ("question", "text", "prompt", "problem", "input")  # first one present is an item's text
_WORD = re.compile(r"\w+|[?!.]")


def words(text: str) -> list[str]:
    """Case-, width- and punctuation-insensitive words: "Tom's 5 apples!" -> tom s 5 apples !

    Sentence ends (? ! .) stay as tokens: "...: dog, fish, duck?" is a different
    question from "...: dog, fish, duck, cat?", though one is a prefix of the other.
    """
    return _WORD.findall(unicodedata.normalize("NFKC", text).lower())


def ngrams(ws: list[str], n: int) -> set[str]:
    return {" ".join(ws[i:i + n]) for i in range(len(ws) - n + 1)}


def item_ngrams(text: str, n: int, min_words: int = DEFAULT_MIN_WORDS) -> set[str]:
    """An eval item's n-grams; one whole-item gram when it is shorter than n; none when tiny."""
    ws = words(text)
    if len(ws) >= n:
        return ngrams(ws, n)
    return {" ".join(ws)} if len(ws) >= min_words else set()


@dataclass(frozen=True)
class EvalIndex:
    n: int
    grams: dict  # gram -> tuple of eval item ids
    sizes: tuple  # n-grams per eval item (0: too short, never matched)
    lengths: tuple  # gram lengths to extract from training text: n plus short items' lengths
    anchors: frozenset  # first words of all grams: skips the join for ~90% of windows


def build_index(texts: list[str], n: int, min_words: int = DEFAULT_MIN_WORDS) -> EvalIndex:
    grams: dict = collections.defaultdict(list)
    sizes = []
    for i, text in enumerate(texts):
        gs = item_ngrams(text, n, min_words)
        sizes.append(len(gs))
        for g in gs:
            grams[g].append(i)
    lengths = tuple(sorted({len(g.split()) for g in grams}))
    anchors = frozenset(g.split(" ", 1)[0] for g in grams)
    return EvalIndex(n, {g: tuple(v) for g, v in grams.items()}, tuple(sizes), lengths, anchors)


def row_texts(row: dict) -> list[str]:
    """The texts of a canonical blend row; messages are kept apart so no n-gram spans two turns."""
    if isinstance(row.get("text"), str):
        return [row["text"]]
    out = []
    for key in ("messages", "prompt", "chosen", "rejected"):
        for m in row.get(key) or []:
            if isinstance(m, dict) and isinstance(m.get("content"), str):
                out.append(m["content"])
    return out


def match(texts: list[str], index: EvalIndex, threshold: float) -> int:
    """The eval item most covered by these texts if its share reaches threshold, else -1."""
    seen: set = set()
    hits: collections.Counter = collections.Counter()
    for text in texts:
        ws = words(text)
        for length in index.lengths:
            for i in range(len(ws) - length + 1):
                if ws[i] not in index.anchors:
                    continue
                g = " ".join(ws[i:i + length])
                if g in seen or g not in index.grams:
                    continue
                seen.add(g)
                hits.update(index.grams[g])
    best, share = -1, 0.0
    for item, k in hits.items():
        if k / index.sizes[item] > share:
            best, share = item, k / index.sizes[item]
    return best if share >= threshold else -1


# --------------------------------------------------------------------------- eval sets


def eval_texts_from_rows(rows: list[dict], min_words: int = DEFAULT_MIN_WORDS) -> list[str]:
    """One text per item (its question/text field); a long-form answer (a worked
    solution, >= min_words words) is a second item, since solutions leak too."""
    out = []
    for row in rows:
        text = next((row[f] for f in TEXT_FIELDS if isinstance(row.get(f), str) and row[f].strip()), None)
        if text is not None:
            out.append(text)
        answer = row.get("answer")
        if isinstance(answer, str) and len(words(answer)) >= min_words:
            out.append(answer)
    return out


def eval_texts_from_synthetic(n: int) -> list[str]:
    """The held-out problems the curriculum scores (the first n of the fixed eval seed), in
    the training templates and in the held-out template family."""
    return [t for ph in phrasings.PHRASINGS
            for t in eval_texts_from_rows(synthetic.eval_rows(n, world.EVAL_SEED, ph))]


def eval_texts_from_files(spec: str | list[str]) -> list[str]:
    """Eval items from local JSON Lines / JSON files with a question or text field."""
    rows = []
    for path in expand_files(spec):
        if Path(path).suffix.lower() not in (".jsonl", ".json"):
            raise DataError(f"{path}: eval sets are read from .jsonl or .json files; export it as JSON Lines")
        check_readable(path)
        text = Path(path).read_text(encoding="utf-8")
        try:
            items = json.loads(text) if text.lstrip().startswith("[") else [
                json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: invalid JSON at line {e.lineno}; an eval set must parse whole") from None
        found = eval_texts_from_rows([r for r in items if isinstance(r, dict)])
        if not found:
            raise DataError(f"{path}: no item has any of the fields {', '.join(TEXT_FIELDS)}; rename its text field")
        rows += found
    return rows


# --------------------------------------------------------------------------- on Ray Data

_INDEX_CACHE: dict = {}


def _resolve(index_ref) -> EvalIndex:
    """The broadcast index, fetched once per worker process, not once per batch."""
    ref = index_ref[0]  # wrapped in a list so Ray hands over the ref, not the value per task
    key = ref.hex()
    if key not in _INDEX_CACHE:
        _INDEX_CACHE.clear()
        _INDEX_CACHE[key] = ray.get(ref)
    return _INDEX_CACHE[key]


def mark_batch(batch, index_ref, threshold: float):
    """Adds `_decon`: the matched eval item id, or -1 for a clean row."""
    index = _resolve(index_ref)
    cols = [c for c in ("text", "messages", "prompt", "chosen", "rejected") if c in batch.column_names]
    ids = [match(row_texts(r), index, threshold) for r in batch.select(cols).to_pylist()]
    return batch.append_column("_decon", pa.array(ids, pa.int32()))


class Decontaminator:
    """`blend.build_blend(..., decontaminate=Decontaminator(texts))`: drops training
    rows that contain an evaluation item and counts them per source."""

    def __init__(self, eval_texts: list[str], n: int = DEFAULT_N, threshold: float = DEFAULT_THRESHOLD,
                 min_words: int = DEFAULT_MIN_WORDS, name: str = "evaluation set"):
        if not isinstance(eval_texts, (list, tuple)) or not all(isinstance(t, str) for t in eval_texts):
            raise ValueError("eval_texts must be a list of strings (questions or passages of the eval set)")
        if n < 1 or not 0.0 < threshold <= 1.0 or min_words < 1:
            raise ValueError(f"n={n}, threshold={threshold}, min_words={min_words}: need n >= 1, "
                             "0 < threshold <= 1 (share of an item's n-grams), min_words >= 1")
        self.texts, self.n, self.threshold, self.min_words, self.name = list(eval_texts), n, threshold, min_words, name
        self.index = build_index(self.texts, n, min_words)
        if not self.index.grams:
            raise ValueError(f"{name}: none of its {len(self.texts)} items has {min_words}+ words to match on; "
                             "pass the questions' full text, or lower min_words")
        canon = sorted({" ".join(words(t)) for t in self.texts})
        spec = {"v": 1, "n": n, "threshold": threshold, "min_words": min_words, "texts": canon}
        self.key = hashlib.sha256(json.dumps(spec).encode()).hexdigest()[:16]
        self.matched: collections.Counter = collections.Counter()  # eval item id -> rows removed, last call

    def describe(self) -> dict:
        usable = sum(1 for s in self.index.sizes if s)
        top = [{"item": i, "rows": k, "text": self.texts[i][:120]} for i, k in self.matched.most_common(10)]
        return {"eval_set": self.name, "items": usable, "skipped_short_items": len(self.texts) - usable,
                "n": self.n, "threshold": self.threshold, "key": self.key, "matched_items": top}

    def __call__(self, ds):
        ref = ray.put(self.index)
        marked = ds.map_batches(mark_batch, fn_kwargs={"index_ref": [ref], "threshold": self.threshold},
                                batch_size=256, batch_format="pyarrow").materialize()
        hits = marked.filter(expr=col("_decon") >= 0).select_columns(["_source_id", "_decon"]).take_all()
        self.matched = collections.Counter(h["_decon"] for h in hits)
        counts = collections.Counter(h["_source_id"] for h in hits)
        return marked.filter(expr=col("_decon") < 0).drop_columns(["_decon"]), counts


class DecontaminationSuite:
    """Several named evaluation sets, each matched with its own n-gram settings (8-grams for
    short synthetic problems, 13-grams for benchmark items), plus the configured sets whose
    data cannot be read here, named so the card can say so. Same interface as a
    Decontaminator: `suite(ds) -> (ds, Counter{source index: removed})`, `.key`, `describe()`.
    A row is counted against the first set it matches, in order."""

    def __init__(self, sets: list[Decontaminator], unreadable: list[dict] | None = None):
        self.sets, self.unreadable = list(sets), list(unreadable or [])
        spec = {"v": 1, "sets": [d.key for d in self.sets], "unreadable": sorted(u["name"] for u in self.unreadable)}
        self.key = hashlib.sha256(json.dumps(spec).encode()).hexdigest()[:16]
        self.removed: dict[str, int] = {}

    def __call__(self, ds):
        total: collections.Counter = collections.Counter()
        for d in self.sets:
            ds, counts = d(ds)
            self.removed[d.name] = sum(counts.values())
            total += counts
        return ds, total

    def describe(self) -> dict:
        sets = [{**d.describe(), "rows_removed": self.removed.get(d.name, 0)} for d in self.sets]
        return {"eval_set": " + ".join(d.name for d in self.sets) or "no evaluation set with local data",
                "sets": sets, "unreadable": self.unreadable, "key": self.key}
