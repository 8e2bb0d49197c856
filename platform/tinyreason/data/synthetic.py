"""The synthetic world's rows: a seeded, offline data generator for every curriculum stage.

One small world (eight children with their pets, places and colours, plus four
task families) feeds pre-training stories, chat SFT, <think> traces, DPO pairs and
held-out benchmarks. A ~5M-parameter model with a ~2k-token vocabulary sees the same
names and numbers at every stage, so each stage's gain shows up within minutes on CPU.
"""

from __future__ import annotations

import hashlib
import random
import re
from itertools import islice
from typing import Callable

from tinyreason.data.world import (FEELINGS, TASKS, THINGS, WORLD, Problem, derive_seed, format_answer,
                                   format_reasoning, problem_stream, trace)
from tinyreason.model.chat import SYSTEM_PROMPT, THINK_CLOSE, THINK_OPEN


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
    ~2M-parameter model do one per line; composing them is left to the <think> block. Add/take
    lines are 70%: in <think> traces, comparisons and max/min were right 76-81% of the time when
    add/take was 18% (bench/results/demo_ladder.json)."""
    lines = []
    for _ in range(rng.randint(8, 12)):
        kind = rng.random()
        if kind < 0.7:
            a, n = rng.randint(0, 60), rng.randint(1, 9)
            lines.append(f"{a} + {n} = {a + n}" if a < n or rng.random() < 0.5 else f"{a} - {n} = {a - n}")
        elif kind < 0.85:
            a, b = rng.sample(range(100), 2)
            lines.append(f"{a} > {b}" if a > b else f"{a} < {b}")
        else:
            a, b, op = rng.randint(1, 30), rng.randint(1, 30), rng.choice((max, min))
            lines.append(f"{op.__name__}({a}, {b}) = {op(a, b)}")
    return "\n".join(lines)


def pretrain_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(derive_seed(seed, "pretrain"))
    stream, rows = problem_stream(rng), []
    for i in range(n):
        # 1 row in 10 is a story (language and the world's facts for chat), 7 drills of
        # single steps, 2 worked problems. The step arithmetic is what the model runs short
        # of, and it forms late (bench/arithmetic_onset.py): with 1 drill in 5 only 12% of
        # `a + n =` facts came out right after pre-training, with 7 in 10 93-100%.
        if i % 10 == 0:
            text = _story(rng)
        elif i % 10 <= 7:
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


def chat_rows(n: int, seed: int, tasks: tuple[str, ...] = TASKS) -> list[dict]:
    rng = random.Random(derive_seed(seed, "chat"))
    stream, rows = problem_stream(rng, tasks=tasks), []
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


def reasoning_rows(n: int, seed: int, tasks: tuple[str, ...] = TASKS) -> list[dict]:
    stream = problem_stream(random.Random(derive_seed(seed, "reasoning")), tasks=tasks)
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


def _slip(p: Problem, rng: random.Random, copy: bool = False) -> tuple[list[str], str] | None:
    """The trace up to one step gone wrong, anywhere in the chain, answered from that step.
    Either the step's result slips (off by 1, 2 or 10 in an addition, the wrong one of two
    numbers in a max/min), or, with `copy`, the number it copies from the question does (off by
    1 to 3) and the line works on from the miscopy: the two errors the model makes most.

    It stops at the slip because DPO pushes down every token of the rejected answer: lines after
    the slip, carried on from the wrong number, are right arithmetic (`wrong + n = wrong + n`).
    None when the slipped line's number is the right final answer or goes below zero, and for
    traces of other steps (compare, count)."""
    j = rng.randrange(len(p.steps))
    add, fold = _ARITH.fullmatch(p.steps[j]), _FOLD.fullmatch(p.steps[j])
    if not (add or fold) or not all(_ARITH.fullmatch(s) or _FOLD.fullmatch(s) for s in p.steps):
        return None
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
    answer = str(wrong)
    if wrong < 0 or answer == p.answer or last == p.steps[j]:
        return None
    return [*p.steps[:j], last], answer


def _last_step_slip(p: Problem, rng: random.Random) -> str:
    """The right trace with its last line's number, and so the answer, wrong: compare's
    conclusion or count's tally, or a chain where no other slip changes the answer."""
    if p.task == "compare":
        wrong = _distractors(p)[0]
    else:
        a = int(p.answer)
        wrong = str(rng.choice([x for x in (a + 1, a + 2, a - 1, a - 2) if x >= 0]))
    return trace((*p.steps[:-1], p.steps[-1][: -len(p.answer)] + wrong), wrong)


def _rejected(p: Problem, i: int, rng: random.Random) -> str:
    """The worse answer of a preference pair. Five rows in six are wrong answers, the model's
    own kind of failure: a trace that slips once, in a result or in a number copied from the
    question. The sixth rotates through the format failures (no </think>, two think blocks,
    answer first, rambling), so DPO keeps the format <think> SFT taught. Before, one pair in
    three was wrong and the rest format failures, which the parent no longer makes: those took
    the update (rambling answers down 17 nats, malformed 4.8, wrong ones 0.1;
    bench/results/dpo_shift.json) and DPO added nothing."""
    if i % 6 < 5:  # rotation by row index: any 6 consecutive rows hold every kind
        slipped = _slip(p, rng, copy=i % 2 == 1)
        return trace(*slipped) if slipped else _last_step_slip(p, rng)
    variant = (i // 6) % 4
    if variant < 3:
        return malformed(p, variant)
    return trace(p.steps * rng.randint(3, 4), p.answer)  # rambling: right, but 3-4x long


def malformed(p: Problem, variant: int) -> str:
    """The right steps and answer in a broken <think>: 0 no </think>, 1 two think blocks, 2 the
    answer before the block."""
    body, answer = "\n".join(p.steps), format_answer(p)
    if variant == 0:
        return f"{THINK_OPEN}\n{body}\n{answer}"
    if variant == 1:
        block = f"{THINK_OPEN}\n{body}\n{THINK_CLOSE}\n"
        return f"{block}{block}{answer}"
    return f"{answer}\n{THINK_OPEN}\n{body}\n{THINK_CLOSE}"


def preference_rows(n: int, seed: int, rejected: Callable[[Problem, int, random.Random], str] | None = None,
                    tasks: tuple[str, ...] = TASKS) -> list[dict]:
    """Chosen: the right trace. Rejected: `rejected(problem, row index, rng)`, by default
    `_rejected`; bench/dpo_pairs.py passes the earlier rotations to rebuild their screens."""
    rejected = rejected or _rejected
    rng = random.Random(derive_seed(seed, "preference"))
    stream, rows = problem_stream(rng, tasks=tasks), []
    for i in range(n):
        p = next(stream)
        rows.append({
            "prompt": _messages(p.question, "")[:2],
            "chosen": [{"role": "assistant", "content": format_reasoning(p)}],
            "rejected": [{"role": "assistant", "content": rejected(p, i, rng)}],
        })
    return rows


def prompt_rows(n: int, seed: int, tasks: tuple[str, ...] = TASKS) -> list[dict]:
    """GRPO rows from the training split: the prompt (system + user) and the gold answer
    that a verifiable reward compares with the text after </think>."""
    stream = problem_stream(random.Random(derive_seed(seed, "prompt")), tasks=tasks)
    return [{"prompt": _messages(p.question, "")[:2], "answer": p.answer} for p in islice(stream, n)]


def eval_rows(n: int, seed: int, phrasing: str = "train") -> list[dict]:
    """Held-out problems as benchmark rows. phrasing="heldout" words them with the held-out
    template family, which no training row uses: the score on those says whether a gain
    holds on questions phrased in ways training never showed."""
    name = "eval" if phrasing == "train" else f"eval/{phrasing}"
    rng = random.Random(derive_seed(seed, name))
    tag = "" if phrasing == "train" else f"-{phrasing}"
    rows = []
    for p in islice(problem_stream(rng, "heldout", phrasing), n):
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


# The generators a blend source can name (`synthetic: <name>`), each with the row schema it makes
GENERATORS = {
    "pretrain": (pretrain_rows, "text"),
    "chat": (chat_rows, "chat"),
    "reasoning": (reasoning_rows, "reasoning"),
    "preference": (preference_rows, "preference"),
    "prompts": (prompt_rows, "prompt"),
}
# The generators that draw the world's problems: a source's `tasks` narrows them to some families
TASK_GENERATORS = ("chat", "reasoning", "preference", "prompts")
