"""The synthetic world: a seeded, offline data generator for every curriculum stage.

One small world (eight children with their pets, places and colours, plus four
task families) feeds pre-training stories, chat SFT, <think> traces, DPO pairs and
held-out benchmarks. A ~5M-parameter model with a ~2k-token vocabulary sees the same
names and numbers at every stage, so each stage's gain shows up within minutes on CPU.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from itertools import islice
from typing import Iterator

from tinyreason.data import phrasings
from tinyreason.model.chat import SYSTEM_PROMPT, THINK_CLOSE, THINK_OPEN

TASKS: tuple[str, ...] = ("add_sub", "compare", "count", "list_op")
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


def _derive(seed: int, name: str) -> int:
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


def _stream(rng: random.Random, split: str = "train", phrasing: str = "train") -> Iterator[Problem]:
    """Endless problems of one split; tasks in shuffled blocks of four, so any 4k rows
    hold exactly k of each family. Held-out problems never repeat a key."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r}; expected one of {SPLITS}")
    want, seen = split == "heldout", set()
    while True:
        order = list(TASKS)
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
    return list(islice(_stream(random.Random(_derive(seed, name)), split, phrasing), n))


def format_answer(problem: Problem) -> str:
    return f"The answer is {problem.answer}."


def _trace(steps, answer: str) -> str:
    return f"{THINK_OPEN}\n" + "\n".join(steps) + f"\n{THINK_CLOSE}\nThe answer is {answer}."


def format_reasoning(problem: Problem) -> str:
    return _trace(problem.steps, problem.answer)


# ---------------------------------------------------------------- stage rows

def _messages(user: str, assistant: str) -> list[dict]:
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": user},
        {"role": "assistant", "content": assistant},
    ]


def _story(rng: random.Random) -> str:
    name, friend = rng.sample(list(WORLD), 2)
    p, pet, place, color = WORLD[name]
    P, poss = p.capitalize(), "her" if p == "she" else "his"
    kid = "girl" if p == "she" else "boy"
    opening = rng.choice((f"Once upon a time, there was a little {kid} named {name}.",
                          f"One day, {name} went to the {place}."))
    middle = (
        f"{name} liked to go to the {place}.",
        f"{P} had a pet {pet}.",
        f"{P} played with {poss} {pet} all day.",
        f"{friend} came to play too.",
        f"{P} found a {color} {rng.choice(THINGS)} on the ground.",
        f"{name}'s favorite color is {color}.",
        f"It started to rain, so {p} ran home.",
        f"{P} felt very {rng.choice(FEELINGS)}.",
    )
    ending = rng.choice((f"In the end, {name} and {friend} were good friends.",
                         f"That night, {p} went to sleep with a smile.",
                         f"{name} loved the {place}."))
    # 3..6 sentences, the middle kept in written order so the story still reads in sequence.
    picked = sorted(rng.sample(range(len(middle)), rng.randint(1, 4)))
    return " ".join([opening, *(middle[i] for i in picked), ending])


def _paragraph(p: Problem, rng: random.Random) -> str:
    # One step per line, as inside <think>: the worked problems a model reads in
    # pre-training are the traces it will later write, in the same layout.
    lead = rng.choice(("Let's think.", "Step by step."))
    steps = "\n".join(p.steps)
    return f"Question: {p.question}\nAnswer: {lead}\n{steps}\n{format_answer(p)}"


def _drill(rng: random.Random) -> str:
    """8..12 lines of the single steps every trace is made of: add or take one digit,
    compare two numbers, max/min of two. Dense practice of the easy step is what lets a
    ~2M-parameter model do one per line; composing them is left to the <think> block."""
    lines = []
    for _ in range(rng.randint(8, 12)):
        kind = rng.random()
        if kind < 0.5:
            a, n = rng.randint(0, 60), rng.randint(1, 9)
            lines.append(f"{a} + {n} = {a + n}" if a < n or rng.random() < 0.5 else f"{a} - {n} = {a - n}")
        elif kind < 0.75:
            a, b = rng.sample(range(100), 2)
            lines.append(f"{a} > {b}" if a > b else f"{a} < {b}")
        else:
            a, b, op = rng.randint(1, 30), rng.randint(1, 30), rng.choice((max, min))
            lines.append(f"{op.__name__}({a}, {b}) = {op(a, b)}")
    return "\n".join(lines)


def pretrain_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(_derive(seed, "pretrain"))
    stream, rows = _stream(rng), []
    for i in range(n):
        # 1 row in 5 is a story (language and the world's facts for chat), 1 a drill of
        # single steps, 3 worked problems: reasoning text is ~85% of the tokens, since
        # at 8k rows the step arithmetic, not the prose, is what the model runs short of.
        if i % 5 == 0:
            text = _story(rng)
        elif i % 5 == 1:
            text = _drill(rng)
        else:
            text = "\n\n".join(_paragraph(next(stream), rng) for _ in range(rng.randint(1, 2)))
        rows.append({"text": text})
    return rows


_GREETINGS = (
    ("Hi!", "Hello! How can I help you today?"),
    ("Hello", "Hi there! What would you like to know?"),
    ("How are you?", "I am doing well, thank you. How can I help?"),
    ("What can you do?", "I can answer short questions and solve small math problems."),
    ("Who are you?", "I am a small helpful assistant."),
    ("Thank you!", "You are welcome!"),
    ("Good night!", "Good night! Sleep well."),
)


def _small_talk(rng: random.Random) -> tuple[str, str]:
    if rng.random() < 0.5:
        return rng.choice(_GREETINGS)
    name = rng.choice(list(WORLD))
    _, pet, place, color = WORLD[name]
    return rng.choice((
        (f"What pet does {name} have?", f"{name} has a pet {pet}."),
        (f"Where does {name} like to go?", f"{name} likes to go to the {place}."),
        (f"What is {name}'s favorite color?", f"{name}'s favorite color is {color}."),
    ))


def chat_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(_derive(seed, "chat"))
    stream, rows = _stream(rng), []
    for _ in range(n):
        # 20% small talk keeps it a chat model (greetings, world facts) while 80%
        # of the rows still teach the concise "The answer is N." format.
        if rng.random() < 0.2:
            user, reply = _small_talk(rng)
        else:
            p = next(stream)
            user, reply = p.question, format_answer(p)
        rows.append({"messages": _messages(user, reply)})
    return rows


def reasoning_rows(n: int, seed: int) -> list[dict]:
    stream = _stream(random.Random(_derive(seed, "reasoning")))
    return [{"messages": _messages(p.question, format_reasoning(p))} for p in islice(stream, n)]


def _distractors(p: Problem) -> list[str]:
    """Plausible wrong answers, most plausible first: the other number for compare,
    an off-by-one and the question's own numbers for arithmetic."""
    nums = [int(x) for x in re.findall(r"\d+", p.key)]
    if p.answer in ("yes", "no"):
        cands = ["no" if p.answer == "yes" else "yes", *map(str, nums)]
    else:
        a = int(p.answer)
        near = [a + 1, a - 1, a + 2, a - 2, a + 10, a + 3]
        ordered = [*nums, *near] if p.task == "compare" else [near[0], *nums, *near[1:]]
        cands = [str(x) for x in ordered if x >= 0]
    out: list[str] = []
    for c in cands:
        if c != p.answer and c not in out:
            out.append(c)
    return out


_ARITH = re.compile(r"(\d+) ([+-]) (\d+) = (\d+)")
_FOLD = re.compile(r"(max|min)\((\d+), (\d+)\) = (\d+)")


def _slip(p: Problem, rng: random.Random) -> tuple[list[str], str] | None:
    """The trace with one step gone wrong, anywhere in the chain, and the error carried
    through every later line, as a model's own slips are: off by 1, 2 or 10 in an
    addition, the wrong one of two numbers in a max/min. None when that leaves the
    final answer right (a later max can hide an early slip) or goes below zero."""
    j = rng.randrange(len(p.steps))
    adds = [_ARITH.fullmatch(s) for s in p.steps]
    folds = [_FOLD.fullmatch(s) for s in p.steps]
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


def _rejected(p: Problem, i: int, rng: random.Random) -> str:
    # Rotation by row index, so any 9 consecutive rows hold every failure mode and
    # every malformed variant: DPO sees each error type at a steady 1-in-3 rate.
    mode, body, answer = i % 3, "\n".join(p.steps), format_answer(p)
    if mode == 0 and (slipped := _slip(p, rng)):  # a slip mid-chain, carried into the answer
        return _trace(*slipped)
    if mode == 0:  # a slip in the last step (compare, count, or a chain where none carries)
        if p.task == "compare":
            wrong = _distractors(p)[0]
        else:
            a = int(p.answer)
            wrong = str(rng.choice([x for x in (a + 1, a + 2, a - 1, a - 2) if x >= 0]))
        last = p.steps[-1][: -len(p.answer)] + wrong
        return _trace((*p.steps[:-1], last), wrong)
    if mode == 1:  # malformed: no </think>, two think blocks, or answer first
        variant = (i // 3) % 3
        if variant == 0:
            return f"{THINK_OPEN}\n{body}\n{answer}"
        if variant == 1:
            block = f"{THINK_OPEN}\n{body}\n{THINK_CLOSE}\n"
            return f"{block}{block}{answer}"
        return f"{answer}\n{THINK_OPEN}\n{body}\n{THINK_CLOSE}"
    return _trace(p.steps * rng.randint(3, 4), p.answer)  # rambling: right, but 3-4x long


def preference_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(_derive(seed, "preference"))
    stream, rows = _stream(rng), []
    for i in range(n):
        p = next(stream)
        rows.append({
            "prompt": _messages(p.question, "")[:2],
            "chosen": [{"role": "assistant", "content": format_reasoning(p)}],
            "rejected": [{"role": "assistant", "content": _rejected(p, i, rng)}],
        })
    return rows


def prompt_rows(n: int, seed: int) -> list[dict]:
    """GRPO rows from the training split: the prompt (system + user) and the gold answer
    that a verifiable reward compares with the text after </think>."""
    stream = _stream(random.Random(_derive(seed, "prompt")))
    return [{"prompt": _messages(p.question, "")[:2], "answer": p.answer} for p in islice(stream, n)]


def eval_rows(n: int, seed: int, phrasing: str = "train") -> list[dict]:
    """Held-out problems as benchmark rows. phrasing="heldout" words them with the held-out
    template family, which no training row uses: the score on those says whether a gain
    holds on questions phrased in ways training never showed."""
    name = "eval" if phrasing == "train" else f"eval/{phrasing}"
    rng = random.Random(_derive(seed, name))
    tag = "" if phrasing == "train" else f"-{phrasing}"
    rows = []
    for p in islice(_stream(rng, "heldout", phrasing), n):
        choices = [p.answer, *_distractors(p)[:3]]
        rng.shuffle(choices)
        rows.append({
            "id": f"{p.task}{tag}-{hashlib.sha256(p.key.encode()).hexdigest()[:12]}",
            "task": p.task,
            "question": p.question,
            "answer": p.answer,
            "choices": choices,
            "gold": choices.index(p.answer),
        })
    return rows
