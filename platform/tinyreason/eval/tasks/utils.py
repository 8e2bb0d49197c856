"""Filters for the built-in tasks, referenced from their YAMLs with `!function`."""

from tinyreason.eval.health import extract_answer


def final_answers(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """Each generation reduced to the answer it commits to: the text after the last
    </think>, and from "The answer is X." just X (see `health.extract_answer`)."""
    return [[extract_answer(r) for r in group] for group in resps]
