"""Reasoning-format health of model generations.

Tiny models after reasoning SFT fail in a few recognisable ways before their
benchmark scores move: they never close <think> (runaway thinking until the
token limit), open a second block, stop after </think> with no answer, or loop
on one phrase. These checks count those failures per output; `summarize` turns
a batch into the shares the curriculum report plots per stage.
"""

import math
import re
from dataclasses import dataclass

from tinyreason.model.chat import THINK_CLOSE, THINK_OPEN

NGRAM = 4

# The synthetic tasks and the TRLM traces end with "The answer is X."; search
# the last occurrence so a restated question earlier does not win.
_ANSWER_RE = re.compile(r"\bthe answer is\b\s*:?\s*", re.IGNORECASE)
# A sentence ends at . ! ? followed by a space or the end; "3.50" does not end one.
_SENTENCE_END_RE = re.compile(r"[.!?](?=\s|$)")
_TRAILING = " \t.,;:!?"


@dataclass
class FormatCheck:
    """Format health of one generated output."""

    well_formed: bool  # one <think>...</think> at the very start (after whitespace), no stray tags
    has_answer: bool  # non-empty text after the closing tag of a well-formed block
    think_tokens: int  # whitespace-separated words inside the first block (to the end if unclosed)
    truncated: bool  # hit the generation limit, or the last <think> is never closed
    repetition: float  # share of word 4-grams that repeat an earlier one, 0..1


def _repetition(words: list[str]) -> float:
    # 1 - unique/total: 0 for fresh text, near 1 for a loop ("a b c d" x10 -> 0.89).
    if len(words) < NGRAM:
        return 0.0
    grams = [tuple(words[i:i + NGRAM]) for i in range(len(words) - NGRAM + 1)]
    return 1.0 - len(set(grams)) / len(grams)


def check_output(text: str, hit_limit: bool = False) -> FormatCheck:
    """Check one generation; `hit_limit` is True when generation stopped at max_new_tokens."""
    opens, closes = text.count(THINK_OPEN), text.count(THINK_CLOSE)
    start = text.find(THINK_OPEN)
    end = text.find(THINK_CLOSE, start) if start >= 0 else -1
    well_formed = (
        opens == 1 and closes == 1 and end > start and text.lstrip().startswith(THINK_OPEN)
    )
    has_answer = well_formed and bool(text[end + len(THINK_CLOSE):].strip())
    if start < 0:
        think_tokens = 0
    else:
        # An unclosed block counts to the end: runaway thinking is what p90 should show.
        inside = text[start + len(THINK_OPEN):end if end >= 0 else len(text)]
        think_tokens = len(inside.split())
    unclosed = text.rfind(THINK_OPEN) > text.rfind(THINK_CLOSE)
    return FormatCheck(
        well_formed=well_formed,
        has_answer=has_answer,
        think_tokens=think_tokens,
        truncated=hit_limit or unclosed,
        repetition=_repetition(text.split()),
    )


def extract_answer(text: str) -> str:
    """The answer to score: text after the last </think> (all of it when there is
    none), stripped; "The answer is X." gives X without trailing punctuation."""
    cut = text.rfind(THINK_CLOSE)
    answer = (text[cut + len(THINK_CLOSE):] if cut >= 0 else text).strip()
    matches = list(_ANSWER_RE.finditer(answer))
    if not matches:
        return answer
    value = answer[matches[-1].end():].split("\n", 1)[0]
    sentence_end = _SENTENCE_END_RE.search(value)
    if sentence_end:
        value = value[:sentence_end.start()]
    # Markdown bold ("The answer is **42**.") is common in distilled traces.
    value = value.rstrip(_TRAILING).strip("*").rstrip(_TRAILING).strip()
    return value or answer


def _nearest_rank(sorted_values: list[int], pct: float) -> float:
    # Nearest-rank percentile: always an observed length, so report numbers
    # can be checked against a sample by eye.
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return float(sorted_values[rank - 1])


def summarize(checks: list[FormatCheck]) -> dict[str, float]:
    """Shares of each failure mode and think-length statistics over all outputs
    (outputs without a block count as 0 think tokens)."""
    n = len(checks)
    keys = ("well_formed", "has_answer", "truncated", "repetition", "think_tokens_mean",
            "think_tokens_p50", "think_tokens_p90", "think_tokens_max")
    if n == 0:
        return {**{k: 0.0 for k in keys}, "n": 0}
    lengths = sorted(c.think_tokens for c in checks)
    return {
        "well_formed": sum(c.well_formed for c in checks) / n,
        "has_answer": sum(c.has_answer for c in checks) / n,
        "truncated": sum(c.truncated for c in checks) / n,
        "repetition": sum(c.repetition for c in checks) / n,
        "think_tokens_mean": sum(lengths) / n,
        "think_tokens_p50": _nearest_rank(lengths, 50),
        "think_tokens_p90": _nearest_rank(lengths, 90),
        "think_tokens_max": float(lengths[-1]),
        "n": n,
    }
