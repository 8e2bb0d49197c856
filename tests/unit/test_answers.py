"""Final-answer extraction, comparison and grading on hand-written completions."""

import pytest

from tinyreason.answers import (
    AMBIGUOUS, CORRECT, NO_ANSWER, UNCLOSED, WRONG, Split, answers_match, extract_final, final_answers,
    grade, gsm8k_gold, is_ambiguous, math_gold, parse_number, split_thinking,
)

GOOD = "<think>Two apples plus three apples make five.</think>The answer is 5."


# ---------------------------------------------------------------- split_thinking

def test_split_well_formed():
    assert split_thinking("\n " + GOOD) == Split(
        thinking="Two apples plus three apples make five.", answer="The answer is 5.",
        closed=True, opened=True, well_formed=True)


def test_split_unclosed_has_no_answer():
    split = split_thinking("<think>The answer is 5. Let me check again")
    assert split.answer is None and split.opened and not split.closed and not split.well_formed
    assert split.thinking == "The answer is 5. Let me check again"


def test_split_without_tags_is_all_answer():
    assert split_thinking("The answer is 5.") == Split(None, "The answer is 5.", False, False, False)


def test_split_two_blocks_answers_after_the_last():
    split = split_thinking("<think>9?</think>Hmm.<think>no, 10</think>The answer is 10.")
    assert split.answer == "The answer is 10." and split.closed and not split.well_formed
    assert split.thinking == "9?</think>Hmm.<think>no, 10"  # text between blocks is thinking


def test_split_reopened_after_answer_is_unclosed():
    split = split_thinking("<think>a</think>The answer is 5. <think>wait")
    assert split.answer is None and not split.closed


def test_split_text_before_think_is_not_well_formed_but_answers():
    split = split_thinking("Sure! " + GOOD)
    assert not split.well_formed and split.answer == "The answer is 5."


def test_split_stray_close_without_open():
    split = split_thinking("scratch</think>7")
    assert split.answer == "7" and split.closed and not split.opened and not split.well_formed


# ---------------------------------------------------------------- extraction

@pytest.mark.parametrize("text,final", [
    ("The answer is 12.", "12"),
    ("the final answer is: **-3**!", "-3"),
    ("so \\boxed{12}", "12"),
    ("\\boxed{\\frac{3}{4}} and later \\boxed{\\dfrac{1}{2}}", "\\dfrac{1}{2}"),  # last, nested braces
    ("The answer is 7. Formally, \\boxed{12}", "12"),  # boxed before "The answer is"
    ("5 + 7 = 12\n#### 12", "12"),
    ("#### 1,200", "1,200"),
    ("I doubt what the answer is, but the answer is 5.", "5"),
    ("The answer is:\n42", "42"),
    ("The answer is 3.50.", "3.50"),
    ("Twelve apples.", None),
    ("\\boxed{12", None),  # never closed: not an answer
    ("#### Final answer", None),  # a markdown heading, not GSM8K's marker
])
def test_extract_final(text, final):
    assert extract_final(text) == final


def test_last_number_fallback_only_when_asked():
    text = "First 3, then 1,200 apples, so -4.5 left."
    assert extract_final(text) is None
    assert extract_final(text, fallback="last_number") == "-4.5"
    assert extract_final("x2 and 3/4.", fallback="last_number") == "3/4"
    assert extract_final("no digits", fallback="last_number") is None
    with pytest.raises(ValueError, match="last_number"):
        extract_final(text, fallback="first_number")


def test_final_answers_lists_every_kind():
    assert final_answers("The answer is 5. \\boxed{5}\n#### 5") == ["5", "5", "5"]


# ---------------------------------------------------------------- comparison

@pytest.mark.parametrize("pred,gold", [
    ("12", "12"), ("12.0", "12"), ("1,200", "1200"), ("$12", "12"), ("-$5", "-5"), ("12%", "12"),
    ("-3", "-3"), ("\u22123", "-3"), ("3/4", "0.75"), ("\\frac{3}{4}", "0.75"), ("\\boxed{12}", "12"),
    ("**42**", "42"), ("12 apples", "12"), ("1e3", "1000"), ("12", 12), ("0.5", 0.5),
    ("Yes.", "yes"), ("  NO ", "no"), ("Paris", "paris"), ("$x + 1$", "x+1"),
])
def test_answers_match(pred, gold):
    assert answers_match(pred, gold)


@pytest.mark.parametrize("pred,gold", [
    ("13", "12"), ("-3", "3"), ("0.12", "12%"), ("0.33", "1/3"), ("1,20", "120"), ("five", "5"),
    ("5 or 7", "5"), ("yes", "no"), ("", ""), (None, "5"), ("5", None), ("3/0", "3"),
])
def test_answers_differ(pred, gold):
    assert not answers_match(pred, gold)


def test_parse_number_exact():
    assert parse_number("1,234.5") == parse_number("2469/2")
    assert parse_number("yes") is None and parse_number("12 13") is None


# ---------------------------------------------------------------- grading

def test_grade_correct_and_wrong():
    assert grade(GOOD, "5") == grade(GOOD, 5) == type(grade(GOOD, "5"))(True, CORRECT, "5")
    assert grade(GOOD, "6").reason == WRONG and grade(GOOD, "6").answer == "5"


def test_grade_no_answer_cases():
    assert grade("<think>The answer is 5.", "5").reason == UNCLOSED
    assert grade("<think>The answer is 5.</think>  \n", "5").reason == NO_ANSWER  # only in the think block
    assert grade("The answer is 5.\n<think>five</think>", "5").reason == NO_ANSWER  # answer before thinking


def test_grade_two_different_answers_is_ambiguous():
    assert grade("<think>a</think>The answer is 5. The answer is 7.", "7") == (
        type(grade(GOOD, "5"))(False, AMBIGUOUS, None))
    assert grade("<think>a</think>\\boxed{7}. The answer is 5.", "7").reason == AMBIGUOUS
    assert is_ambiguous("The answer is 2, not 3. Wait, the answer is 3.")
    # Restating one answer in several forms is not ambiguous.
    assert grade("<think>a</think>The answer is **12**. \\boxed{12.0}", "12").correct
    assert not is_ambiguous("#### Final answer\n\\boxed{5}")


def test_grade_bare_chat_answer_compared_whole():
    assert grade("5", "5").correct and grade("<think>a</think> Yes. ", "yes").correct
    assert not grade("It is 5 I think", "5").correct
    assert grade("<think>a</think>It is 5 apples", "5", fallback="last_number").correct


# ---------------------------------------------------------------- gold answers

def test_gsm8k_gold():
    field = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nAltogether 48+24 = 72 clips.\n#### 72"
    assert gsm8k_gold(field) == "72"
    assert gsm8k_gold("#### 1,000\n") == "1,000"
    assert gsm8k_gold("no marker 72") is None and gsm8k_gold("") is None


def test_math_gold():
    assert math_gold("Thus $x = \\boxed{\\frac{1}{2}}$.") == "\\frac{1}{2}"
    assert math_gold("\\boxed{3} first, finally \\boxed{\\{1, 2\\}}") == "\\{1, 2\\}"
    assert math_gold("no box") is None
    assert answers_match(math_gold("so \\boxed{\\frac{1}{2}}"), "0.5")
