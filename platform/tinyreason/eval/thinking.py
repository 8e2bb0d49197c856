"""Generation for reasoning models: the thinking kept, a budget on it, stops on the answer only.

One function, `generate`, serves the held-out probe and the lm-eval suite (eval/lm.py), so both
see the same outputs for the same settings:

- The think tags survive decoding. lm-eval's HF model decodes with skip_special_tokens=True,
  and after the reasoning stage `<think>`/`</think>` are special tokens: the trace would reach
  the metric untagged and inseparable. Here every other special token is dropped as before.
- A budget of N thinking tokens: once a row has thought N tokens, `</think>` is forced (token by
  token when the tag is several) and the answer generated after it. Under a budget an output has
  one block at most and it always closes: no nested or second `<think>`, no `</think>` outside a
  block, no EOS inside one.
- Stop sequences apply to the answer part only: a task's "\\n\\n" or "Q:" must not end a trace.
- Thinking off: the prompt ends in an empty `<think>\\n\\n</think>\\n` block and `<think>` is
  banned, so the model answers at once; on: the prompt ends in `<think>\\n`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

from tinyreason.answers import answer_for_metric, split_thinking
from tinyreason.model.chat import THINK_CLOSE, THINK_OPEN

PREFILL = {"auto": "", "on": f"{THINK_OPEN}\n", "off": f"{THINK_OPEN}\n\n{THINK_CLOSE}\n"}


@dataclass(frozen=True)
class Think:
    mode: str = "auto"  # auto | on | off, as ThinkingConfig.mode
    budget: int | None = None  # thinking tokens before </think> is forced

    @property
    def prefill(self) -> str:
        """Text appended to each prompt (after the chat template's assistant turn opens)."""
        return PREFILL[self.mode]


@dataclass
class Generation:
    """One generated answer: `text` is the whole output (prefill included, tags kept)."""

    text: str
    thinking: str | None  # inside the think block(s); None when none was opened
    answer: str  # what the metric sees: after </think>, "" when there is none
    no_answer: str | None  # None, or why `answer` is empty: answers.UNCLOSED / answers.NO_ANSWER
    think_tokens: int  # generated tokens inside think blocks (the prefill's tags not counted)
    forced_close: bool  # the budget ran out and </think> was forced
    hit_limit: bool  # stopped by the token limit, not by EOS or a stop sequence

    def record(self) -> dict:
        return {"output": self.text, "thinking": self.thinking, "answer": self.answer, "no_answer": self.no_answer,
                "think_tokens": self.think_tokens, "forced_close": self.forced_close, "hit_limit": self.hit_limit}


def tag_ids(tok, tag: str) -> list[int]:
    return tok.encode(tag, add_special_tokens=False)


def has_think_tokens(tok) -> bool:
    """A reasoning model's tokenizer: <think> and </think> are one token each (reasoning_sft adds them)."""
    return len(tag_ids(tok, THINK_OPEN)) == 1 and len(tag_ids(tok, THINK_CLOSE)) == 1


@dataclass
class _Row:
    inside: bool
    count: int = 0  # generated tokens inside think blocks
    forced: bool = False
    closed: bool = False  # a block was closed (by the model or the budget)
    pending: list[int] = field(default_factory=list)  # close-tag tokens still to force
    need_answer: bool = False  # a forced </think> completed and no visible answer token followed yet
    answer_from: int = 0  # index in the generated ids where the current answer part begins
    done_at: int | None = None  # generated length when EOS or a stop sequence ended the row
    tail: list[int] = field(default_factory=list)  # the last few generated ids, to spot a tag


class ThinkTracker:
    """Per-row thinking state, read from the generated ids; shared by the processor and the stop check."""

    def __init__(self, tok, prompt_len: int, batch: int, think: Think):
        self.tok, self.blank = tok, {}
        self.open, self.close = tag_ids(tok, THINK_OPEN), tag_ids(tok, THINK_CLOSE)
        self.prompt_len, self.think = prompt_len, think
        self.budget = 0 if think.mode == "off" else think.budget
        self.rows = [_Row(inside=think.mode == "on") for _ in range(batch)]
        self.seen = 0
        self.keep = max(len(self.open), len(self.close))  # ids a row must remember to see a tag end

    def observe(self, input_ids: torch.LongTensor) -> torch.LongTensor:
        """Advance every row over the tokens generated since the last call; returns the generated ids."""
        gen = input_ids[:, self.prompt_len:]
        new = gen[:, self.seen:].tolist()  # one device-to-host copy per step, not one per row
        for b, row in enumerate(self.rows):
            for i, token in enumerate(new[b]):
                if row.done_at is None:
                    row.tail = (row.tail + [token])[-self.keep:]
                    self._step(row, self.seen + i)
        self.seen = gen.shape[1]
        return gen

    def _step(self, row: _Row, pos: int) -> None:
        if row.pending:
            row.pending.pop(0)
        if row.need_answer and not self._blank(row.tail[-1]):
            row.need_answer = False
        if row.tail[-len(self.close):] == self.close:
            if row.inside:
                row.count = max(0, row.count - (len(self.close) - 1))  # the tag's first pieces were counted
            row.inside, row.closed, row.answer_from, row.need_answer = False, True, pos + 1, row.forced
        elif row.tail[-len(self.open):] == self.open:
            row.inside = True
        elif row.inside:
            row.count += 1

    def _blank(self, token: int) -> bool:
        if token not in self.blank:
            self.blank[token] = not self.tok.decode([token]).strip()
        return self.blank[token]

    def constrain(self, scores: torch.FloatTensor, eos_ids: list[int]) -> torch.FloatTensor:
        low = torch.finfo(scores.dtype).min
        for b, row in enumerate(self.rows):
            if row.done_at is not None:
                continue
            if row.inside and self.budget is not None and row.count >= self.budget and not row.pending:
                row.pending, row.forced = list(self.close), True
            if row.pending:
                scores[b] = low
                scores[b, row.pending[0]] = 0.0
                continue
            if self.budget is not None:  # a budget shapes the output: one block, closed once, then the answer
                if (row.inside or row.closed or row.count >= self.budget) and len(self.open) == 1:
                    scores[b, self.open[0]] = low
                if not row.inside and len(self.close) == 1:
                    scores[b, self.close[0]] = low
                if row.inside:
                    scores[b, eos_ids] = low  # the block ends by </think>, forced at the budget at the latest
            if row.need_answer:
                scores[b, eos_ids] = low  # after a forced </think>, an answer before the end
        return scores


class _Budget(LogitsProcessor):
    def __init__(self, tracker: ThinkTracker, eos_ids: list[int]):
        self.tracker, self.eos_ids = tracker, eos_ids

    def __call__(self, input_ids, scores):
        self.tracker.observe(input_ids)
        return self.tracker.constrain(scores, self.eos_ids)


class _AnswerStops(StoppingCriteria):
    """Per row: EOS anywhere, or a stop sequence in the answer part (never inside a think block)."""

    def __init__(self, tracker: ThinkTracker, tok, stops: list[str], eos_ids: list[int]):
        self.tracker, self.tok, self.stops, self.eos_ids = tracker, tok, [s for s in stops if s], set(eos_ids)
        # like lm-eval's MultiTokenEOSCriteria: look back a stop's token length + 2 (tokenizations differ)
        self.window = max((len(tok.encode(s, add_special_tokens=False)) for s in self.stops), default=0) + 2

    def __call__(self, input_ids, scores, **kwargs):
        gen = self.tracker.observe(input_ids)
        n = gen.shape[1]
        for b, row in enumerate(self.tracker.rows):
            if row.done_at is not None or n == 0:
                continue
            if int(gen[b, -1]) in self.eos_ids:
                row.done_at = n
            elif not row.inside and not row.need_answer and self.stops:
                tail = self.tok.decode(gen[b, max(row.answer_from, n - self.window):].tolist())
                if any(s in tail for s in self.stops):
                    row.done_at = n
        return torch.tensor([r.done_at is not None for r in self.tracker.rows], device=input_ids.device)


def eos_token_ids(model, tok) -> list[int]:
    ids = {tok.eos_token_id} if tok.eos_token_id is not None else set()
    configured = getattr(model.generation_config, "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [] if configured is None else [configured])
    return sorted(ids)


def generate(model, tok, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, max_new_tokens: int,
             sampling: dict, think: Think, stops: list[str] = ()) -> list[Generation]:
    """Generate one batch (prompts already ending in `think.prefill`, left-padded)."""
    eos = eos_token_ids(model, tok)
    tracker = ThinkTracker(tok, input_ids.shape[1], input_ids.shape[0], think)
    with torch.no_grad():
        out = model.generate(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=max_new_tokens,
                             logits_processor=LogitsProcessorList([_Budget(tracker, eos)]),
                             stopping_criteria=StoppingCriteriaList([_AnswerStops(tracker, tok, list(stops), eos)]),
                             eos_token_id=eos, pad_token_id=tok.pad_token_id, **sampling)
    gen = tracker.observe(out)
    return [_finish(tok, gen[b].tolist(), row, think, stops, eos, max_new_tokens)
            for b, row in enumerate(tracker.rows)]


def _finish(tok, ids: list[int], row: _Row, think: Think, stops, eos: list[int], limit: int) -> Generation:
    end = row.done_at if row.done_at is not None else len(ids)
    return from_text(tok, think.prefill + tok.decode(ids[:end], skip_special_tokens=False), stops,
                     think_tokens=row.count, forced_close=row.forced,
                     hit_limit=row.done_at is None and end >= limit)


def from_text(tok, text: str, stops, think_tokens: int, forced_close: bool, hit_limit: bool) -> Generation:
    """A Generation from a decoded output (special tokens still in it, the prefill in front)."""
    text = strip_special(tok, cut_at_stops(text, stops))
    answer, why = answer_for_metric(text)
    return Generation(text=text, thinking=split_thinking(text).thinking, answer=answer, no_answer=why,
                      think_tokens=think_tokens, forced_close=forced_close, hit_limit=hit_limit)


def cut_at_stops(text: str, stops) -> str:
    """Cut at the first stop sequence of the answer part (after the last </think>, or anywhere
    when no block was opened); a trace that never closes is kept whole."""
    split = split_thinking(text)
    if split.opened and not split.closed:
        return text
    start = text.rfind(THINK_CLOSE) + len(THINK_CLOSE) if split.closed else 0
    head, tail = text[:start], text[start:]
    for s in stops:
        if s:
            tail = tail.split(s)[0]
    return head + tail


def strip_special(tok, text: str) -> str:
    """Every special token's text removed except the think tags (what skip_special_tokens did, minus those)."""
    specials = set(tok.all_special_tokens) | {t.content for t in tok.added_tokens_decoder.values() if t.special}
    for s in sorted(specials - {THINK_OPEN, THINK_CLOSE}, key=len, reverse=True):
        text = text.replace(s, "")
    return text


def summarize(gens: list[Generation]) -> dict:
    """Counts over a set of generations: no answer (and why), forced closes, thinking length."""
    n = len(gens)
    return {"n": n, "unclosed": sum(g.no_answer == "unclosed" for g in gens),
            "no_answer": sum(g.no_answer is not None for g in gens),
            "forced_close": sum(g.forced_close for g in gens), "hit_limit": sum(g.hit_limit for g in gens),
            "think_tokens_mean": sum(g.think_tokens for g in gens) / n if n else 0.0}
