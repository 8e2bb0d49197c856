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

from tinyreason.model.chat import SYSTEM_PROMPT, THINK_CLOSE, THINK_OPEN

TASKS: tuple[str, ...] = ("add_sub", "compare", "count", "list_op")
EVAL_SEED = 20261122  # fixed: every stage and every run is scored on the same held-out problems
SPLITS = ("train", "heldout")

# 12% of keys are held out. The smallest family (add_sub, 5.5k keys) still leaves
# 672 unseen problems, so up to ~2.6k mixed held-out rows; training keeps 88%.
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

_ADD = ("buys {n} more", "finds {n} more", "gets {n} more")
_SUB = ("gives away {n}", "loses {n}", "sells {n}")


def _add_sub_text(form: int, name: str, p: str, start: int, obj: str, verbs: list[str]) -> str:
    P = p.capitalize()
    if form == 0:
        rest = "".join(f" Then {p} {v}." for v in verbs[1:])
        body, ask = f"{name} has {start} {obj}. {P} {verbs[0]}.{rest}", f"does {name} have now"
    elif form == 1:
        rest = "".join(f" Next {p} {v}." for v in verbs[1:])
        body = f"{name} starts with {start} {obj}. First {p} {verbs[0]}.{rest}"
        ask = f"does {p} have at the end"
    else:
        rest = "".join(f", and then {p} {v}" for v in verbs[1:])
        body = f"{name} has {start} {obj} in a bag. {P} {verbs[0]}{rest}."
        ask = "are in the bag now"
    return f"{body} How many {obj} {ask}?"


def _add_sub(rng: random.Random) -> Problem:
    # Start 2..20 and steps of 1..9 keep every running total within 0..38: numbers a
    # 2k-token BPE holds as one or two tokens. Never below zero, so no negatives.
    start = total = rng.randint(2, 20)
    ops, steps = [], []
    for _ in range(rng.randint(1, 2)):
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
    question = _add_sub_text(rng.randrange(3), name, WORLD[name][0], start, obj, verbs)
    key = f"add_sub:{start}" + "".join(f"{s}{n}" for s, n in ops)
    return Problem("add_sub", question, tuple(steps), str(total), key)


_COMPARE = {
    "max": ("Which is larger, {a} or {b}?", "Which number is bigger: {a} or {b}?"),
    "min": ("Which is smaller, {a} or {b}?", "Which number is less: {a} or {b}?"),
    "gt": ("Is {a} bigger than {b}?", "Is {a} larger than {b}?"),
    "lt": ("Is {a} smaller than {b}?", "Is {a} less than {b}?"),
}


def _compare(rng: random.Random) -> Problem:
    # 0..60 gives 61*60 ordered pairs per kind (~14.6k keys): one- and two-digit
    # numbers, so the model must compare digits, not just memorise a few pairs.
    kind = rng.choice(tuple(_COMPARE))
    a, b = rng.sample(range(61), 2)
    hi, lo = max(a, b), min(a, b)
    if kind == "max":
        steps, answer = (f"{hi} > {lo}", f"so the larger is {hi}"), str(hi)
    elif kind == "min":
        steps, answer = (f"{lo} < {hi}", f"so the smaller is {lo}"), str(lo)
    else:
        answer = "yes" if (a > b) == (kind == "gt") else "no"
        steps = (f"{a} > {b}" if a > b else f"{a} < {b}", f"so {answer}")
    question = rng.choice(_COMPARE[kind]).format(a=a, b=b)
    return Problem("compare", question, steps, answer, f"compare:{kind}:{a},{b}")


_COUNT = (
    "How many times does '{t}' appear in: {items}?",
    "Count how many times '{t}' is in this list: {items}.",
    "In the list {items}, how many times do you see '{t}'?",
)


def _count(rng: random.Random) -> Problem:
    # Lists of 3..6 words from 6 animals; 15% of targets are absent so "0" is a
    # real answer the model has to produce rather than a count it never sees.
    items = [rng.choice(WORDS) for _ in range(rng.randint(3, 6))]
    absent = [w for w in WORDS if w not in items]
    target = rng.choice(absent) if absent and rng.random() < 0.15 else rng.choice(items)
    pos = [str(i + 1) for i, w in enumerate(items) if w == target]
    if not pos:
        where = f"{target} is not in the list"
    elif len(pos) == 1:
        where = f"{target} is item {pos[0]}"
    else:
        where = f"{target} is items {', '.join(pos[:-1])} and {pos[-1]}"
    question = rng.choice(_COUNT).format(t=target, items=_join(items))
    key = f"count:{target}:{','.join(items)}"
    return Problem("count", question, (where, f"so the count is {len(pos)}"), str(len(pos)), key)


_LIST = {
    "max": ("What is the largest number in {l}?", "Find the biggest number: {l}."),
    "min": ("What is the smallest number in {l}?", "Find the smallest number: {l}."),
    "sum": ("What is the sum of {l}?", "Add up these numbers: {l}."),
    "last": ("What is the last number in {l}?", "Which number comes last: {l}?"),
}


def _list_op(rng: random.Random) -> Problem:
    # Items 0..20; sums take exactly 3 items so results stay within 0..60 and the
    # trace is two additions, the other ops take 3-4 items.
    op = rng.choice(tuple(_LIST))
    xs = [rng.randint(0, 20) for _ in range(3 if op == "sum" else rng.randint(3, 4))]
    if op in ("max", "min"):
        ans = max(xs) if op == "max" else min(xs)
        word = "largest" if op == "max" else "smallest"
        steps = (f"sorted: {_join(sorted(xs))}", f"the {word} is {ans}")
    elif op == "sum":
        ans, parts = xs[0], []
        for x in xs[1:]:
            parts.append(f"{ans} + {x} = {ans + x}")
            ans += x
        steps = tuple(parts)
    else:
        ans, steps = xs[-1], (f"the list has {len(xs)} items", f"item {len(xs)} is {xs[-1]}")
    question = rng.choice(_LIST[op]).format(l=_join(xs))
    return Problem("list_op", question, steps, str(ans), f"list_op:{op}:{','.join(map(str, xs))}")


_MAKERS = {"add_sub": _add_sub, "compare": _compare, "count": _count, "list_op": _list_op}


def make_problem(rng: random.Random, task: str) -> Problem:
    if task not in _MAKERS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    return _MAKERS[task](rng)


def is_heldout(problem: Problem) -> bool:
    """Split on a hash of the key, so a phrasing change never moves a problem across."""
    digest = hashlib.sha256(problem.key.encode()).hexdigest()
    return int(digest[:8], 16) % 1000 < HELDOUT_PER_MILLE


def _stream(rng: random.Random, split: str = "train") -> Iterator[Problem]:
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
                p = make_problem(rng, task)
                if is_heldout(p) == want and p.key not in seen:
                    break
            else:
                raise RuntimeError(f"{task}: no new {split} problem in {MAX_DRAWS} draws "
                                   f"({len(seen)} unique so far); ask for fewer rows")
            if want:
                seen.add(p.key)
            yield p


def problems(n: int, seed: int, split: str = "train") -> list[Problem]:
    return list(islice(_stream(random.Random(_derive(seed, f"problems/{split}")), split), n))


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
    lead = rng.choice(("Let's think.", "Step by step."))
    return f"Question: {p.question}\nAnswer: {lead} {'. '.join(p.steps)}. {format_answer(p)}"


def pretrain_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(_derive(seed, "pretrain"))
    stream, rows = _stream(rng), []
    for i in range(n):
        # 3 rows in 5 are stories (60%): language first, but 40% reasoning text
        # teaches the digits and "The answer is" pattern before chat SFT starts.
        if i % 5 < 3:
            text = _story(rng)
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


def _rejected(p: Problem, i: int, rng: random.Random) -> str:
    # Rotation by row index, so any 9 consecutive rows hold every failure mode and
    # every malformed variant: DPO sees each error type at a steady 1-in-3 rate.
    mode, body, answer = i % 3, "\n".join(p.steps), format_answer(p)
    if mode == 0:  # arithmetic slip in the last step, carried into the final answer
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
    """GRPO prompts from the training split: the question as the reasoning stages see it, and
    the gold answer the correctness reward checks."""
    stream = _stream(random.Random(_derive(seed, "prompts")))
    return [{"prompt": _messages(p.question, "")[:2], "answer": p.answer} for p in islice(stream, n)]


def eval_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(_derive(seed, "eval"))
    rows = []
    for p in islice(_stream(rng, "heldout"), n):
        choices = [p.answer, *_distractors(p)[:3]]
        rng.shuffle(choices)
        rows.append({
            "id": f"{p.task}-{hashlib.sha256(p.key.encode()).hexdigest()[:12]}",
            "task": p.task,
            "question": p.question,
            "answer": p.answer,
            "choices": choices,
            "gold": choices.index(p.answer),
        })
    return rows


# The generators a blend source can name (`synthetic: <name>`), each with the row schema it makes
GENERATORS = {
    "pretrain": (pretrain_rows, "text"),
    "chat": (chat_rows, "chat"),
    "reasoning": (reasoning_rows, "reasoning"),
    "preference": (preference_rows, "preference"),
    "prompts": (prompt_rows, "prompt"),
}
