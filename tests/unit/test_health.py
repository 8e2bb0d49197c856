"""Reasoning-format health on hand-written generations, one per failure mode."""

import pytest

from tinyreason.eval.health import FormatCheck, check_output, extract_answer, summarize

GOOD = "<think>Two apples plus three apples make five.</think>The answer is 5."


def test_well_formed_with_answer():
    check = check_output("\n  " + GOOD)
    assert check == FormatCheck(well_formed=True, has_answer=True, think_tokens=7,
                                truncated=False, repetition=0.0)


def test_unclosed_tag_is_truncated_not_well_formed():
    check = check_output("<think>Let me count: one two three")
    assert not check.well_formed and not check.has_answer and check.truncated
    assert check.think_tokens == 6  # counted to the end: runaway length shows in p90


def test_two_think_blocks_are_not_well_formed():
    check = check_output("<think>first</think><think>second try</think>5")
    assert not check.well_formed and not check.has_answer and not check.truncated
    assert check.think_tokens == 1


def test_closed_then_reopened_is_truncated():
    check = check_output("<think>a</think>5 <think>wait, actually")
    assert check.truncated and not check.well_formed


def test_no_answer_after_block():
    check = check_output("<think>Five.</think>  \n")
    assert check.well_formed and not check.has_answer and not check.truncated


def test_text_before_think_is_not_well_formed():
    check = check_output("Sure! " + GOOD)
    assert not check.well_formed and not check.has_answer


def test_stray_close_tag_is_not_well_formed():
    assert not check_output(GOOD + " </think>").well_formed
    assert not check_output("</think>x<think>y").well_formed


def test_truncated_via_hit_limit():
    check = check_output(GOOD, hit_limit=True)
    assert check.truncated and check.well_formed and check.has_answer


def test_heavy_repetition():
    check = check_output("<think>" + "I need to check. " * 20, hit_limit=True)
    assert check.repetition > 0.5 and check.truncated
    assert check_output("a b c d " * 10).repetition == pytest.approx(1 - 4 / 37)


def test_short_output_has_zero_repetition():
    assert check_output("five five five").repetition == 0.0
    assert check_output("").repetition == 0.0


def test_no_think_at_all():
    check = check_output("The answer is 5.")
    assert check == FormatCheck(well_formed=False, has_answer=False, think_tokens=0,
                                truncated=False, repetition=0.0)


def test_summarize_mix_gives_exact_shares():
    checks = [
        check_output(GOOD),                                  # ok, 7 tokens
        check_output("<think>one two three"),                # truncated, 3 tokens
        check_output("<think>a</think>"),                    # well formed, no answer, 1 token
        check_output("no think here"),                       # 0 tokens
    ]
    summary = summarize(checks)
    assert summary == {
        "well_formed": 0.5, "has_answer": 0.25, "truncated": 0.25, "repetition": 0.0,
        "think_tokens_mean": 11 / 4, "think_tokens_p50": 1.0, "think_tokens_p90": 7.0,
        "think_tokens_max": 7.0, "n": 4,
    }


def test_summarize_repetition_is_mean_and_empty_is_zeros():
    checks = [FormatCheck(True, True, 10, False, 0.2), FormatCheck(True, True, 20, False, 0.6)]
    summary = summarize(checks)
    assert summary["repetition"] == pytest.approx(0.4) and summary["think_tokens_p50"] == 10.0
    assert summarize([]) == {k: 0 for k in summary}


@pytest.mark.parametrize("text,answer", [
    (GOOD, "5"),
    ("<think>x</think>\n  Paris  ", "Paris"),
    ("No reasoning, just 12", "No reasoning, just 12"),
    ("<think>a</think>The answer is 3.50.", "3.50"),
    ("<think>a</think>the answer is: -7!", "-7"),
    ("<think>a</think>The answer is **42**.", "42"),
    ("<think>a</think>The answer is 4. Hope that helps!", "4"),
    ("<think>The answer is 9.</think>Hmm.<think>no</think>The answer is 10.", "10"),
    ("<think>I think the answer is 9.</think>", ""),
    ("The answer is 2, not 3. Wait, the answer is 3.", "3"),
    ("The answer is .", "The answer is ."),
    ("<think>still thinking", "<think>still thinking"),
    # Delegated to answers.extract_final: boxed and GSM8K answers are read too.
    ("<think>a</think>So \\boxed{12}.", "12"),
    ("<think>a</think>5 + 7 = 12\n#### 12", "12"),
])
def test_extract_answer(text, answer):
    assert extract_answer(text) == answer
