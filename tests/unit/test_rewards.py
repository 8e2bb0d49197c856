"""GRPO rewards called the way TRL 1.16's GRPOTrainer calls them, on hand-written completions."""

import pickle
import sys
import textwrap

import pytest

from tinyreason.claims import arithmetic_claims, step_arithmetic
from tinyreason.completions import completion_text
from tinyreason.rewards import (
    BUILTIN, GuardedReward, RewardError, correctness, guarded, length_penalty, load_reward, make_reward,
    reward_components, think_format,
)

GOOD = "<think>4 + 3 = 7, then 7 - 2 = 5.</think>The answer is 5."
USER_MODULE = "tr_test_user_rewards"
USER_CODE = '''
import asyncio

THRESHOLD = 3


def brevity(prompts, completions, **kwargs):
    return [1.0 / (1 + len(c.split())) for c in completions]


def exact(completions, answer):  # names its columns, no **kwargs
    return [float(c.strip() == a) for c, a in zip(completions, answer)]


def scaled(completions, scale=1.0, **kwargs):
    return [scale] * len(completions)


def boom(prompts, completions, **kwargs):
    return [1.0 / (len(c) - 3) for c in completions]  # ZeroDivisionError on a 3-character completion


def batch_only(prompts, completions, **kwargs):
    if len(completions) > 1:
        raise RuntimeError("needs one completion")
    return [0.0]


def too_few(prompts, completions, **kwargs):
    return [1.0]


def words(prompts, completions, **kwargs):
    return ["high" for _ in completions]


def scalar(prompts, completions, **kwargs):
    return 1.0


def infinite(prompts, completions, **kwargs):
    return [float("inf")] * len(completions)


def not_applicable(prompts, completions, **kwargs):
    return [None, True] + [0] * (len(completions) - 2)


def no_completions(prompts, text):
    return [0.0]


def positional(completions, /, **kwargs):
    return [0.0]


async def later(prompts, completions, **kwargs):
    return [0.0]
'''


def trl_call(fn, completions, prompts=None, **columns):
    """Exactly the keyword arguments GRPOTrainer._calculate_rewards passes."""
    prompts = prompts or [f"Question {i}: how many apples?" for i in range(len(completions))]
    return fn(prompts=prompts, completions=completions, completion_ids=None, **columns,
              trainer_state=None, log_extra=lambda *a: None, log_metric=lambda *a: None)


@pytest.fixture(scope="module")
def user_module(tmp_path_factory):
    root = tmp_path_factory.mktemp("user_rewards")
    (root / f"{USER_MODULE}.py").write_text(textwrap.dedent(USER_CODE))
    (root / "tr_test_broken_rewards.py").write_text("import tr_no_such_dependency\n")
    sys.path.insert(0, str(root))
    yield USER_MODULE
    sys.path.remove(str(root))
    for name in (USER_MODULE, "tr_test_broken_rewards"):
        sys.modules.pop(name, None)


# ---------------------------------------------------------------- correctness

CASES = [  # (completion, gold, reward)
    (GOOD, "5", 1.0),
    (GOOD, "6", 0.0),  # wrong
    ("<think>4 + 3 = 7, so the answer is 5", "5", 0.0),  # unclosed <think>
    ("<think>The answer is 5.</think>", "5", 0.0),  # nothing after </think>: answer in the block only
    ("<think>hmm</think>The answer is 5. The answer is 7.", "5", 0.0),  # two different answers
    ("<think>a</think>The answer is 12.0", "12", 1.0),
    ("<think>a</think>The answer is 1,200.", "1200", 1.0),
    ("<think>a</think>So \\boxed{12}.", "12", 1.0),
    ("<think>a</think>5 + 7 = 12\n#### 12", "12", 1.0),
    ("<think>a</think>The answer is -3.", "-3", 1.0),
    ("<think>a</think>The answer is -3.", "3", 0.0),
    ("<think>a</think>The answer is 3/4.", "0.75", 1.0),
    ("<think>a</think>The answer is Yes.", "yes", 1.0),
    ("5", "5", 1.0),  # a chat model's bare answer, no think block
]


def test_correctness_cases():
    completions, golds, expected = map(list, zip(*CASES))
    assert trl_call(correctness, completions, answer=golds) == expected
    assert trl_call(make_reward({"name": "correctness"}), completions, answer=golds) == expected


def test_correctness_logs_why_each_completion_scored():
    logged = {}
    reward = make_reward({"name": "correctness"})
    completions = [GOOD, GOOD, "<think>5", "<think>a</think>The answer is 5. The answer is 7.", "<think>5</think>"]
    out = reward(prompts=["p"] * 5, completions=completions, completion_ids=None, answer=["5", "6", "5", "5", "5"],
                 trainer_state=None, log_extra=lambda column, values: logged.setdefault(column, values),
                 log_metric=lambda *a: None)
    assert out == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert logged == {"answer_grade": ["correct", "wrong", "unclosed", "ambiguous", "no_answer"]}


def test_correctness_conversational_completions():
    completions = [[{"role": "assistant", "content": GOOD}],
                   [{"role": "assistant", "content": [{"type": "text", "text": "<think>a</think>\\boxed{5}"}]}],
                   [{"role": "assistant", "content": "<think>The answer is 5."}]]
    assert trl_call(correctness, completions, answer=["5", 5, "5"]) == [1.0, 1.0, 0.0]
    assert completion_text(completions[1]) == "<think>a</think>\\boxed{5}"


def test_correctness_last_number_fallback():
    completions = ["<think>a</think>So 12 apples.", "<think>a</think>So 12 apples."]
    assert trl_call(correctness, completions, answer=["12", "12"]) == [0.0, 0.0]
    reward = make_reward({"name": "correctness", "fallback": "last_number"})
    assert trl_call(reward, completions, answer=["12", "13"]) == [1.0, 0.0]


def test_correctness_without_answer_column_names_the_fix():
    with pytest.raises(RewardError, match=r"'correctness' needs column\(s\) \['answer'\].*grpo blend"):
        trl_call(make_reward({"name": "correctness"}), [GOOD], gold=["5"])
    with pytest.raises(RewardError, match="`answer` column"):
        trl_call(correctness, [GOOD])


# ---------------------------------------------------------------- think_format, length_penalty

FORMATS = [
    (GOOD, 1.0),
    ("\n  " + GOOD, 1.0),
    ("Sure! " + GOOD, 0.5),  # text before <think>
    ("<think>a</think><think>b</think>The answer is 5.", 0.5),  # two blocks
    ("<think>a</think>   \n", 0.0),  # no answer
    ("<think>The answer is 5.", 0.0),  # unclosed
    ("The answer is 5.", 0.0),  # no block
    ("5</think>", 0.0),  # stray close
]


def test_think_format_strict_and_partial():
    completions, expected = map(list, zip(*FORMATS))
    assert trl_call(think_format, completions) == [1.0 if e == 1.0 else 0.0 for e in expected]
    assert trl_call(make_reward({"name": "think_format", "partial": 0.5}), completions) == expected
    conversational = [[{"role": "assistant", "content": c}] for c in completions]
    assert trl_call(think_format, conversational) == trl_call(think_format, completions)


STEP_PROMPT = "Mia has 12 apples. She buys 3 more. Then she loses 9. How many apples now?"
STEP_CASES = [  # (completion, reward): the share of claims both true and grounded in the prompt or earlier results
    ("<think>\n12 + 3 = 15\n15 - 9 = 6\n</think>\nThe answer is 6.", 1.0),
    ("<think>\n12 + 3 = 15\n15 - 9 = 8\n</think>\nThe answer is 8.", 0.5),  # the second step is wrong
    ("<think>\n12 + 3 = 14\n14 - 9 = 5\n</think>\nThe answer is 5.", 0.5),  # wrong, then right from it
    ("<think>\n1 + 1 = 2\n</think>\nThe answer is 2.", 0.0),  # true, but about numbers the problem never had
    ("<think>\n12 + 3 = 15\n15 - 9 = 6\n", 1.0),  # unclosed: the steps still count; correctness gives 0
    ("<think>\nthree more, then nine fewer\n</think>\nThe answer is 6.", None),  # nothing to check
    ("12 + 3 = 15, 15 - 9 = 6. The answer is 6.", None),  # no <think>: not a trace
]


@pytest.mark.parametrize("completion, reward", STEP_CASES)
def test_step_arithmetic_cases(completion, reward):
    assert trl_call(step_arithmetic, [completion], prompts=[STEP_PROMPT]) == [reward]


def test_step_arithmetic_reads_the_last_user_turn_of_a_conversation():
    prompt = [{"role": "system", "content": "Think first. 100 rules."}, {"role": "user", "content": STEP_PROMPT}]
    assert trl_call(step_arithmetic, [STEP_CASES[0][0]], prompts=[prompt]) == [1.0]
    assert trl_call(step_arithmetic, ["<think>100 + 1 = 101</think>101"], prompts=[prompt]) == [0.0]


def test_arithmetic_claims_forms():
    claims = arithmetic_claims("<<48/2=24>> then 24*3 = 72; 78 > 10, 9 < 4, max(23, 4) = 30, "
                               "min(2, 5) = 2, 10/3 = 3.33, 7 / 0 = 0, 1,200 x 2 = 2,400",
                               ["48", "2", "3", "78", "10", "9", "4", "23", "5", "7", "0", "1,200"])
    assert [(c, t) for c, t, _ in claims] == [
        ("48/2=24", True), ("24*3 = 72", True), ("78 > 10", True), ("9 < 4", False), ("max(23, 4) = 30", False),
        ("min(2, 5) = 2", True), ("10/3 = 3.33", True), ("7 / 0 = 0", False), ("1,200 x 2 = 2,400", True)]
    assert all(grounded for *_, grounded in claims)
    assert arithmetic_claims("10/3 = 3.4", ["10", "3"])[0][1] is False  # wrong at the precision written
    assert arithmetic_claims("<<2*3+4=10>> and 2 * 3 + 4 = 10", ["2", "3", "4"]) == []  # two operations: not read


def test_length_penalty_tokens_and_words():
    reward = make_reward({"name": "length_penalty", "target_tokens": 4, "max_tokens": 8})
    ids = [[1] * 4, [1] * 6, [1] * 8, [1] * 20]
    completions = ["a"] * 4
    assert reward(prompts=["p"] * 4, completions=completions, completion_ids=ids) == [0.0, -0.5, -1.0, -1.0]
    # Without completion_ids, whitespace words count.
    assert trl_call(reward, ["one two", "a b c d e f"]) == [0.0, -0.5]


@pytest.mark.parametrize("params,needle", [
    ({"target_tokens": 8, "max_tokens": 8}, "must exceed target_tokens=8"),
    ({"target_tokens": -1, "max_tokens": 8}, "target_tokens=-1"),
    ({"target_tokens": 4}, "missing 1 required"),
    ({"target_tokens": 4, "max_tokens": 8, "slope": 2}, "unexpected keyword argument 'slope'"),
])
def test_length_penalty_bad_params(params, needle):
    with pytest.raises(ValueError, match=needle) as info:
        make_reward({"name": "length_penalty", **params})
    assert "length_penalty" in str(info.value)


# ---------------------------------------------------------------- specs -> TRL arguments

def test_reward_components_for_trl(user_module):
    specs = [{"name": "correctness", "weight": 1.0}, {"name": "think_format", "weight": 0.2},
             {"path": f"{user_module}:brevity", "weight": 0.5},
             {"path": f"{user_module}:scaled", "name": "constant", "scale": 2.0}]
    funcs, weights, names = reward_components(specs, columns=["prompt", "answer"])
    assert names == ["correctness", "think_format", "brevity", "constant"]
    assert weights == [1.0, 0.2, 0.5, 1.0]
    assert [f.__name__ for f in funcs] == names  # TRL logs rewards/<__name__>/mean
    assert trl_call(funcs[3], [GOOD, GOOD], answer=["5", "5"]) == [2.0, 2.0]
    restored = pickle.loads(pickle.dumps(funcs))  # Ray ships them to the train workers
    assert trl_call(restored[0], [GOOD], answer=["5"]) == [1.0] and restored[2].__name__ == "brevity"


@pytest.mark.parametrize("specs,needle", [
    ([], "at least one reward"),
    ([{"name": "accuracy"}], "not a built-in.*correctness.*path: 'module:function'"),
    ([{"weight": 1.0}], "needs a name or a path"),
    ([{"name": "correctness", "weight": "high"}], "weight='high' must be a finite number"),
    ([{"name": "correctness", "fallback": "first"}], "fallback='first'.*last_number"),
    ([{"name": "think_format", "partial": 2}], "partial=2 must be a number in"),
    ([{"name": "correctness"}, {"name": "correctness", "weight": 0.5}], r"\['correctness'\] appear twice"),
])
def test_bad_specs_name_the_fix(specs, needle):
    with pytest.raises(ValueError, match=needle):
        reward_components(specs)


def test_missing_column_fails_at_config_time(user_module):
    with pytest.raises(ValueError, match=r"'correctness' reads column\(s\) \['answer'\].*\['prompt'\]"):
        make_reward({"name": "correctness"}, columns=["prompt"])
    with pytest.raises(ValueError, match=r"'exact' reads column\(s\) \['answer'\]"):
        make_reward({"path": f"{user_module}:exact"}, columns=["prompt"])
    assert make_reward({"path": f"{user_module}:exact"}, columns=["answer"]).columns == ("answer",)


def test_user_spec_params_must_be_in_the_signature(user_module):
    with pytest.raises(ValueError, match=r"tr_test_user_rewards:exact'.*\['scale'\].*add them to its signature"):
        make_reward({"path": f"{user_module}:exact", "scale": 2})
    with pytest.raises(ValueError, match=r"\['completions'\].*TRL's own arguments"):
        make_reward({"path": f"{user_module}:brevity", "completions": []})


# ---------------------------------------------------------------- load_reward, at config time

def test_load_reward_accepts_both_signatures(user_module):
    assert load_reward(f"{user_module}:brevity").__name__ == "brevity"
    exact = make_reward({"path": f"{user_module}:exact"})
    # TRL's extra keywords (completion_ids, trainer_state, other columns) are dropped for it.
    assert trl_call(exact, [" 5", "6"], answer=["5", "5"], source=["gsm8k"] * 2) == [1.0, 0.0]


@pytest.mark.parametrize("attr,needle", [
    ("bogus_path", "is not 'module:function'; write it as 'mypkg.rewards:my_reward'"),
    ("tr_test_broken_rewards:anything", "module 'tr_test_broken_rewards' does not import "
                                        r"\(ModuleNotFoundError.*--working-dir"),
    ("tr_test_user_rewards:brevty", "has no attribute 'brevty'; did you mean brevity"),
    ("tr_test_user_rewards:nothing_like_it", "define `nothing_like_it` in tr_test_user_rewards"),
    ("tr_test_user_rewards:THRESHOLD", "is a int, not callable.*def THRESHOLD\\(prompts, completions, "),
    ("tr_test_user_rewards:no_completions", r"wrong signature \(prompts, text\).*does not accept "
                                            r"`completions`.*def no_completions\(prompts, completions, \*\*kwargs\)"),
    ("tr_test_user_rewards:positional", r"takes positional-only \['completions'\]"),
    ("tr_test_user_rewards:later", "is async.*def later"),
])
def test_load_reward_errors_name_path_and_fix(user_module, attr, needle):
    with pytest.raises(ValueError, match=needle) as info:
        load_reward(attr)
    assert repr(attr) in str(info.value)  # every message names the path


# ---------------------------------------------------------------- the guard, at run time

def test_raising_reward_names_reward_row_and_prompt(user_module):
    reward = make_reward({"path": f"{user_module}:boom"})
    prompts = ["Question 0", "Question 1: " + "Mia has 4 apples. " * 10, "Question 2"]
    with pytest.raises(RewardError) as info:
        trl_call(reward, ["long enough", "abc", "also fine"], prompts=prompts)
    message = str(info.value)
    assert "reward 'boom' raised ZeroDivisionError" in message and "row 1 of 3" in message
    assert repr(prompts[1][:80]) in message and prompts[1][:81] not in message
    assert isinstance(info.value, ValueError) and isinstance(info.value.__cause__, ZeroDivisionError)


def test_raising_reward_conversational_prompt_quotes_the_question(user_module):
    reward = guarded(load_reward(f"{user_module}:boom"), "boom")
    prompts = [[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+3?"}]]
    with pytest.raises(RewardError, match=r"row 0 of 1 \(prompt: 'What is 2\+3\?'\)"):
        trl_call(reward, ["abc"], prompts=prompts)


def test_batch_level_failure_says_no_single_row(user_module):
    with pytest.raises(RewardError, match="'batch_only' raised RuntimeError.*no single row raises alone"):
        trl_call(make_reward({"path": f"{user_module}:batch_only"}), [GOOD, GOOD])


@pytest.mark.parametrize("attr,needle", [
    ("too_few", r"'too_few' returned 1 values for 3 completions: list \[1.0\]; return exactly one"),
    ("words", "'words' returned a non-number at index 0: str 'high'"),
    ("scalar", "'scalar' returned float 1.0; return a list of 3 floats"),
    ("infinite", "'infinite' returned inf at index 0.*clip it"),
])
def test_bad_return_values_name_reward_and_value(user_module, attr, needle):
    with pytest.raises(RewardError, match=needle):
        trl_call(make_reward({"path": f"{user_module}:{attr}"}), [GOOD, GOOD, GOOD])


def test_none_means_not_applicable_and_numbers_become_floats(user_module):
    out = trl_call(make_reward({"path": f"{user_module}:not_applicable"}), [GOOD, GOOD, GOOD])
    assert out == [None, 1.0, 0.0] and all(type(v) is float for v in out[1:])


def test_guarded_plain_function_keeps_its_name():
    reward = guarded(lambda completions, **kw: [0.0] * len(completions), "zero")
    assert isinstance(reward, GuardedReward) and reward.__name__ == "zero"
    assert trl_call(reward, [GOOD]) == [0.0]


def test_builtin_table_is_the_documented_set():
    assert sorted(BUILTIN) == ["correctness", "length_penalty", "step_arithmetic", "think_format"]
    assert BUILTIN["length_penalty"] is length_penalty
