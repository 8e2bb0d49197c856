"""A blend's card: its composition table (as Tables 1-3 of the TRLM report, plus what
validation and decontamination removed), reject reasons in words, decontamination."""

from __future__ import annotations

import collections

from tinyreason.data import schema
from tinyreason.data.teacher import FILTER_REASONS

# Reasons found before schema.normalize_row sees a row.
EXTRA_REASONS = {
    "bad_json": "The line is not valid JSON (truncated, or not JSON at all).",
    "bad_unicode": "The text holds characters that cannot be stored as UTF-8 (lone surrogates).",
    **FILTER_REASONS,
}


def composition_table(manifest: dict) -> str:
    """Like Tables 1-3 of the TRLM report, plus what validation and decontamination removed."""
    lines = ["| source | subset | split | requested | kept | rejected | decontaminated | share |",
             "| --- | --- | --- | ---: | ---: | --- | ---: | ---: |"]
    for s in manifest["sources"]:
        rej = ", ".join(f"{k}: {v}" for k, v in sorted(s["rejected"].items())) or "0"
        lines.append(f"| {s['source']} | {s['subset'] or '-'} | {s['split']} | {s['requested'] or 'all'} "
                     f"| {s['kept']:,} | {rej} | {s['decontaminated']} | {s['share']:.1%} |")
    kept = sum(s["kept"] for s in manifest["sources"])
    lines.append(f"| **total** | | | | **{kept:,}** | {manifest['rejected_total']} "
                 f"| {manifest['decontaminated_total']} | 100% |")
    return "\n".join(lines)


def render_card(manifest: dict) -> str:
    counts = sum((collections.Counter(s["rejected"]) for s in manifest["sources"]), collections.Counter())
    reasons = "\n".join(f"- `{r}` ({n}): {schema.REASONS.get(r) or EXTRA_REASONS.get(r, r)}"
                        for r, n in sorted(counts.items())) or "- none"
    d = manifest.get("decontamination")
    decon = "Not run for this blend."
    if d:
        how = (f" ({d['items']} items, {d['n']}-word n-grams; a row is removed when it holds {d['threshold']:.0%} of "
               "one item's n-grams)") if "n" in d else ""
        decon = (f"Against {d['eval_set']}{how}: {manifest['decontaminated_total']} rows removed." + "".join(
            f"\n- {m['rows']} row(s) matching item {m['item']}: {m['text']!r}" for m in d.get("matched_items", [])))
    held = f" (+{manifest['heldout_rows']:,} held out in `heldout/`)" if manifest.get("heldout_rows") else ""
    think = {"reject": " Assistant turns with a `<think>` block are rejected (`think_in_chat`): this chat stage "
                       "trains without thinking; `data.think_rows: keep` keeps well-formed ones.",
             "keep": " Assistant turns with a well-formed `<think>` block are kept (`data.think_rows: keep`); "
                     "malformed think markup is rejected."}.get(manifest.get("think_rows"), "")
    return (
        f"# Dataset card: {manifest['name']}\n\n"
        f"Row schema: `{manifest['schema']}`. Training rows: {manifest['rows']:,}{held}.{think} "
        f"Content hash: `{manifest['content_hash']}`. Build key: `{manifest['key']}`.\n\n"
        f"## Composition\n\n{composition_table(manifest)}\n\n"
        f"## Reject reasons\n\n{reasons}\n\n{teacher_section(manifest)}"
        f"## Decontamination\n\n{decon}\n\n"
        "Every row carries `_source_dataset`, `_source_subset` and `_source_split`. "
        "A sample of rejected rows (3 per source and reason) is in `rejected.jsonl`.\n"
    )


def teacher_section(manifest: dict) -> str:
    """What each teacher source generated and kept (tinyreason/teachers.py writes `teachers`)."""
    teachers = manifest.get("teachers") or []
    if not teachers:
        return ""
    lines = ["## Teacher generation\n",
             "| source | teacher | key | prompts | samples/prompt | temperature | generated | filtered | kept | tokens "
             "| tokens/s | tokens/s per actor generating | actors |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for t in teachers:
        src = manifest["sources"][t["source"]]
        filtered = ", ".join(f"{k}: {v}" for k, v in sorted(src["rejected"].items()) if k.startswith("teacher_"))
        lines.append(f"| {t['source']} | {t['model']} | `{t['key']}` | {t['prompts']['rows']:,} | {t['num_samples']} "
                     f"| {t['temperature']} | {t['generated']:,} | {filtered or '0'} | {src['kept']:,} "
                     f"| {t['tokens']:,} | {t['tokens_per_s']:,.0f} | {t.get('tokens_per_actor_s', 0):,.0f} "
                     f"| {len(t['actors'])} |")
    lines.append("\nKept samples are chat rows: the prompt's messages and the teacher's answer. Samples dropped by a "
                 "filter are counted under their reason and sampled in `rejected.jsonl`; `kept` is after validation "
                 "and decontamination too. tokens/s is wall clock from the pool's start (model loads included); per "
                 "actor generating counts the time inside generate() only.\n\n")
    return "\n".join(lines)
