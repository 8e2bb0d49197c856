"""Tokenize and pack: pure functions over row batches, run by Ray Data map_batches.

Chat rows become (input_ids, labels) with -100 on everything but the assistant
turns the model's own chat template renders (model/templates.py finds them); rows over
`max_length` follow `data.overlong` and every row is accounted for (data/lengths.py); text rows are concatenated documents; SFT rows are packed best-fit
decreasing into sequences of `max_length` with their boundaries kept
(`seq_lengths`), so position ids restart per example and attention does not
cross examples (flash-attention varlen on GPU, a block-causal SDPA mask on CPU).
"""

from __future__ import annotations

import bisect
import json
import random
from dataclasses import dataclass
from typing import Any, Callable

from tinyreason.data import lengths as L
from tinyreason.model import templates

IGNORE = -100


@dataclass(frozen=True)
class Step:
    """One batch transform of a stage's tokenizing pipeline and the batch size it runs at
    (packing works within a batch, so the size is part of the method, not a tuning knob)."""

    fn: Callable[[dict], dict]
    batch_size: int
    # the step returns every row it saw with data/lengths.py's accounting columns: the pipeline
    # copies them into its ledger and keeps only the rows that train
    accounts: bool = False


def on_ray(ds, steps: list[Step], ledger: list | None = None):
    """The pipeline as Ray Data map_batches, for blends worth a cluster's CPUs. An accounting
    step's output is materialized once, to read its accounting columns into `ledger`."""
    for step in steps:
        ds = ds.map_batches(step.fn, batch_size=step.batch_size)
        if step.accounts:
            if ledger is not None:
                ds = ds.materialize()
                ledger.append(L.accounting(ds.select_columns(list(L.ACCOUNTING)).to_pandas().to_dict("list")))
            ds = ds.map_batches(L.settle, batch_size=step.batch_size)
    return ds


def in_process(batch: dict[str, list], steps: list[Step], ledger: list | None = None) -> dict[str, list]:
    """The same pipeline in this process, over batches of the same sizes. For small blends:
    Ray Data's workers would spend longer importing transformers than the work takes."""
    for step in steps:
        n = len(next(iter(batch.values()), []))
        parts = [step.fn({k: v[i:i + step.batch_size] for k, v in batch.items()})
                 for i in range(0, n, step.batch_size)]
        batch = {k: [x for part in parts for x in part[k]] for k in (parts[0] if parts else {})}
        if step.accounts:
            if ledger is not None and L.FATE in batch:
                ledger.append(L.accounting(batch))
            batch = L.settle(batch)
    return batch


def rows_of(batch: dict[str, Any]) -> list[dict]:
    """A Ray Data batch (dict of columns) as a list of row dicts."""
    keys = list(batch)
    n = len(batch[keys[0]]) if keys else 0
    return [{k: _plain(batch[k][i]) for k in keys} for i in range(n)]


def batch_of(rows: list[dict], columns: list[str]) -> dict[str, list]:
    return {c: [r[c] for r in rows] for c in columns}


def _plain(v: Any) -> Any:
    """numpy/arrow containers from Ray Data -> plain Python lists and dicts."""
    if hasattr(v, "tolist") and not isinstance(v, (str, bytes)):
        v = v.tolist()
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def template_kwargs(row: dict) -> dict:
    """A row's `chat_template_kwargs` (a JSON string in blend parquet) for its template."""
    kw = row.get("chat_template_kwargs")
    if isinstance(kw, str):
        kw = json.loads(kw) if kw.strip() else {}
    return dict(kw or {})


def tokenize_chat(tok, messages: list[dict], max_length: int, overlong: str = "drop",
                  kwargs: dict | None = None) -> dict:
    """One conversation -> input_ids + labels on its assistant turns (each through its end-of-turn
    token), with its full length (`_tokens`) and fate (`_fate`, data/lengths.py). Rows over
    max_length are dropped, truncated (fate truncated, or truncated_in_think when the cut falls
    inside a <think> block) or marked for the stage to fail on, as `overlong` says; a row that
    does not train comes back with empty input_ids."""
    enc = templates.encode_chat(tok, messages, kwargs)
    n, ids, mask, fate = len(enc.ids), enc.ids, enc.mask, L.KEPT
    if not enc.matched:
        return L.untrained(n, L.MISMATCH, ("input_ids", "labels"))
    if n > max_length:
        if overlong != "truncate":
            return L.untrained(n, L.DROPPED if overlong == "drop" else L.OVER, ("input_ids", "labels"))
        ids, mask = ids[:max_length], mask[:max_length]
        fate = L.CUT_IN_THINK if templates.cut_in_think(enc.text, enc.offsets[max_length - 1][1]) else L.TRUNCATED
    labels = [t if m else IGNORE for t, m in zip(ids, mask)]
    if all(lbl == IGNORE for lbl in labels):
        return L.untrained(n, L.NO_LABELS, ("input_ids", "labels"))
    return {"input_ids": ids, "labels": labels, L.TOKENS: n, L.FATE: fate}


def tokenize_chat_batch(batch: dict, tok, max_length: int, overlong: str = "drop") -> dict:
    """Every row, trained or not, with its accounting (`settle` keeps the ones that train)."""
    rows = [{**tokenize_chat(tok, row["messages"], max_length, overlong, template_kwargs(row)),
             L.SOURCE: L.source_of(row)} for row in rows_of(batch)]
    return batch_of(rows, ["input_ids", "labels", *L.ACCOUNTING])


def tokenize_text_batch(batch: dict, tok, max_length: int) -> dict:
    """Pre-training: documents joined with EOS-of-document and cut into full blocks.

    Documents are concatenated (the GPT-2 / TinyStories convention) rather than
    padded; each block's `seq_lengths` records document boundaries inside it.
    """
    sep = tok.convert_tokens_to_ids(tok.pad_token)
    docs = [tok(r["text"], add_special_tokens=False)["input_ids"] + [sep] for r in rows_of(batch)]
    return batch_of(pack_documents(docs, max_length), ["input_ids", "labels", "seq_lengths"])


def pack_documents(docs: list[list[int]], max_length: int) -> list[dict]:
    """Greedy concatenation into blocks of exactly max_length (the tail block may be shorter)."""
    blocks, cur, lens = [], [], []
    for doc in docs:
        while doc:
            take = doc[: max_length - len(cur)]
            cur += take
            lens.append(len(take))
            doc = doc[len(take):]
            if len(cur) == max_length:
                blocks.append({"input_ids": cur, "labels": list(cur), "seq_lengths": lens})
                cur, lens = [], []
    if cur:
        blocks.append({"input_ids": cur, "labels": list(cur), "seq_lengths": lens})
    return blocks


def pack_bfd(examples: list[dict], max_length: int) -> list[dict]:
    """Best-fit decreasing: longest first, each into the fullest bin it still fits.

    BFD wastes under 2% on chat-like length mixes where first-fit in arrival order
    wastes 10-20%; bins are kept sorted by remaining space so each placement is a
    bisect, O(n log n) overall.
    """
    examples = [e for e in examples if e["input_ids"]]  # rows that do not train (data/lengths.py) take no slot
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i]["input_ids"]))
    bins: list[list[int]] = []
    space: list[tuple[int, int]] = []  # (remaining, bin index), sorted
    for i in order:
        n = min(len(examples[i]["input_ids"]), max_length)
        j = bisect.bisect_left(space, (n, -1))
        if j < len(space):
            rem, b = space.pop(j)
        else:
            rem, b = max_length, len(bins)
            bins.append([])
        bins[b].append(i)
        if rem - n > 0:
            bisect.insort(space, (rem - n, b))
    packed = []
    for members in bins:
        ids, labels, lens = [], [], []
        for i in members:
            ex = examples[i]
            ids += ex["input_ids"][:max_length]
            labels += ex["labels"][:max_length]
            lens.append(min(len(ex["input_ids"]), max_length))
        packed.append({"input_ids": ids, "labels": labels, "seq_lengths": lens})
    return packed


def pack_batch(batch: dict, max_length: int) -> dict:
    """BFD bins in a seeded shuffle. BFD emits bins ordered by their longest row, and how full
    a bin is follows that order; each worker trains on a contiguous shard, so unshuffled
    shards differed by 20% in tokens (121 chat bins at 256), and a token-budget stage takes
    as many steps as its lightest shard allows."""
    bins = pack_bfd(rows_of(L.settle(batch)), max_length)
    random.Random(len(bins)).shuffle(bins)
    return batch_of(bins, ["input_ids", "labels", "seq_lengths"])


def single_batch(batch: dict) -> dict:
    """Unpacked rows still carry seq_lengths so the collator treats both paths alike."""
    rows = rows_of(L.settle(batch))
    return {
        "input_ids": [r["input_ids"] for r in rows],
        "labels": [r["labels"] for r in rows],
        "seq_lengths": [[len(r["input_ids"])] for r in rows],
    }


def tokenize_preference(tok, row: dict, max_length: int, max_prompt_length: int | None,
                        overlong: str = "drop") -> dict:
    """prompt/chosen/rejected message lists -> prompt_ids, chosen_ids, rejected_ids, with the
    row's length and fate (data/lengths.py) as `tokenize_chat` gives them.

    The prompt is rendered with the generation prompt and cut from the left to
    max_prompt_length (keeping the question, dropping old context). A row whose prompt plus
    longer completion is over max_length is dropped, truncated (the completions cut to fit)
    or marked as an error, as `overlong` says; its length is counted after the prompt's cut.
    """
    cols = ("prompt_ids", "chosen_ids", "rejected_ids")
    kwargs = {**templates.render_kwargs(tok.chat_template), **template_kwargs(row)}
    end = templates.turns_of(tok).end_id
    prompt = tok.apply_chat_template(row["prompt"], tokenize=True, add_generation_prompt=True, return_dict=True,
                                     **kwargs)
    p_ids = list(prompt["input_ids"])
    out = {}
    for side in ("chosen", "rejected"):
        full = tok.apply_chat_template(row["prompt"] + row[side], tokenize=True, return_dict=True, **kwargs)
        full_ids = list(full["input_ids"])
        if full_ids[: len(p_ids)] != p_ids or end not in full_ids[len(p_ids):]:
            # the template renders the prompt differently alone, or the reply has no end of turn
            return L.untrained(len(full_ids), L.MISMATCH, cols)
        out[f"{side}_ids"] = full_ids[len(p_ids):]
    if max_prompt_length is not None:
        p_ids = p_ids[-max_prompt_length:]
    n, fate = len(p_ids) + max(len(v) for v in out.values()), L.KEPT
    if n > max_length:
        if overlong != "truncate":
            return L.untrained(n, L.DROPPED if overlong == "drop" else L.OVER, cols)
        room = max_length - len(p_ids)
        if room <= 0:
            return L.untrained(n, L.NO_LABELS, cols)
        cut = {k: v[:room] for k, v in out.items()}
        opened = any(templates.cut_in_think(tok.decode(cut[k]), len(tok.decode(cut[k]))) for k in cut
                     if len(out[k]) > room)
        out, fate = cut, (L.CUT_IN_THINK if opened else L.TRUNCATED)
    return {"prompt_ids": p_ids, **out, L.TOKENS: n, L.FATE: fate}


def tokenize_preference_batch(batch: dict, tok, max_length: int, max_prompt_length: int | None,
                              overlong: str = "drop") -> dict:
    rows = [{**tokenize_preference(tok, r, max_length, max_prompt_length, overlong), L.SOURCE: L.source_of(r)}
            for r in rows_of(batch)]
    return batch_of(rows, ["prompt_ids", "chosen_ids", "rejected_ids", *L.ACCOUNTING])


def real_token_share(rows: list[dict], max_length: int) -> float:
    """Share of computed positions that are real tokens when every row is a max_length sequence."""
    real = sum(len(r["input_ids"]) for r in rows)
    return real / (len(rows) * max_length) if rows else 0.0


def collate_packed_rows(examples: list[dict], pad_token_id: int) -> dict:
    """Packed sequences as the rows of one [B, L] batch, for attention without a varlen kernel.

    Position ids restart at every example (and at the pad tail), and no attention mask is
    passed, so transformers builds a block-causal mask inside each row: attention costs
    B * L^2. TRL's padding-free collator instead joins the whole batch into one 1 x (B * L)
    sequence, which flash-attention varlen handles in B * L^2 as well, but which SDPA (CPU,
    or GPUs without flash-attn) computes as a full (B * L)^2 score matrix: measured 2.3x
    slower on CPU at B=4, L=512 (bench/bench_packing.py). Each example's first label is
    ignored, as TRL's collator does: no token predicts it inside its own document.
    """
    import torch  # on use: Ray Data's tokenizing workers import this module and never collate

    width = max(len(e["input_ids"]) for e in examples)
    ids, labels, positions = [], [], []
    for e in examples:
        tail = width - len(e["input_ids"])
        ids.append(list(e["input_ids"]) + [pad_token_id] * tail)
        labels.append(list(e["labels"]) + [IGNORE] * tail)
        lengths = list(e.get("seq_lengths") or [len(e["input_ids"])])
        positions.append([i for n in lengths for i in range(n)] + list(range(tail)))
    out = {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels), "position_ids": torch.tensor(positions)}
    out["labels"][out["position_ids"] == 0] = IGNORE
    return out
