"""Preference rows of the DPO variants screened for issue 17, as JSON Lines a blend can read.

    python bench/dpo_pairs.py stop /tmp/prefs-stop.jsonl
    python jobs/curriculum.py --set seed=1 --stages pretrain,sft,reasoning,dpo \\
        --set 'stages.dpo.data.blend.sources=[{files: /tmp/prefs-stop.jsonl}]'

The default's pairs (`data/synthetic.preference_rows`) rotate a wrong answer, a malformed
`<think>` and rambling, one row in three each; a wrong answer's slip is carried through every
later line. The variants change only the rejected answers, everything else as the default:

- `stop`: the wrong trace stops at its slip and answers from it, so no right arithmetic after
  the slip is pushed down (DPO pushes down every token of the rejected answer).
- `wrong-5-of-6`: the same stop, five rows in six wrong (slips in a step's result, or in a number
  copied from the question, alternately), the sixth rotating through the format failures.

Their rows come from the default's generator with its slip (and, for `wrong-5-of-6`, its
rotation) swapped, so a variant's problems are the default's problem stream. Figures:
bench/results/demo_seeds_dpo_stop.json and demo_seeds_dpo_wrong5of6*.json.
"""

from __future__ import annotations

import argparse
import json
import random
from contextlib import contextmanager
from pathlib import Path

from tinyreason.data import synthetic
from tinyreason.data.world import Problem, format_answer, trace
from tinyreason.model.chat import THINK_CLOSE, THINK_OPEN


def slip_and_stop(p: Problem, rng: random.Random, copy: bool = False) -> tuple[list[str], str] | None:
    """The trace up to one step gone wrong, answered from that step: the step's result off by
    1, 2 or 10 (the wrong one of two numbers in a max/min), or with `copy` the number it copies
    from the question off by 1 to 3. None where that leaves the answer right, goes below zero,
    or the trace has other steps (compare, count)."""
    j = rng.randrange(len(p.steps))
    if not all(synthetic._ARITH.fullmatch(s) or synthetic._FOLD.fullmatch(s) for s in p.steps):
        return None
    add, fold = synthetic._ARITH.fullmatch(p.steps[j]), synthetic._FOLD.fullmatch(p.steps[j])
    if add:
        a, sign, n = int(add[1]), add[2], int(add[3])
        if copy:
            n = max(1, n + rng.choice((1, -1, 2, -2, 3)))
            wrong = a + n if sign == "+" else a - n
        else:
            wrong = int(add[4]) + rng.choice((1, -1, 2, 10, -10))
        last = f"{a} {sign} {n} = {wrong}"
    else:
        op, acc, x = fold[1], int(fold[2]), int(fold[3])
        pick = max if op == "max" else min
        if copy:
            x = max(1, x + rng.choice((1, -1, 2, -2, 3)))
            wrong = pick(acc, x)
        else:
            wrong = x if pick(acc, x) == acc else acc
        last = f"{op}({acc}, {x}) = {wrong}"
    if wrong < 0 or str(wrong) == p.answer or last == p.steps[j]:
        return None
    return [*p.steps[:j], last], str(wrong)


def _last_step_slip(p: Problem, rng: random.Random) -> str:
    if p.task == "compare":
        wrong = synthetic._distractors(p)[0]
    else:
        a = int(p.answer)
        wrong = str(rng.choice([x for x in (a + 1, a + 2, a - 1, a - 2) if x >= 0]))
    return trace((*p.steps[:-1], p.steps[-1][: -len(p.answer)] + wrong), wrong)


def rejected_wrong_5_of_6(p: Problem, i: int, rng: random.Random) -> str:
    body, answer = "\n".join(p.steps), format_answer(p)
    if i % 6 < 5:
        slipped = slip_and_stop(p, rng, copy=i % 2 == 1)
        return trace(*slipped) if slipped else _last_step_slip(p, rng)
    variant = (i // 6) % 4
    if variant == 0:
        return f"{THINK_OPEN}\n{body}\n{answer}"
    if variant == 1:
        block = f"{THINK_OPEN}\n{body}\n{THINK_CLOSE}\n"
        return f"{block}{block}{answer}"
    if variant == 2:
        return f"{answer}\n{THINK_OPEN}\n{body}\n{THINK_CLOSE}"
    return trace(p.steps * rng.randint(3, 4), p.answer)


def _stop_only(p: Problem, rng: random.Random):  # the default's rotation, its slip stopping
    j = rng.randrange(len(p.steps))
    adds = [synthetic._ARITH.fullmatch(s) for s in p.steps]
    folds = [synthetic._FOLD.fullmatch(s) for s in p.steps]
    if all(adds):
        m = adds[j]
        wrong = int(m[4]) + rng.choice((1, -1, 2, 10, -10))
        if wrong < 0:
            return None
        last = f"{m[1]} {m[2]} {m[3]} = {wrong}"
    elif all(folds):
        m = folds[j]
        acc, x = int(m[2]), int(m[3])
        wrong = x if (max if m[1] == "max" else min)(acc, x) == acc else acc
        last = f"{m[1]}({acc}, {x}) = {wrong}"
    else:
        return None
    return ([*p.steps[:j], last], str(wrong)) if str(wrong) != p.answer else None


@contextmanager
def _swapped(name: str, fn):
    old = getattr(synthetic, name)
    setattr(synthetic, name, fn)
    try:
        yield
    finally:
        setattr(synthetic, name, old)


VARIANTS = {"stop": ("_slip", _stop_only), "wrong-5-of-6": ("_rejected", rejected_wrong_5_of_6)}


def rows(variant: str, n: int = 1000, seed: int = 0) -> list[dict]:
    with _swapped(*VARIANTS[variant]):
        return synthetic.preference_rows(n, seed)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("variant", choices=sorted(VARIANTS))
    p.add_argument("out", type=Path)
    p.add_argument("-n", type=int, default=1000, help="rows (default 1000: the default's entries)")
    a = p.parse_args(argv)
    a.out.write_text("".join(json.dumps(r) + "\n" for r in rows(a.variant, a.n)))
    print(f"{a.n} {a.variant} rows in {a.out}")


if __name__ == "__main__":
    main()
