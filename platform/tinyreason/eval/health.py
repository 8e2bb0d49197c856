"""Reasoning-format health of model generations.

Tiny models after reasoning SFT fail in a few recognisable ways before their
benchmark scores move: they never close <think> (runaway thinking until the
token limit), open a second block, stop after </think> with no answer, or loop
on one phrase. These checks count those failures per output; `summarize` turns
a batch into the shares the curriculum report plots per stage.
"""

import math
from dataclasses import dataclass

from tinyreason.answers import extract_final, split_thinking
from tinyreason.model.chat import THINK_CLOSE, THINK_OPEN

NGRAM = 4


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
    split = split_thinking(text)  # answers.py owns what well-formed means, for rewards too
    has_answer = split.well_formed and bool(split.answer.strip())
    start = text.find(THINK_OPEN)
    end = text.find(THINK_CLOSE, start) if start >= 0 else -1
    if start < 0:
        think_tokens = 0
    else:
        # An unclosed block counts to the end: runaway thinking is what p90 should show.
        inside = text[start + len(THINK_OPEN):end if end >= 0 else len(text)]
        think_tokens = len(inside.split())
    unclosed = split.opened and not split.closed
    return FormatCheck(
        well_formed=split.well_formed,
        has_answer=has_answer,
        think_tokens=think_tokens,
        truncated=hit_limit or unclosed,
        repetition=_repetition(text.split()),
    )


def extract_answer(text: str) -> str:
    """The answer to show and exact-match: text after the last </think> (all of
    it when there is none), stripped, reduced to its final answer by
    `answers.extract_final` (\\boxed{}, #### N, "The answer is X.") when it states one.

    Lenient where `answers.grade` is strict: an unclosed block keeps its text so
    report samples show what the model wrote, and exact match scores it wrong.
    """
    cut = text.rfind(THINK_CLOSE)
    answer = (text[cut + len(THINK_CLOSE):] if cut >= 0 else text).strip()
    return extract_final(answer) or answer


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
