"""A blend's card: its composition table (as Tables 1-3 of the TRLM report, plus what
validation and decontamination removed), reject reasons in words, decontamination."""

from __future__ import annotations

import collections

from tinyreason.data import schema

# Reasons found before schema.normalize_row sees a row.
EXTRA_REASONS = {
    "bad_json": "The line is not valid JSON (truncated, or not JSON at all).",
    "bad_unicode": "The text holds characters that cannot be stored as UTF-8 (lone surrogates).",
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


def _matched(d: dict) -> str:
    return "".join(f"\n- {m['rows']} row(s) matching item {m['item']}: {m['text']!r}" for m in d.get("matched_items", []))


def decontamination_section(d: dict, removed: int) -> str:
    """One evaluation set (a Decontaminator) as a sentence; several (a DecontaminationSuite) as a
    table of rows removed per set, then the configured sets whose data could not be read here."""
    if "sets" not in d:
        how = (f" ({d['items']} items, {d['n']}-word n-grams; a row is removed when it holds {d['threshold']:.0%} of "
               "one item's n-grams)") if "n" in d else ""
        return f"Against {d['eval_set']}{how}: {removed} rows removed." + _matched(d)
    lines = [f"Against {len(d['sets'])} evaluation set(s) with local data: {removed} rows removed. A row is removed "
             "when it holds the threshold share of one item's word n-grams."]
    if d["sets"]:
        lines += ["", "| evaluation set | items | n-gram | threshold | rows removed |", "| --- | ---: | ---: | ---: | ---: |"]
        lines += [f"| {s['eval_set']} | {s['items']:,} | {s['n']} | {s['threshold']:.0%} | {s['rows_removed']} |"
                  for s in d["sets"]]
        lines += [f"\n{s['eval_set']}:{_matched(s)}" for s in d["sets"] if s.get("matched_items")]
    if d.get("unreadable"):
        lines += ["", "Not checked, because their data cannot be read on this machine:"]
        lines += [f"- {u['name']}: {u['why']}" for u in d["unreadable"]]
    return "\n".join(lines)


def render_card(manifest: dict) -> str:
    counts = sum((collections.Counter(s["rejected"]) for s in manifest["sources"]), collections.Counter())
    reasons = "\n".join(f"- `{r}` ({n}): {schema.REASONS.get(r) or EXTRA_REASONS.get(r, r)}"
                        for r, n in sorted(counts.items())) or "- none"
    d = manifest.get("decontamination")
    decon = "Not run for this blend." if not d else decontamination_section(d, manifest["decontaminated_total"])
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
        f"## Reject reasons\n\n{reasons}\n\n"
        f"## Decontamination\n\n{decon}\n\n"
        "Every row carries `_source_dataset`, `_source_subset` and `_source_split`. "
        "A sample of rejected rows (3 per source and reason) is in `rejected.jsonl`.\n"
    )
