"""The synthetic world: determinism, correct answers, a leak-free held-out split, schemas.

Answers are re-derived by a checker written independently of the generator: it
parses question text back to a key and computes the answer from the key alone.
"""

import collections
import random
import re

import pytest

from tinyreason.data import synthetic as syn
from tinyreason.data import world
from tinyreason.model.chat import SYSTEM_PROMPT, THINK_CLOSE, THINK_OPEN

TRAIN_FUNCS = [syn.pretrain_rows, syn.chat_rows, syn.reasoning_rows, syn.preference_rows, syn.prompt_rows]
ROW_FUNCS = [*TRAIN_FUNCS, syn.eval_rows]
N_LEAK = 3000  # rows per generator scanned for held-out leaks
ANIMALS = "cat|dog|bird|fish|frog|duck"
# Phrases only the held-out template family uses (written here, not imported: the test
# checks the generator, so it must not read its answers off the generator's own tables).
HELDOUT_MARKERS = ("At first", "After that", "end up with", "Of ", "Pick the", "yes or no", "Here is a list",
                   "How often", "Look at", "Here are some numbers", "which one", "Which one")


def key_from_question(q: str) -> str | None:
    """Independent parser: question text (either phrasing) -> canonical key, None for small talk."""
    big = {"larger": "max", "bigger": "max", "smaller": "min", "less": "min"}
    for pat, order in ((r"Which (?:number )?is (larger|bigger|smaller|less)[,:] (\d+) or (\d+)\?", (1, 2, 3)),
                       (r"Tell me the (larger|smaller) number: (\d+) or (\d+)\.", (1, 2, 3)),
                       (r"Of (\d+) and (\d+), which one is (larger|smaller)\?", (3, 1, 2)),
                       (r"Pick the (bigger|smaller) number out of (\d+) and (\d+)\.", (1, 2, 3))):
        if m := re.fullmatch(pat, q):
            return f"compare:{big[m[order[0]]]}:{m[order[1]]},{m[order[2]]}"
    for pat, order in ((r"Is (?:the number )?(\d+) (bigger|larger|smaller|less) than (\d+)\?", (2, 1, 3)),
                       (r"(\d+) is (bigger|smaller) than (\d+): yes or no\?", (2, 1, 3)),
                       (r"Of (\d+) and (\d+), is the first one (larger|smaller)\?", (3, 1, 2))):
        if m := re.fullmatch(pat, q):
            kind = "gt" if big[m[order[0]]] == "max" else "lt"
            return f"compare:{kind}:{m[order[1]]},{m[order[2]]}"
    if m := re.search(r"'(\w+)'", q):
        items = re.search(rf"((?:{ANIMALS})(?:, (?:{ANIMALS}))+)", q)[1]
        return f"count:{m[1]}:{items.replace(', ', ',')}"
    list_ops = {"max": "largest|biggest", "min": "smallest", "sum": "sum|Add up|add up"}
    for op, words in list_ops.items():
        if re.search(rf"\b(?:{words})\b", q):
            return f"list_op:{op}:" + ",".join(re.findall(r"\d+", q))
    if m := re.search(r"(?:has|starts with|owns|holds|had|There are) (\d+) \w+", q):
        ops = re.findall(r"(buys|finds|gets|gives away|loses|sells) (\d+)", q)
        signs = "".join(("+" if verb in ("buys", "finds", "gets") else "-") + n for verb, n in ops)
        return f"add_sub:{m[1]}{signs}"
    return None


def shape(q: str) -> str:
    """A question's template: its numbers, names, objects, animals and verbs blanked out."""
    names = "|".join(world.WORLD)
    q = re.sub(r"(buys|finds|gets|gives away|loses|sells) \d+( more)?", "<op>", q)
    q = re.sub(rf"\b(?:{names})\b", "<name>", q)
    q = re.sub(rf"\b(?:{'|'.join(world.OBJECTS)})\b", "<obj>", q)
    q = re.sub(rf"'(?:{ANIMALS})'", "<t>", q)
    q = re.sub(rf"(?:\d+|{ANIMALS})(?:, (?:\d+|{ANIMALS}))+", "<list>", q)
    return re.sub(r"\d+", "<n>", q)


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
    return str({"max": max, "min": min, "sum": sum}[kind](nums))


def heldout(key: str) -> bool:
    return world.is_heldout(world.Problem(key.split(":")[0], "", (), "", key))


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


@pytest.mark.parametrize("split,phrasing", [("train", "train"), ("heldout", "train"), ("heldout", "heldout")])
def test_problems_are_correct_and_parse_back_to_their_key(split, phrasing):
    ps = world.problems(800, 3, split, phrasing)
    assert {p.task for p in ps} == set(world.TASKS)
    for p in ps:
        assert key_from_question(p.question) == p.key, p
        assert p.answer == answer_from_key(p.key), p
        assert 1 <= len(p.steps) <= 4 and p.steps[-1].endswith(p.answer), p
        assert world.is_heldout(p) == (split == "heldout")
    assert world.problems(50, 3) == world.problems(50, 3)
    assert world.problems(50, 3) != world.problems(50, 4)


def test_task_families_are_balanced_and_vary_phrasing():
    ps = world.problems(400, 0)
    assert all(sum(p.task == t for p in ps) == 100 for t in world.TASKS)
    for t in world.TASKS:
        shapes = {re.sub(r"\d+|'\w+'", "#", p.question)[:20] for p in ps if p.task == t}
        assert len(shapes) >= 2, t


def test_heldout_fraction_and_uniqueness():
    keys = [p.key for p in world.problems(4000, 1)]
    assert not any(heldout(k) for k in keys)
    rng = random.Random(0)
    drawn = [world.make_problem(rng, t) for _ in range(2000) for t in world.TASKS]
    assert 0.08 < sum(map(world.is_heldout, drawn)) / len(drawn) < 0.16
    ho = world.problems(1200, 1, "heldout")
    assert len({p.key for p in ho}) == len(ho)
    assert not {p.key for p in ho} & set(keys)


@pytest.mark.parametrize("fn", TRAIN_FUNCS, ids=lambda f: f.__name__)
def test_no_heldout_key_in_training_rows(fn):
    keys = [key_from_question(q) for q in user_questions(fn(N_LEAK, 11))]
    keys = [k for k in keys if k is not None]
    assert len(keys) > N_LEAK * 0.3  # the scan is not vacuous
    assert not [k for k in keys if heldout(k)]
    assert not set(keys) & {p.key for p in world.problems(2000, 11, "heldout")}


@pytest.mark.parametrize("phrasing", ["train", "heldout"])
def test_eval_rows_are_heldout_unique_and_gold_is_right(phrasing):
    rows = syn.eval_rows(500, 5, phrasing)
    assert len({r["id"] for r in rows}) == len(rows)
    keys = [key_from_question(r["question"]) for r in rows]
    assert len(set(keys)) == len(rows) and all(heldout(k) for k in keys)
    for r, k in zip(rows, keys):
        assert r["answer"] == answer_from_key(k)
        assert r["task"] == k.split(":")[0] and r["id"].startswith(r["task"])
        assert ("-heldout-" in r["id"]) == (phrasing == "heldout")  # ids never collide across phrasings
        assert len(r["choices"]) == 4 == len(set(r["choices"]))
        assert r["choices"][r["gold"]] == r["answer"]
    assert len({r["gold"] for r in rows}) == 4  # the right answer is not always first


def training_texts(fn, n: int, seed: int) -> list[str]:
    """Every string a training generator emits: documents and every message of every turn."""
    out = []
    for r in fn(n, seed):
        out += [r["text"]] if "text" in r else []
        for col in ("messages", "prompt", "chosen", "rejected"):
            out += [m["content"] for m in r.get(col) or []]
    return out


@pytest.mark.parametrize("fn", TRAIN_FUNCS, ids=lambda f: f.__name__)
def test_no_training_row_uses_a_heldout_template(fn):
    texts = training_texts(fn, N_LEAK, 11)
    leaks = [(m, t) for t in texts for m in HELDOUT_MARKERS if m in t]
    assert not leaks, leaks[:3]
    heldout_shapes = {shape(r["question"]) for r in syn.eval_rows(1000, 11, "heldout")}
    train_shapes = {shape(q) for q in user_questions(fn(N_LEAK, 11))}
    assert len(train_shapes) >= 10 and not train_shapes & heldout_shapes


def test_heldout_templates_are_new_wordings_of_every_family():
    train_shapes = {shape(q) for fn in TRAIN_FUNCS for q in user_questions(fn(N_LEAK, 11))}
    rows = syn.eval_rows(1000, 11, "heldout")
    assert {r["task"] for r in rows} == set(world.TASKS)
    for r in rows:
        assert any(m in r["question"] for m in HELDOUT_MARKERS), r["question"]
        assert shape(r["question"]) not in train_shapes, r["question"]
    # the same held-out problems stay disjoint from every training key, in either wording
    train_keys = {key_from_question(q) for fn in TRAIN_FUNCS for q in user_questions(fn(N_LEAK, 11))}
    assert not {key_from_question(r["question"]) for r in rows} & train_keys
    with pytest.raises(ValueError, match="held-out problems only"):
        world.problems(3, 0, "train", "heldout")
    with pytest.raises(ValueError, match="phrasing"):
        syn.eval_rows(3, 0, "new")


def test_prompt_rows_are_training_problems_with_their_gold_answer():
    rows = syn.prompt_rows(400, 2)
    assert {len(r) for r in rows} == {2}
    for r in rows:
        assert [m["role"] for m in r["prompt"]] == ["system", "user"] and r["prompt"][0]["content"] == SYSTEM_PROMPT
        key = key_from_question(r["prompt"][1]["content"])
        assert not heldout(key) and r["answer"] == answer_from_key(key)
    assert len({r["prompt"][1]["content"].split(" ")[0] for r in rows}) > 5  # every family, varied wording


@pytest.mark.parametrize("fn", [syn.chat_rows, syn.reasoning_rows, syn.preference_rows, syn.prompt_rows])
def test_tasks_narrows_a_generator_to_its_families_and_all_four_is_the_stream_before(fn):
    def families(rows):
        keys = (key_from_question(q) for q in user_questions(rows))
        return collections.Counter(k.split(":")[0] for k in keys if k)  # chat's small talk has no key

    narrowed = families(fn(400, 3, tasks=("count", "compare")))
    assert set(narrowed) == {"count", "compare"} and abs(narrowed["count"] - narrowed["compare"]) <= 1
    assert fn(200, 3, tasks=("compare", "count")) == fn(200, 3, tasks=("count", "compare"))  # order is no weight
    # every family is the default: the rows every stage drew before `tasks` existed
    assert fn(200, 3, tasks=world.TASKS) == fn(200, 3)
    with pytest.raises(ValueError, match="unknown: algebra"):
        fn(10, 3, tasks=("count", "algebra"))


def test_a_sources_task_families_change_its_blend_key_and_leave_the_keys_made_before():
    from tinyreason.config.sections import BlendConfig, SourceConfig
    from tinyreason.data.blend import blend_key

    def key(**src):
        return blend_key(BlendConfig(sources=[SourceConfig(synthetic="prompts", **src)]), "prompt", 0)

    dumped = BlendConfig(sources=[SourceConfig(synthetic="prompts")]).model_dump(mode="json")
    assert "tasks" not in dumped["sources"][0]  # as if the field did not exist: older keys stay valid
    assert key() == key(tasks=None) != key(tasks=["count"]) == key(tasks=["count"])
    assert key(tasks=["count", "compare"]) == key(tasks=["compare", "count"])


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


def test_wrong_traces_stop_at_their_one_slipped_step():
    # DPO pushes down every token of the rejected answer: a wrong trace must hold no right
    # step after its slip, so it is the chosen trace's lines up to one that differs, answered
    # from it. Both slips occur: a step's result, and a number copied from the question.
    copies = results = 0
    wrong = 0
    for r in syn.preference_rows(300, 5):
        chosen, rejected = (THINK_RE.fullmatch(r[k][0]["content"]) for k in ("chosen", "rejected"))
        if not rejected or rejected[2] == chosen[2] or rejected[1].count(THINK_OPEN):
            continue
        wrong += 1
        good, bad = chosen[1].split("\n"), rejected[1].split("\n")
        assert len(bad) <= len(good) and bad[:-1] == good[:len(bad) - 1], r
        assert bad[-1] != good[len(bad) - 1] and bad[-1].endswith(rejected[2]), r
        numbers = [re.findall(r"\d+", line) for line in (good[len(bad) - 1], bad[-1])]
        if len(numbers[0]) == 3:  # an add/take or max/min line: which of its numbers slipped
            copies += numbers[0][1] != numbers[1][1]
            results += numbers[0][:2] == numbers[1][:2]
    assert wrong == 250 and copies >= 30 and results >= 60  # five rows in six


DRILL_RE = re.compile(r"(\d+) ([+-]) (\d+) = (\d+)|(\d+) ([<>]) (\d+)|(max|min)\((\d+), (\d+)\) = (\d+)")


def drill_line_is_right(line: str) -> bool:
    m = DRILL_RE.fullmatch(line)
    if m[1]:
        a, b, c = int(m[1]), int(m[3]), int(m[4])
        return c == (a + b if m[2] == "+" else a - b) and c >= 0
    if m[5]:
        return (int(m[5]) > int(m[7])) == (m[6] == ">") and m[5] != m[7]
    return int(m[11]) == (max if m[8] == "max" else min)(int(m[9]), int(m[10]))


def test_pretrain_rows_mix_stories_drills_and_reasoning():
    rows = syn.pretrain_rows(500, 3)
    reasoning = [r for r in rows if r["text"].startswith("Question: ")]
    drills = [r for r in rows if DRILL_RE.fullmatch(r["text"].split("\n")[0])]
    assert len(reasoning) == 100 and len(drills) == 350  # 2 in 10 worked problems, 7 in 10 drills
    for r in rows:
        text = r["text"]
        assert isinstance(text, str) and text.strip() and THINK_OPEN not in text
        if r in reasoning:
            continue
        if r in drills:
            assert 8 <= len(text.split("\n")) <= 12 and all(drill_line_is_right(x) for x in text.split("\n")), text
            continue
        assert 3 <= len(re.findall(r"[.!?](?:\s|$)", r["text"])) <= 6, r["text"]
    for r in reasoning:
        found = re.findall(r"^Question: (.*)\nAnswer: .*\n(?:.*\n)*?The answer is (\S+)\.$", r["text"], re.M)
        assert len(found) == r["text"].count("Question: ")
        for q, ans in found:
            assert ans == answer_from_key(key_from_question(q))


def test_unknown_task_and_split_fail_with_the_valid_names():
    with pytest.raises(ValueError, match="add_sub"):
        world.make_problem(random.Random(0), "algebra")
    with pytest.raises(ValueError, match="heldout"):
        world.problems(3, 0, "test")
