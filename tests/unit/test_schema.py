"""Row normalization and validation per row schema, on rows shaped like the real sources."""

import collections

import pytest

from tinyreason.data.schema import (
    SCHEMAS,
    REASONS,
    RowError,
    check_rows,
    normalize_row,
    validate_row,
)


def U(text):
    return {"role": "user", "content": text}


def A(text):
    return {"role": "assistant", "content": text}


def S(text):
    return {"role": "system", "content": text}


THINK_OK = "<think>2 plus 2 is 4.</think>The answer is 4."


def reason_of(row, kind, max_chars=100_000):
    try:
        return validate_row(normalize_row(row, kind), kind, max_chars)
    except RowError as err:
        return err.reason


# --- normalize: real-source shapes -------------------------------------------------


def test_sharegpt_conversations_become_messages():
    row = {
        "conversations": [
            {"from": "system", "value": "Be brief."},
            {"from": "human", "value": "Hi"},
            {"from": "gpt", "value": "Hello!"},
        ],
        "id": 7,
    }
    out = normalize_row(row, "chat")
    assert out == {"messages": [S("Be brief."), U("Hi"), A("Hello!")], "id": 7}
    assert "conversations" in row  # input untouched


def test_canonical_messages_pass_through_and_extra_keys_dropped():
    msgs = [U("q"), {"role": "assistant", "content": "a", "weight": 1}]
    out = normalize_row({"messages": msgs}, "chat")
    assert out["messages"] == [U("q"), A("a")]


def test_smoltalk2_row_kwargs_json_and_dataset_renamed():
    row = {
        "messages": [U("2+2?"), A(THINK_OK)],
        "chat_template_kwargs": '{"enable_thinking": true}',
        "dataset": "OpenThoughts3",
    }
    out = normalize_row(row, "reasoning")
    assert out["chat_template_kwargs"] == {"enable_thinking": True}
    assert out["source"] == "OpenThoughts3" and "dataset" not in out
    assert validate_row(out, "reasoning") is None


def test_kwargs_dict_kept_and_none_becomes_empty():
    row = {"messages": [U("q"), A("a")], "chat_template_kwargs": {"enable_thinking": False}}
    assert normalize_row(row, "chat")["chat_template_kwargs"] == {"enable_thinking": False}
    row["chat_template_kwargs"] = None
    assert normalize_row(row, "chat")["chat_template_kwargs"] == {}


@pytest.mark.parametrize("reply_key", ["completion", "response"])
def test_prompt_completion_strings_become_messages(reply_key):
    out = normalize_row({"prompt": "q", reply_key: "a", "source": "x"}, "chat")
    assert out == {"messages": [U("q"), A("a")], "source": "x"}


def test_none_columns_from_unified_schemas_count_as_absent():
    row = {"messages": None, "conversations": [{"from": "human", "value": "q"},
                                               {"from": "gpt", "value": "a"}]}
    assert normalize_row(row, "chat")["messages"] == [U("q"), A("a")]
    assert normalize_row({"text": None, "story": "Once."}, "text")["text"] == "Once."


@pytest.mark.parametrize("column", ["text", "content", "story"])
def test_pretrain_text_columns(column):
    out = normalize_row({column: "Once upon a time.", "dataset": "tinystories"}, "text")
    assert out == {"text": "Once upon a time.", "source": "tinystories"}


def test_preference_as_strings():
    out = normalize_row({"prompt": "q", "chosen": "good", "rejected": "bad"}, "preference")
    assert (out["prompt"], out["chosen"], out["rejected"]) == ([U("q")], [A("good")], [A("bad")])
    assert validate_row(out, "preference") is None


def test_preference_as_assistant_lists_with_message_prompt():
    row = {"prompt": [S("sys"), U("q")], "chosen": [A("good")], "rejected": [A("bad")]}
    out = normalize_row(row, "preference")
    assert (out["prompt"], out["chosen"], out["rejected"]) == ([S("sys"), U("q")], [A("good")], [A("bad")])


def test_preference_as_full_conversations_sharing_the_prompt():
    # olmo preference mixes: no prompt column, chosen/rejected are [user, assistant].
    row = {"chosen": [U("q"), A("good")], "rejected": [U("q"), A("bad")], "score": 0.9}
    out = normalize_row(row, "preference")
    assert out == {"prompt": [U("q")], "chosen": [A("good")], "rejected": [A("bad")], "score": 0.9}


def test_ultrafeedback_prompt_string_plus_full_multiturn_conversations():
    shared = [S("sys"), U("q1"), A("a1"), U("q2")]
    row = {"prompt": "q1", "chosen": shared + [A("good")], "rejected": shared + [A("bad")]}
    out = normalize_row(row, "preference")
    assert (out["prompt"], out["chosen"], out["rejected"]) == (shared, [A("good")], [A("bad")])
    assert validate_row(out, "preference") is None


def test_preference_prompt_repeated_at_head_of_one_side_is_stripped():
    row = {"prompt": "q", "chosen": [U("q"), A("good")], "rejected": "bad"}
    out = normalize_row(row, "preference")
    assert (out["prompt"], out["chosen"], out["rejected"]) == ([U("q")], [A("good")], [A("bad")])


@pytest.mark.parametrize("row, prompt, answer", [
    ({"question": "Tom has 3 apples.", "answer": "He has 3 + 2 = 5.\n#### 5"}, [U("Tom has 3 apples.")], "5"),
    ({"question": "Sum?", "answer": "#### 1,200"}, [U("Sum?")], "1,200"),
    ({"problem": "Find x.", "solution": "So $x = \\boxed{\\frac{3}{4}}$."}, [U("Find x.")], "\\frac{3}{4}"),
    ({"problem": "Find x.", "solution": "long", "answer": "7"}, [U("Find x.")], "7"),
    ({"prompt": [S("sys"), U("q")], "answer": 12}, [S("sys"), U("q")], "12"),
    ({"messages": [U("q"), A("<think>2 + 2</think>The answer is 4.")]}, [U("q")], "4"),
    ({"prompt": [S("s"), U("What is 1 + 1?")], "answer": "2"}, [S("s"), U("What is 1 + 1?")], "2"),
], ids=["gsm8k", "gsm8k-comma", "math-boxed", "math-answer-column", "prompt-int-answer", "chat-last-turn",
        "synthetic"])
def test_prompt_rows_from_real_shapes(row, prompt, answer):
    out = normalize_row(row, "prompt")
    assert out["prompt"] == prompt and out["answer"] == answer and validate_row(out, "prompt") is None


def test_unknown_schema_is_a_bug_not_a_row_error():
    with pytest.raises(ValueError, match="row schema 'rlhf'"):
        normalize_row({"text": "x"}, "rlhf")
    with pytest.raises(ValueError, match="row schema"):
        check_rows([{"text": "x"}], "rlhf")


def test_a_chat_stage_rejects_thinking_rows_by_default_and_keeps_well_formed_ones_when_asked():
    thinking = {"messages": [U("q"), A("<think>2 + 2 = 4</think>The answer is 4.")]}
    two_blocks = {"messages": [U("q"), A("<think>a</think><think>b</think>4")]}
    plain = {"messages": [U("q"), A("The answer is 4.")]}
    assert reason_of(thinking, "chat") == "think_in_chat" and reason_of(plain, "chat") is None
    assert validate_row(normalize_row(thinking, "chat"), "chat", think="keep") is None
    # malformed think markup is never kept, whatever the policy
    assert validate_row(normalize_row(two_blocks, "chat"), "chat", think="keep") == "multiple_think"
    assert reason_of(two_blocks, "chat") == "think_in_chat"
    kept, reasons, _ = check_rows([thinking, plain, two_blocks], "chat")
    assert len(kept) == 1 and reasons == {"think_in_chat": 2}
    kept, reasons, _ = check_rows([thinking, plain, two_blocks], "chat", think="keep")
    assert len(kept) == 2 and reasons == {"multiple_think": 1}


# --- every reason code from a hand-written bad row ----------------------------------

BAD_ROWS = [
    ("not_a_dict", "text", ["text"]),
    ("missing_text", "text", {"title": "x"}),
    ("bad_text", "text", {"text": 42}),
    ("empty_text", "text", {"text": "  \n"}),
    ("missing_messages", "chat", {"prompt": "q"}),
    ("missing_messages", "chat", {"messages": []}),
    ("bad_messages", "chat", {"messages": "hello"}),
    ("bad_messages", "chat", {"messages": [U("q"), "a"]}),
    ("unknown_role", "chat", {"messages": [U("q"), {"role": "tool", "content": "x"}]}),
    ("unknown_role", "chat", {"conversations": [{"from": 3, "value": "q"}]}),
    ("bad_content", "chat", {"messages": [U("q"), A(7)]}),
    ("empty_content", "chat", {"messages": [U("q"), A(" ")]}),
    ("empty_content", "chat", {"messages": [U("q"), {"role": "assistant"}]}),
    ("misplaced_system", "chat", {"messages": [U("q"), S("sys"), A("a")]}),
    ("misplaced_system", "chat", {"messages": [S("a"), S("b"), U("q"), A("a")]}),
    ("bad_turn_order", "chat", {"messages": [A("a"), U("q"), A("a")]}),
    ("bad_turn_order", "chat", {"messages": [U("q"), U("q"), A("a")]}),
    ("last_not_assistant", "chat", {"messages": [U("q"), A("a"), U("more?")]}),
    ("last_not_assistant", "chat", {"messages": [S("sys")]}),
    ("missing_think", "reasoning", {"messages": [U("q"), A("4")]}),
    ("multiple_think", "reasoning", {"messages": [U("q"), A("<think>a</think><think>b</think>4")]}),
    ("unbalanced_think", "reasoning", {"messages": [U("q"), A("<think>a and on and on")]}),
    ("unbalanced_think", "reasoning", {"messages": [U("q"), A("a</think>4")]}),
    ("misordered_think", "reasoning", {"messages": [U("q"), A("</think>a<think>4")]}),
    ("text_before_think", "reasoning", {"messages": [U("q"), A("Sure. <think>a</think>4")]}),
    ("empty_answer", "reasoning", {"messages": [U("q"), A("<think>a</think>  \n")]}),
    # An earlier turn may drop its block, but a block that is present must be sound.
    ("empty_answer", "reasoning",
     {"messages": [U("q"), A("<think>a</think>"), U("q2"), A(THINK_OK)]}),
    ("bad_chat_template_kwargs", "chat",
     {"messages": [U("q"), A("a")], "chat_template_kwargs": "{not json"}),
    ("bad_chat_template_kwargs", "chat",
     {"messages": [U("q"), A("a")], "chat_template_kwargs": "[1, 2]"}),
    ("missing_prompt", "preference", {"chosen": "good", "rejected": "bad"}),
    ("missing_prompt", "preference", {"prompt": [], "chosen": "good", "rejected": "bad"}),
    ("bad_prompt", "preference", {"prompt": 5, "chosen": "good", "rejected": "bad"}),
    ("prompt_not_user_last", "preference", {"prompt": [U("q"), A("a")], "chosen": "good", "rejected": "bad"}),
    ("missing_chosen", "preference", {"prompt": "q", "rejected": "bad"}),
    ("missing_rejected", "preference", {"prompt": "q", "chosen": "good", "rejected": None}),
    ("bad_chosen", "preference", {"prompt": "q", "chosen": 1.5, "rejected": "bad"}),
    ("bad_chosen", "preference", {"prompt": "q", "chosen": [A("x"), A("y")], "rejected": "bad"}),
    ("bad_chosen", "preference", {"prompt": "q", "chosen": "", "rejected": "bad"}),
    ("bad_rejected", "preference", {"prompt": "q", "chosen": "good", "rejected": [U("other")]}),
    ("chosen_equals_rejected", "preference", {"prompt": "q", "chosen": "same", "rejected": "same"}),
    ("chosen_equals_rejected", "preference", {"chosen": [U("q"), A("same")], "rejected": [U("q"), A("same")]}),
    ("too_long", "text", {"text": "x" * 101}),
    ("too_long", "chat", {"messages": [U("q" * 50), A("a" * 51)]}),
    ("think_in_chat", "chat", {"messages": [U("q"), A("<think>a</think>4")]}),
    ("missing_question", "prompt", {"answer": "4"}),
    ("missing_gold", "prompt", {"question": "What is 2 + 2?"}),
    ("missing_gold", "prompt", {"problem": "x?", "solution": "No box here."}),
    ("missing_gold", "prompt", {"messages": [U("q")]}),
    ("prompt_not_user_last", "prompt", {"prompt": [U("q"), A("a")], "answer": "4"}),
    ("too_long", "reasoning", {"messages": [U("q"), A("<think>" + "t" * 100 + "</think>4")]}),
    ("too_long", "preference", {"prompt": "q" * 60, "chosen": "g" * 30, "rejected": "b" * 30}),
]


@pytest.mark.parametrize("code,kind,row", BAD_ROWS, ids=[f"{c}-{k}-{i}" for i, (c, k, _) in enumerate(BAD_ROWS)])
def test_bad_row_gives_its_reason(code, kind, row):
    assert reason_of(row, kind, max_chars=100) == code


def test_every_reason_is_documented_and_exercised():
    assert {code for code, _, _ in BAD_ROWS} == set(REASONS)
    assert all(code.isidentifier() and code.islower() for code in REASONS)
    assert all(sentence.endswith(".") for sentence in REASONS.values())


@pytest.mark.parametrize("kind,row", [
    ("text", {"text": "x" * 100}),
    ("chat", {"messages": [S("s"), U("q"), A("a"), U("q2"), A("no thinking in a chat stage")]}),
    ("reasoning", {"messages": [S("s"), U("q"), A("no block in history"), U("q2"), A(THINK_OK)]}),
    ("reasoning", {"messages": [U("q"), A("\n <think></think>Direct answer.")]}),
    ("preference", {"prompt": "q", "chosen": "g", "rejected": "b"}),
    ("prompt", {"question": "q", "answer": "#### 4"}),
])
def test_good_rows_pass(kind, row):
    assert reason_of(row, kind, max_chars=100) is None


def test_validate_never_raises_on_unnormalized_garbage():
    for kind in SCHEMAS:
        for row in (None, {}, {"messages": 3}, {"prompt": "q", "chosen": "a", "rejected": "b"},
                    {"text": ["x"]}, {"messages": [None]}):
            assert validate_row(row, kind) in REASONS


# --- check_rows ----------------------------------------------------------------------


def test_check_rows_counts_reasons_and_keeps_samples():
    rows = [{"messages": [U("q"), A(THINK_OK)]}] * 3 + [
        {"messages": [U("q"), A("4")]},
        {"messages": [U("q"), A("5")]},
        {"text": "pretrain row in the wrong stage"},
    ]
    kept, reasons, samples = check_rows(rows, "reasoning")
    assert len(kept) == 3 and kept[0]["messages"][1] == A(THINK_OK)
    assert reasons == collections.Counter({"missing_think": 2, "missing_messages": 1})
    assert [s["_reject_reason"] for s in samples] == ["missing_think", "missing_think", "missing_messages"]
    assert samples[0]["messages"] == [U("q"), A("4")]
    assert "_reject_reason" not in rows[3]


def test_check_rows_caps_samples_at_20():
    kept, reasons, samples = check_rows([{"text": ""}] * 50 + [{"text": "ok"}], "text")
    assert len(kept) == 1 and reasons == {"empty_text": 50} and len(samples) == 20


GARBAGE = [
    None, 3, "text", [], ["messages"], {}, {"messages": None}, {"messages": 5},
    {"messages": [None, 1]}, {"messages": [{"role": ["user"], "content": "q"}]},
    {"messages": [{"role": {"x": 1}, "content": "q"}]}, {"messages": [U(1), A(2)]},
    {"conversations": [{"from": None, "value": None}]}, {"conversations": {"from": "human"}},
    {"prompt": 1, "completion": 2}, {"prompt": [1], "chosen": [2], "rejected": [3]},
    {"prompt": {"role": "user"}, "chosen": {"a": 1}, "rejected": []},
    {"chosen": [U("q")], "rejected": [U("q")]}, {"text": 1.5}, {"content": {"a": 1}},
    {"chat_template_kwargs": 3, "messages": [U("q"), A("a")]}, {"story": None, "dataset": None},
]


@pytest.mark.parametrize("kind", SCHEMAS)
def test_check_rows_never_raises_on_garbage(kind):
    kept, reasons, samples = check_rows(GARBAGE, kind)
    assert sum(reasons.values()) + len(kept) == len(GARBAGE)
    assert set(reasons) <= set(REASONS)
    assert samples[0] == {"_raw": "None", "_reject_reason": "not_a_dict"}
