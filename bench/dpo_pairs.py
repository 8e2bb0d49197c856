"""Preference rows of the DPO variants screened for issue 17, as JSON Lines a blend can read.

    python bench/dpo_pairs.py carried /tmp/prefs-carried.jsonl
    python jobs/curriculum.py --set seed=1 --stages pretrain,sft,reasoning,dpo \\
        --set 'stages.dpo.data.blend.sources=[{files: /tmp/prefs-carried.jsonl}]'

The default's pairs (`data/synthetic.preference_rows`) are five wrong answers in six, each trace
stopping at its one slip, and one format failure in six (`wrong-5-of-6` here, screened from a file
of these rows before it became the default). The earlier pairs, kept here to re-run their screens:

- `carried`: the default before: a wrong answer, a malformed `<think>` and rambling, one row in
  three each, the wrong answer's slip carried through every later line.
- `stop`: the same rotation, the wrong trace stopping at its slip and answering from it.

Each comes from the generator's own problem stream with the slip and rotation of its time, so
its rows are the ones its screen trained on (checked byte for byte). Figures:
bench/results/demo_seeds_dpo_stop.json, demo_seeds_dpo_wrong5of6*.json, dpo_shift*.json.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from tinyreason.data import synthetic
from tinyreason.data.world import Problem, trace


def carried_slip(p: Problem, rng: random.Random) -> tuple[list[str], str] | None:
    """The earlier slip: one step off anywhere in the chain, the error carried through every
    later line. None when that leaves the answer right or goes below zero."""
    j = rng.randrange(len(p.steps))
    adds = [synthetic._ARITH.fullmatch(s) for s in p.steps]
    folds = [synthetic._FOLD.fullmatch(s) for s in p.steps]
    out: list[str] = []
    if all(adds):
        acc = int(adds[0][1])
        for k, m in enumerate(adds):
            n = int(m[3])
            new = acc + n if m[2] == "+" else acc - n
            if k == j:
                new += rng.choice((1, -1, 2, 10, -10))
            if new < 0:
                return None
            out.append(f"{acc} {m[2]} {n} = {new}")
            acc = new
    elif all(folds):
        acc = int(folds[0][2])
        for k, m in enumerate(folds):
            x, pick = int(m[3]), max if m[1] == "max" else min
            new = pick(acc, x) if k != j else (x if pick(acc, x) == acc else acc)
            out.append(f"{m[1]}({acc}, {x}) = {new}")
            acc = new
    else:
        return None
    answer = out[-1].rsplit(" ", 1)[1]
    return (out, answer) if answer != p.answer else None


def stop_slip(p: Problem, rng: random.Random) -> tuple[list[str], str] | None:
    """The first screen's slip: a step's result off, the trace stopping there."""
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


def one_in_three(slip):
    """The earlier rotation by row index: a wrong answer (`slip`, else the last step off), a
    malformed <think> (no </think>, two blocks, answer first), rambling."""
    def rejected(p: Problem, i: int, rng: random.Random) -> str:
        mode = i % 3
        if mode == 0 and (slipped := slip(p, rng)):
            return trace(*slipped)
        if mode == 0:
            return synthetic._last_step_slip(p, rng)
        if mode == 1:
            return synthetic.malformed(p, (i // 3) % 3)
        return trace(p.steps * rng.randint(3, 4), p.answer)
    return rejected


VARIANTS = {"carried": one_in_three(carried_slip), "stop": one_in_three(stop_slip), "wrong-5-of-6": None}


def rows(variant: str, n: int = 1000, seed: int = 0) -> list[dict]:
    return synthetic.preference_rows(n, seed, VARIANTS[variant])  # None: the default's own


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
