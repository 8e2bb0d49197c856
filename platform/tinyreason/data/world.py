"""The synthetic world's problems: four task families, their reasoning steps, and the split.

One small world (eight children with their pets, places and colours) and four task families
(add/sub chains, comparisons, counts, list operations), each problem with the steps of its
worked solution. A hash of the problem's key puts 12% of problems in the held-out split, so no
training row ever holds a held-out number combination; data/phrasings.py words problems with
the training templates or with a held-out template family no training row uses. The rows of
every stage are made from these problems in data/synthetic.py.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from itertools import islice
from typing import Iterator

from tinyreason.data import phrasings
from tinyreason.model.chat import THINK_CLOSE, THINK_OPEN

TASKS: tuple[str, ...] = ("add_sub", "compare", "count", "list_op")
EVAL_SEED = 20261122  # fixed: every stage and every run is scored on the same held-out problems
SPLITS = ("train", "heldout")

# 12% of keys are held out. The smallest family (compare, 4 kinds x 9,900 pairs) still
# leaves ~4.7k unseen problems, so up to ~19k mixed held-out rows; training keeps 88%.
HELDOUT_PER_MILLE = 120
# Drawing a held-out problem succeeds ~12% of the time; 20000 straight failures
# means the family's unseen pool is exhausted, which must fail loudly, not hang.
MAX_DRAWS = 20_000

# name -> (pronoun, pet, favourite place, favourite colour). Stories state these
# facts and chat small talk asks about them, so chat answers are learnable.
WORLD = {
    "Mia": ("she", "cat", "park", "red"),
    "Tom": ("he", "dog", "beach", "blue"),
    "Lily": ("she", "bird", "garden", "green"),
    "Ben": ("he", "fish", "forest", "yellow"),
    "Anna": ("she", "frog", "lake", "pink"),
    "Sam": ("he", "duck", "farm", "orange"),
    "Zoe": ("she", "dog", "school", "purple"),
    "Max": ("he", "cat", "hill", "brown"),
}
OBJECTS = ("apples", "balls", "books", "cookies", "stickers", "shells", "pens", "cars")
WORDS = ("cat", "dog", "bird", "fish", "frog", "duck")
FEELINGS = ("happy", "sad", "scared", "proud", "tired", "excited")
THINGS = ("ball", "kite", "box", "boat", "flower", "hat")


@dataclass(frozen=True)
class Problem:
    task: str  # family name, one of TASKS
    question: str  # user-facing text
    steps: tuple[str, ...]  # short reasoning steps; the last one ends with the answer
    answer: str  # final answer, e.g. "5", "52", "yes"
    key: str  # task + numbers/items, independent of phrasing: "add_sub:4+3-2"


def derive_seed(seed: int, name: str) -> int:
    """A per-stage seed, so chat and reasoning rows are not the same problems in order."""
    return int(hashlib.sha256(f"{seed}/{name}".encode()).hexdigest()[:16], 16)


def _join(xs) -> str:
    return ", ".join(str(x) for x in xs)


# ---------------------------------------------------------------- task families
# add_sub and list_op are ladders whose direct answer composes 2-3 easy steps (add or
# take a digit, compare two numbers): a model that writes the steps out does one easy
# thing per line, one that answers at once must do them all in one forward pass.
# compare is a one-step family and count a control whose trace carries no work.

_ADD = ("buys {n} more", "finds {n} more", "gets {n} more")
_SUB = ("gives away {n}", "loses {n}", "sells {n}")


def _add_sub_text(frame: tuple, name: str, p: str, start: int, obj: str, verbs: list[str]) -> str:
    opening, first, later, ask = frame
    f = dict(name=name, p=p, P=p.capitalize(), start=start, obj=obj)
    parts = [opening.format(**f), first.format(v=verbs[0], **f)]
    parts += [later.format(v=v, **f) for v in verbs[1:]]
    return "".join(parts) + ask.format(**f)


def _add_sub(rng: random.Random, phrasing: str = "train") -> Problem:
    # 2..3 operations of 1..9 from a start of 2..25: every written step adds or takes
    # one digit, while the direct answer needs all of them composed. Never below zero.
    # (4 operations: a step right 80% of the time leaves a chain right 41% of the time.)
    start = total = rng.randint(2, 25)
    ops, steps = [], []
    for _ in range(rng.randint(2, 3)):
        if total == 0 or rng.random() < 0.5:
            sign, n = "+", rng.randint(1, 9)
        else:
            sign, n = "-", rng.randint(1, min(9, total))
        new = total + n if sign == "+" else total - n
        steps.append(f"{total} {sign} {n} = {new}")
        ops.append((sign, n))
        total = new
    name, obj = rng.choice(list(WORLD)), rng.choice(OBJECTS)
    verbs = [rng.choice(_ADD if s == "+" else _SUB).format(n=n) for s, n in ops]
    frame = rng.choice(phrasings.ADD_SUB[phrasing])
    question = _add_sub_text(frame, name, WORLD[name][0], start, obj, verbs)
    key = f"add_sub:{start}" + "".join(f"{s}{n}" for s, n in ops)
    return Problem("add_sub", question, tuple(steps), str(total), key)


def _compare(rng: random.Random, phrasing: str = "train") -> Problem:
    # 0..99 gives 100*99 ordered pairs per kind (~40k keys): with digits as single
    # tokens the model compares tens, then units, rather than memorising pairs.
    kind = rng.choice(tuple(phrasings.COMPARE[phrasing]))
    a, b = rng.sample(range(100), 2)
    hi, lo = max(a, b), min(a, b)
    # The first line keeps the question's order: copy a, compare, copy b.
    rel = f"{a} > {b}" if a > b else f"{a} < {b}"
    if kind == "max":
        steps, answer = (rel, f"so the larger is {hi}"), str(hi)
    elif kind == "min":
        steps, answer = (rel, f"so the smaller is {lo}"), str(lo)
    else:
        answer = "yes" if (a > b) == (kind == "gt") else "no"
        steps = (rel, f"so {answer}")
    question = rng.choice(phrasings.COMPARE[phrasing][kind]).format(a=a, b=b)
    return Problem("compare", question, steps, answer, f"compare:{kind}:{a},{b}")


def _count(rng: random.Random, phrasing: str = "train") -> Problem:
    # Lists of 3..6 words from 6 animals; 15% of targets are absent so "0" is a real
    # answer. The control family: its trace only names the target. A running tally
    # ("dog 1, cat, dog 2") needs the whole list copied word by word, which the tiny
    # model could not learn in budget (14% against 52% answering at once).
    items = [rng.choice(WORDS) for _ in range(rng.randint(3, 6))]
    absent = [w for w in WORDS if w not in items]
    target = rng.choice(absent) if absent and rng.random() < 0.15 else rng.choice(items)
    k = items.count(target)
    question = rng.choice(phrasings.COUNT[phrasing]).format(t=target, items=_join(items))
    key = f"count:{target}:{','.join(items)}"
    return Problem("count", question, (f"looking for {target}", f"so the count is {k}"), str(k), key)


def _list_op(rng: random.Random, phrasing: str = "train") -> Problem:
    # 3..4 items, folded left to right one pair per line: sums of digits 1..9 (each line
    # adds one digit, as in add_sub), max/min of 1..30 (each line one comparison).
    op = rng.choice(tuple(phrasings.LIST_OP[phrasing]))
    hi = 9 if op == "sum" else 30
    xs = [rng.randint(1, hi) for _ in range(rng.randint(3, 4))]
    acc, steps = xs[0], []
    for x in xs[1:]:
        new = acc + x if op == "sum" else (max if op == "max" else min)(acc, x)
        steps.append(f"{acc} + {x} = {new}" if op == "sum" else f"{op}({acc}, {x}) = {new}")
        acc = new
    question = rng.choice(phrasings.LIST_OP[phrasing][op]).format(l=_join(xs))
    return Problem("list_op", question, tuple(steps), str(acc), f"list_op:{op}:{','.join(map(str, xs))}")


_MAKERS = {"add_sub": _add_sub, "compare": _compare, "count": _count, "list_op": _list_op}


def make_problem(rng: random.Random, task: str, phrasing: str = "train") -> Problem:
    """One problem of a family, worded with a training or a held-out template."""
    if task not in _MAKERS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    return _MAKERS[task](rng, phrasings.check(phrasing))


def is_heldout(problem: Problem) -> bool:
    """Split on a hash of the key, so a phrasing change never moves a problem across."""
    digest = hashlib.sha256(problem.key.encode()).hexdigest()
    return int(digest[:8], 16) % 1000 < HELDOUT_PER_MILLE


def check_tasks(tasks) -> tuple[str, ...]:
    """A subset of the families, in TASKS order (so a list's order never changes the rows)."""
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        raise ValueError(f"tasks {list(tasks)!r}: expected a non-empty list of task families from {', '.join(TASKS)}"
                         + (f"; unknown: {', '.join(map(str, unknown))}" if unknown else ""))
    return tuple(t for t in TASKS if t in set(tasks))


def problem_stream(rng: random.Random, split: str = "train", phrasing: str = "train",
                   tasks: tuple[str, ...] = TASKS) -> Iterator[Problem]:
    """Endless problems of one split; `tasks` in shuffled blocks, one of each family, so any
    k blocks hold exactly k of each. Held-out problems never repeat a key. All families (the
    default) give the stream every stage's rows have always been drawn from."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r}; expected one of {SPLITS}")
    tasks = check_tasks(tasks)
    want, seen = split == "heldout", set()
    while True:
        order = list(tasks)
        rng.shuffle(order)
        for task in order:
            for _ in range(MAX_DRAWS):
                p = make_problem(rng, task, phrasing)
                if is_heldout(p) == want and p.key not in seen:
                    break
            else:
                raise RuntimeError(f"{task}: no new {split} problem in {MAX_DRAWS} draws "
                                   f"({len(seen)} unique so far); ask for fewer rows")
            if want:
                seen.add(p.key)
            yield p


def problems(n: int, seed: int, split: str = "train", phrasing: str = "train") -> list[Problem]:
    """Training problems are only ever worded with training templates."""
    if split == "train" and phrasing != "train":
        raise ValueError("the held-out phrasing is for held-out problems only; use split='heldout'")
    name = f"problems/{split}" + ("" if phrasing == "train" else f"/{phrasing}")
    return list(islice(problem_stream(random.Random(derive_seed(seed, name)), split, phrasing), n))


def format_answer(problem: Problem) -> str:
    return f"The answer is {problem.answer}."


def trace(steps, answer: str) -> str:
    return f"{THINK_OPEN}\n" + "\n".join(steps) + f"\n{THINK_CLOSE}\nThe answer is {answer}."


def format_reasoning(problem: Problem) -> str:
    return trace(problem.steps, problem.answer)
