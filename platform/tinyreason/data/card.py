"""A blend's card: its composition table (as Tables 1-3 of the TRLM report, plus what
validation and decontamination removed), reject reasons in words, decontamination."""

from __future__ import annotations

import collections

from tinyreason.data import schema
from tinyreason.data.teacher import FILTER_REASONS
from tinyreason.render import md_table

# Reasons found before schema.normalize_row sees a row.
EXTRA_REASONS = {
    "bad_json": "The line is not valid JSON (truncated, or not JSON at all).",
    "bad_unicode": "The text holds characters that cannot be stored as UTF-8 (lone surrogates).",
    **FILTER_REASONS,
}


def _source_name(s: dict) -> str:
    # a hub source names its pinned revision, or says it was not pinned; a local one has no "revision"
    return s["source"] + (f" @ {s['revision']}" if s.get("revision") else " (unpinned)" if "revision" in s else "")


def composition_table(manifest: dict) -> str:
    """Like Tables 1-3 of the TRLM report, plus what validation and decontamination removed;
    render.md_table escapes every cell, so a source name with a pipe keeps the table whole."""
    rows = [[_source_name(s), s["subset"] or "-", s["split"], s["requested"] or "all", f"{s['kept']:,}",
             ", ".join(f"{k}: {v}" for k, v in sorted(s["rejected"].items())) or "0", s["decontaminated"],
             f"{s['share']:.1%}"] for s in manifest["sources"]]
    kept = sum(s["kept"] for s in manifest["sources"])
    rows.append(["total", "", "", "", f"{kept:,}", manifest["rejected_total"], manifest["decontaminated_total"],
                 "100%"])
    return md_table(["source", "subset", "split", "requested", "kept", "rejected", "decontaminated", "share"], rows,
                    align=["left", "left", "left", "right", "right", "left", "right", "right"])


def revisions_note(manifest: dict) -> str:
    """Which hub sources were pinned to a revision, and a warning for those that were not."""
    hub = [s for s in manifest["sources"] if "revision" in s]
    if not hub:
        return ""
    pinned = [f"`{s['source']}` at `{s['revision']}`" for s in hub if s["revision"]]
    loose = [f"`{s['source']}`" for s in hub if not s["revision"]]
    text = f"Hub sources pinned: {', '.join(pinned)}. " if pinned else ""
    if loose:
        text += (f"Unpinned: {', '.join(loose)} read whatever the hub served when this blend was built, and a "
                 "rebuild may read other rows; pin each with `revision:` (a commit sha) to freeze it. ")
    return text.strip()


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
    pins = revisions_note(manifest) + "\n\n" if revisions_note(manifest) else ""
    held = f" (+{manifest['heldout_rows']:,} held out in `heldout/`)" if manifest.get("heldout_rows") else ""
    think = {"reject": " Assistant turns with a `<think>` block are rejected (`think_in_chat`): this chat stage "
                       "trains without thinking; `data.think_rows: keep` keeps well-formed ones.",
             "keep": " Assistant turns with a well-formed `<think>` block are kept (`data.think_rows: keep`); "
                     "malformed think markup is rejected."}.get(manifest.get("think_rows"), "")
    return (
        f"# Dataset card: {manifest['name']}\n\n"
        f"Row schema: `{manifest['schema']}`. Training rows: {manifest['rows']:,}{held}.{think} "
        f"Content hash: `{manifest['content_hash']}`. Build key: `{manifest['key']}`.\n\n"
        f"## Composition\n\n{composition_table(manifest)}\n\n{pins}"
        f"## Reject reasons\n\n{reasons}\n\n{teacher_section(manifest)}"
        f"## Decontamination\n\n{decon}\n\n"
        "Every row carries `_source_dataset`, `_source_subset` and `_source_split`. "
        "A sample of rejected rows (3 per source and reason) is in `rejected.jsonl`.\n"
    )


def token_lengths_section(tokens: dict | None) -> str:
    """The card's token-length section under a stage's tokenizer (data/lengths.length_report):
    per source, the p50/p95/max lengths, the rows over max_length, and what data.overlong did."""
    if not tokens:
        return ""
    policy = {"drop": "dropped", "truncate": "truncated at max_length",
              "error": "an error"}[tokens["overlong"]]
    lines = ["| source | rows | p50 | p95 | max | over max_length | dropped | truncated | cut inside <think> "
             "| refused |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in [*tokens["sources"].items(), ("**total**", tokens["total"])]:
        refused = r["template_mismatch"] + r["no_labels"]
        lines.append(f"| {name} | {r['rows']:,} | {r['p50']:,} | {r['p95']:,} | {r['max']:,} | {r['over_max_length']:,} "
                     f"| {r['dropped_overlong']:,} | {r['truncated'] + r['truncated_in_think']:,} "
                     f"| {r['truncated_in_think']:,} | {refused:,} |")
    return (f"\n## Token lengths\n\nUnder this stage's tokenizer and chat template (nearest-rank percentiles). "
            f"Rows over data.max_length={tokens['max_length']:,} tokens are {policy} (`data.overlong: "
            f"{tokens['overlong']}`). Truncated rows cut inside a <think> block train without </think>, their "
            "answer and the end of turn. Refused rows: nothing of an assistant turn left, or turns the "
            "template's rendering did not show whole.\n\n" + "\n".join(lines) + "\n")


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
                 "actor generating counts the time inside generate() only." +
                 (" A source with `pairs` keeps preference rows instead, each a right sample chosen over a wrong one "
                  "of the same prompt (two samples); a sample left without a partner is counted under "
                  "`teacher_unpaired`." if any(t.get("pairs") for t in teachers) else "") + "\n\n")
    return "\n".join(lines)
