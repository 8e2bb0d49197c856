"""Checkable arithmetic in a reasoning trace, and the `step_arithmetic` GRPO reward built on it.

A trace's claims (`12 + 3 = 15`, GSM8K's `<<48/2=24>>`, `max(23, 4) = 23`, `78 > 10`) are
checked by exact arithmetic, and each is grounded when its operands are numbers of the prompt
or results of earlier claims. The reward is the share of claims both true and grounded: partial
credit for the work, where correctness (rewards.py) only sees the final answer. Pure: no Ray,
no torch. Called as TRL 1.16 calls every reward (rewards.py says how).
"""

from __future__ import annotations

import operator
import re
from fractions import Fraction
from typing import Iterable

from tinyreason import answers
from tinyreason.completions import completion_text, prompt_text

# A claim the trace makes that can be checked by arithmetic: `a + b = c` (also `-`, `*`, `x`, `/`,
# and GSM8K's calculator form `<<a*b=c>>`), `max(a, b) = c` / `min(a, b) = c`, and `a > b` / `a < b`.
# One operation per claim: `2 * 3 + 4 = 10` is not read, rather than read wrongly as `3 + 4 = 10`.
_NUM = r"-?\d+(?:,\d{3})*(?:\.\d+)?"
_EQUATION_RE = re.compile(rf"(?<![\w.])({_NUM})\s*([-+*/x\u00d7\u00f7])\s*({_NUM})\s*=\s*({_NUM})(?![\w.]*\d)")
_FUNCTION_RE = re.compile(rf"\b(max|min)\(\s*({_NUM})\s*,\s*({_NUM})\s*\)\s*=\s*({_NUM})")
_RELATION_RE = re.compile(rf"(?<![\w.])({_NUM})\s*([<>])\s*({_NUM})(?![\w.])")
_NUMBER_RE = re.compile(rf"(?<![\w.]){_NUM}")
_CHAINED_RE = re.compile(r"(?:[-+*/\u00d7\u00f7]|\dx|\d\s+x)\s*$")  # an operation just before a claim's first number
_OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "x": operator.mul, "\u00d7": operator.mul,
        "/": operator.truediv, "\u00f7": operator.truediv}


def _value(text: str) -> Fraction:
    return Fraction(text.replace(",", ""))


def _equal(exact: Fraction, written: str) -> bool:
    """`written` states `exact`, to the precision it is written in: 10/3 = 3.33 holds, 3.3 does too."""
    decimals = len(written.partition(".")[2])
    return abs(exact - _value(written)) * 2 * 10 ** decimals <= 1 if decimals else exact == _value(written)


def arithmetic_claims(thinking: str, given: Iterable[str] = ()) -> list[tuple[str, bool, bool]]:
    """Each checkable claim in `thinking`, in order, as (claim, true, grounded). Grounded: every
    operand is a number of `given` (the prompt's) or the result of an earlier claim, so that a
    true step about numbers the problem never had ("1 + 1 = 2") earns nothing."""
    known = {_value(n) for n in given}
    found = []  # (position, claim, operands, result text or None, truth)
    for m in _EQUATION_RE.finditer(thinking):
        if _CHAINED_RE.search(thinking, 0, m.start()):  # the tail of `2 * 3 + 4 = 10`: one operation per claim
            continue
        a, op, b, c = _value(m[1]), m[2], _value(m[3]), m[4]
        true = not (op in "/\u00f7" and b == 0) and _equal(_OPS[op](a, b), c)
        found.append((m.start(), m[0], (a, b), c, true))
    for m in _FUNCTION_RE.finditer(thinking):
        a, b, c = _value(m[2]), _value(m[3]), m[4]
        found.append((m.start(), m[0], (a, b), c, _equal((max if m[1] == "max" else min)(a, b), c)))
    taken = [range(pos, pos + len(claim)) for pos, claim, *_ in found]
    for m in _RELATION_RE.finditer(thinking):
        if not any(m.start() in span for span in taken):  # not the `<` of `<<a*b=c>>`
            a, b = _value(m[1]), _value(m[3])
            found.append((m.start(), m[0], (a, b), None, a > b if m[2] == ">" else a < b))
    claims = []
    for _, claim, operands, result, true in sorted(found, key=lambda f: f[0]):
        claims.append((claim, true, all(x in known for x in operands)))
        if result is not None:
            known.add(_value(result))
    return claims


def step_arithmetic(prompts: list | None, completions: list, **kwargs) -> list[float | None]:
    """Partial credit for the steps: the share of the trace's checkable claims (see
    `arithmetic_claims`) that are true and grounded in the prompt's numbers or earlier results.
    None (not applicable) when the trace makes no such claim. Rewards the work, not the answer:
    weight it below correctness, which alone says whether the chain came out right."""
    scores = []
    for i, c in enumerate(completions):
        split = answers.split_thinking(completion_text(c))
        given = _NUMBER_RE.findall(prompt_text(prompts[i] if prompts else None))
        claims = arithmetic_claims(split.thinking or "", given) if split.opened else []
        scores.append(sum(true and grounded for _, true, grounded in claims) / len(claims) if claims else None)
    return scores
