"""The synthetic world: determinism, correct answers, a leak-free held-out split, schemas.

Answers are re-derived by a checker written independently of the generator: it
parses question text back to a key and computes the answer from the key alone.
"""

import random
import re

import pytest

from tinyreason.data import synthetic as syn
from tinyreason.model.chat import SYSTEM_PROMPT, THINK_CLOSE, THINK_OPEN

TRAIN_FUNCS = [syn.pretrain_rows, syn.chat_rows, syn.reasoning_rows, syn.preference_rows]
ROW_FUNCS = [*TRAIN_FUNCS, syn.eval_rows]
N_LEAK = 3000  # rows per generator scanned for held-out leaks


def key_from_question(q: str) -> str | None:
    """Independent parser: question text -> canonical key, None for small talk."""
    which = r"Which (?:number )?is (larger|bigger|smaller|less)[,:] (\d+) or (\d+)\?"
    if m := re.fullmatch(which, q):
        kind = "max" if m[1] in ("larger", "bigger") else "min"
        return f"compare:{kind}:{m[2]},{m[3]}"
    if m := re.fullmatch(r"Is (\d+) (bigger|larger|smaller|less) than (\d+)\?", q):
        kind = "gt" if m[2] in ("bigger", "larger") else "lt"
        return f"compare:{kind}:{m[1]},{m[3]}"
    if m := re.search(r"'(\w+)'", q):
        items = re.search(r"(?:in: |list: |In the list )([a-z, ]+?)(?:[?.]$|, how)", q)[1]
        return f"count:{m[1]}:{items.replace(', ', ',')}"
    list_ops = {"max": "largest|biggest", "min": "smallest", "sum": "sum|Add up", "last": "last"}
    for op, words in list_ops.items():
        if re.search(rf"\b(?:{words})\b", q):
            return f"list_op:{op}:" + ",".join(re.findall(r"\d+", q))
    if m := re.search(r"(?:has|starts with) (\d+) \w+", q):
        ops = re.findall(r"(buys|finds|gets|gives away|loses|sells) (\d+)", q)
        signs = "".join(("+" if verb in ("buys", "finds", "gets") else "-") + n for verb, n in ops)
        return f"add_sub:{m[1]}{signs}"
    return None


def answer_from_key(key: str) -> str:
    """Independent checker: the answer computed from the key's numbers/items only."""
    task, rest = key.split(":", 1)
    if task == "add_sub":
        total, *ops = re.findall(r"[+-]?\d+", rest)
        total = int(total)
        for op in ops:
            total += int(op)
            assert 0 <= total <= 99, key
        return str(total)
    kind, args = rest.split(":")
    if task == "count":
        return str(args.split(",").count(kind))
    nums = [int(x) for x in args.split(",")]
    if task == "compare":
        a, b = nums
        return {"max": str(max(a, b)), "min": str(min(a, b)),
                "gt": "yes" if a > b else "no", "lt": "yes" if a < b else "no"}[kind]
    return str({"max": max, "min": min, "sum": sum, "last": lambda xs: xs[-1]}[kind](nums))


def heldout(key: str) -> bool:
    return syn.is_heldout(syn.Problem(key.split(":")[0], "", (), "", key))


def user_questions(rows):
    for r in rows:
        if "messages" in r:
            yield r["messages"][1]["content"]
        elif "prompt" in r:
            yield r["prompt"][1]["content"]
        elif "text" in r:
            yield from re.findall(r"^Question: (.*)$", r["text"], re.M)
        else:
            yield r["question"]


@pytest.mark.parametrize("fn", ROW_FUNCS, ids=lambda f: f.__name__)
def test_rows_are_deterministic_per_seed(fn):
    assert fn(40, 7) == fn(40, 7)
    assert fn(40, 7) != fn(40, 8)
    assert fn(20, 7) == fn(40, 7)[:20]  # a longer run extends, never reshuffles


def test_stages_draw_different_streams():
    chat = [r["messages"][1]["content"] for r in syn.chat_rows(40, 0)]
    reasoning = [r["messages"][1]["content"] for r in syn.reasoning_rows(40, 0)]
    assert chat != reasoning


def test_problems_are_correct_and_parse_back_to_their_key():
    for split in ("train", "heldout"):
        ps = syn.problems(800, 3, split)
        assert {p.task for p in ps} == set(syn.TASKS)
        for p in ps:
            assert key_from_question(p.question) == p.key, p
            assert p.answer == answer_from_key(p.key), p
            assert 1 <= len(p.steps) <= 3 and p.steps[-1].endswith(p.answer), p
            assert syn.is_heldout(p) == (split == "heldout")
    assert syn.problems(50, 3) == syn.problems(50, 3)
    assert syn.problems(50, 3) != syn.problems(50, 4)


def test_task_families_are_balanced_and_vary_phrasing():
    ps = syn.problems(400, 0)
    assert all(sum(p.task == t for p in ps) == 100 for t in syn.TASKS)
    for t in syn.TASKS:
        shapes = {re.sub(r"\d+|'\w+'", "#", p.question)[:20] for p in ps if p.task == t}
        assert len(shapes) >= 2, t


def test_heldout_fraction_and_uniqueness():
    keys = [p.key for p in syn.problems(4000, 1)]
    assert not any(heldout(k) for k in keys)
    rng = random.Random(0)
    drawn = [syn.make_problem(rng, t) for _ in range(2000) for t in syn.TASKS]
    assert 0.08 < sum(map(syn.is_heldout, drawn)) / len(drawn) < 0.16
    ho = syn.problems(1200, 1, "heldout")
    assert len({p.key for p in ho}) == len(ho)
    assert not {p.key for p in ho} & set(keys)


@pytest.mark.parametrize("fn", TRAIN_FUNCS, ids=lambda f: f.__name__)
def test_no_heldout_key_in_training_rows(fn):
    keys = [key_from_question(q) for q in user_questions(fn(N_LEAK, 11))]
    keys = [k for k in keys if k is not None]
    assert len(keys) > N_LEAK * 0.3  # the scan is not vacuous
    assert not [k for k in keys if heldout(k)]
    assert not set(keys) & {p.key for p in syn.problems(2000, 11, "heldout")}


def test_eval_rows_are_heldout_unique_and_gold_is_right():
    rows = syn.eval_rows(500, 5)
    assert len({r["id"] for r in rows}) == len(rows)
    keys = [key_from_question(r["question"]) for r in rows]
    assert len(set(keys)) == len(rows) and all(heldout(k) for k in keys)
    for r, k in zip(rows, keys):
        assert r["answer"] == answer_from_key(k)
        assert r["task"] == k.split(":")[0] and r["id"].startswith(r["task"])
        assert len(r["choices"]) == 4 == len(set(r["choices"]))
        assert r["choices"][r["gold"]] == r["answer"]
    assert len({r["gold"] for r in rows}) == 4  # the right answer is not always first


def check_messages(msgs):
    assert [m["role"] for m in msgs] == ["system", "user", "assistant"]
    assert msgs[0]["content"] == SYSTEM_PROMPT
    assert all(isinstance(m["content"], str) and m["content"].strip() for m in msgs)


def test_chat_rows_schema_no_think_and_correct():
    rows = syn.chat_rows(500, 2)
    small_talk = 0
    for r in rows:
        check_messages(r["messages"])
        user, reply = r["messages"][1]["content"], r["messages"][2]["content"]
        assert THINK_OPEN not in reply and THINK_CLOSE not in reply
        key = key_from_question(user)
        if key is None:
            small_talk += 1
        else:
            assert reply == f"The answer is {answer_from_key(key)}."
    assert 50 < small_talk < 150  # ~20% real chat turns


THINK_RE = re.compile(rf"{THINK_OPEN}\n(.+)\n{THINK_CLOSE}\nThe answer is (\S+)\.", re.S)


def test_reasoning_rows_have_one_think_block_before_the_answer():
    for r in syn.reasoning_rows(300, 2):
        check_messages(r["messages"])
        reply = r["messages"][2]["content"]
        assert reply.count(THINK_OPEN) == 1 and reply.count(THINK_CLOSE) == 1
        m = THINK_RE.fullmatch(reply)
        assert m, reply
        assert m[2] == answer_from_key(key_from_question(r["messages"][1]["content"]))


def failure_mode(rejected: str, answer: str) -> str:
    m = THINK_RE.fullmatch(rejected)
    if not m or rejected.count(THINK_OPEN) != 1:
        return "malformed"
    if m[2] != answer:
        return "wrong"
    lines = m[1].split("\n")
    return "rambling" if len(lines) > len(set(lines)) else "unknown"


def test_preference_rows_schema_and_failure_modes():
    rows = syn.preference_rows(30, 4)
    modes, malformed = set(), set()
    for r in rows:
        assert [m["role"] for m in r["prompt"]] == ["system", "user"]
        assert [m["role"] for m in r["chosen"] + r["rejected"]] == ["assistant", "assistant"]
        chosen, rejected = r["chosen"][0]["content"], r["rejected"][0]["content"]
        assert chosen != rejected and rejected.strip()
        answer = answer_from_key(key_from_question(r["prompt"][1]["content"]))
        assert THINK_RE.fullmatch(chosen)[2] == answer
        mode = failure_mode(rejected, answer)
        modes.add(mode)
        if mode == "malformed":
            opens = rejected.count(THINK_OPEN)
            malformed.add((THINK_CLOSE in rejected, opens, rejected.startswith(THINK_OPEN)))
    assert modes == {"wrong", "malformed", "rambling"}
    assert malformed == {(False, 1, True), (True, 2, True), (True, 1, False)}


def test_pretrain_rows_mix_stories_and_reasoning():
    rows = syn.pretrain_rows(500, 3)
    reasoning = [r for r in rows if r["text"].startswith("Question: ")]
    assert 0.35 < len(reasoning) / len(rows) < 0.45
    for r in rows:
        text = r["text"]
        assert isinstance(text, str) and text.strip() and THINK_OPEN not in text
        if r in reasoning:
            continue
        assert 3 <= len(re.findall(r"[.!?](?:\s|$)", r["text"])) <= 6, r["text"]
    for r in reasoning:
        for q, ans in re.findall(r"^Question: (.*)\n.*The answer is (\S+)\.$", r["text"], re.M):
            assert ans == answer_from_key(key_from_question(q))


def test_unknown_task_and_split_fail_with_the_valid_names():
    with pytest.raises(ValueError, match="add_sub"):
        syn.make_problem(random.Random(0), "algebra")
    with pytest.raises(ValueError, match="heldout"):
        syn.problems(3, 0, "test")
