"""How the synthetic world's questions are worded: training templates and a held-out family.

Every task family has a few training phrasings and two held-out ones that no training
generator (pre-training paragraphs, chat, <think> traces, preference pairs, GRPO prompts)
ever uses. The held-out family reuses the training vocabulary (names, verbs, "larger",
"smallest") in new sentence frames, so scoring on it asks whether a model learned the
task or the template. Each held-out frame carries a marker phrase (`HELDOUT_MARKERS`)
that appears nowhere in training text; tests/unit/test_synthetic.py scans for them.

Fields: {name} {p} {P} (pronoun, capitalised) {start} {obj} {a} {b} {t} (count target)
{items} {l} (a list). add_sub frames are (opening, first op, later op, question).
"""

from __future__ import annotations

PHRASINGS = ("train", "heldout")

ADD_SUB = {
    "train": (
        ("{name} has {start} {obj}.", " {P} {v}.", " Then {p} {v}.", " How many {obj} does {name} have now?"),
        ("{name} starts with {start} {obj}.", " First {p} {v}.", " Next {p} {v}.",
         " How many {obj} does {p} have at the end?"),
        ("{name} has {start} {obj} in a bag.", " {P} {v}", ", and then {p} {v}", ". How many {obj} are in the bag now?"),
        ("{name} had {start} {obj} this morning.", " Later {p} {v}.", " Later {p} {v}.",
         " How many {obj} does {name} have left?"),
        ("There are {start} {obj} in {name}'s box.", " {name} {v}.", " Then {name} {v}.", " How many {obj} are in the box now?"),
    ),
    "heldout": (
        ("At first, {name} owns {start} {obj}.", " After that, {p} {v}.", " After that, {p} {v}.",
         " What is the number of {obj} {name} has in the end?"),
        ("{name} holds {start} {obj}", "; {p} {v}", "; {p} {v}", ". How many {obj} does {name} end up with?"),
    ),
}

COMPARE = {
    "train": {
        "max": ("Which is larger, {a} or {b}?", "Which number is bigger: {a} or {b}?", "Tell me the larger number: {a} or {b}."),
        "min": ("Which is smaller, {a} or {b}?", "Which number is less: {a} or {b}?", "Tell me the smaller number: {a} or {b}."),
        "gt": ("Is {a} bigger than {b}?", "Is {a} larger than {b}?", "Is the number {a} bigger than {b}?"),
        "lt": ("Is {a} smaller than {b}?", "Is {a} less than {b}?", "Is the number {a} smaller than {b}?"),
    },
    "heldout": {
        "max": ("Of {a} and {b}, which one is larger?", "Pick the bigger number out of {a} and {b}."),
        "min": ("Of {a} and {b}, which one is smaller?", "Pick the smaller number out of {a} and {b}."),
        "gt": ("{a} is bigger than {b}: yes or no?", "Of {a} and {b}, is the first one larger?"),
        "lt": ("{a} is smaller than {b}: yes or no?", "Of {a} and {b}, is the first one smaller?"),
    },
}

COUNT = {
    "train": (
        "How many times does '{t}' appear in: {items}?",
        "Count how many times '{t}' is in this list: {items}.",
        "In the list {items}, how many times do you see '{t}'?",
        "The animals are {items}. How many are '{t}'?",
    ),
    "heldout": (
        "Here is a list: {items}. How often is '{t}' in it?",
        "Look at {items}. How often do you see '{t}' there?",
    ),
}

LIST_OP = {
    "train": {
        "max": ("What is the largest number in {l}?", "Find the biggest number: {l}.",
                "The numbers are {l}. What is the largest?"),
        "min": ("What is the smallest number in {l}?", "Find the smallest number: {l}.",
                "The numbers are {l}. What is the smallest?"),
        "sum": ("What is the sum of {l}?", "Add up these numbers: {l}.", "The numbers are {l}. What is the sum?"),
    },
    "heldout": {
        "max": ("Here are some numbers: {l}. Which one is the largest?", "Look at {l}. Which one is the biggest?"),
        "min": ("Here are some numbers: {l}. Which one is the smallest?", "Look at {l}. Which one is the smallest?"),
        "sum": ("Here are some numbers: {l}. What is their sum?", "Look at {l}. What do they add up to?"),
    },
}

# One of these is in every held-out frame and in no training frame, story, chat turn or trace.
HELDOUT_MARKERS = ("At first", "After that", "end up with", "Of ", "Pick the", "yes or no", "Here is a list",
                   "How often", "Look at", "Here are some numbers", "which one", "Which one")


def check(phrasing: str) -> str:
    if phrasing not in PHRASINGS:
        raise ValueError(f"phrasing={phrasing!r}; expected one of {PHRASINGS}")
    return phrasing
