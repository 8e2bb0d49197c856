"""What a completion's final answer is, and whether it is right.

The one owner of answer extraction and comparison: the GRPO rewards, the
held-out probe's health numbers, the lm-eval filters and the blend normalizer
(gold answers of GSM8K / MATH rows) all read answers through this module, so a
reward and a benchmark can never disagree on what "correct" means.

A completion is split at `</think>`: reasoning before, answer after. Inside the
answer part the final answer is, in this order, the last `\\boxed{...}`, the
last `#### N` (GSM8K), the last "The answer is X", or on request the last number.
Pure and stdlib-only, so it runs inside Ray Data batches and reward calls alike.
"""

import re
from dataclasses import dataclass
from fractions import Fraction

from tinyreason.model.chat import THINK_CLOSE, THINK_OPEN

FALLBACKS = (None, "last_number")

# Why a completion was graded the way it was; rewards and reports count these.
CORRECT, WRONG, NO_ANSWER, UNCLOSED, AMBIGUOUS = "correct", "wrong", "no_answer", "unclosed", "ambiguous"

_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_HASHES_RE = re.compile(r"####[ \t]*")
# "The answer is X" and "The final answer is: X"; the last one wins so that a
# restated question earlier in the text does not.
_ANSWER_IS_RE = re.compile(r"\bthe (?:final )?answer is\b\s*:?\s*", re.IGNORECASE)
# A sentence ends at . ! ? followed by a space or the end; "3.50" does not end one.
_SENTENCE_END_RE = re.compile(r"[.!?](?=\s|$)")
_TRAILING = " \t.,;:!?"
# A number as models write one: sign, currency, thousands commas, decimals,
# a fraction bar. The look-behind keeps "x2" or "1.5.3" from yielding digits.
_NUMBER_TEXT = r"[-+\u2212]?\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?"
_LAST_NUMBER_RE = re.compile(rf"(?<![\w.]){_NUMBER_TEXT}")
_NUMERIC_RE = re.compile(
    r"^\$?(?P<sign>[-+\u2212]?)\$?(?P<num>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?P<exp>e[-+]?\d+)?"
    r"(?:\s*/\s*(?P<den>\d+))?(?:\s*(?:%|[a-z]+))?$"
)
_FRAC_RE = re.compile(r"\\[dt]?frac\{\s*(\d+)\s*\}\{\s*(\d+)\s*\}")
_TEXT_RE = re.compile(r"\\(?:text|textbf|mathrm)\{([^{}]*)\}")
_LATEX_NOISE = ("\\!", "\\,", "\\;", "\\ ", "^\\circ", "^{\\circ}", "\\left", "\\right")


@dataclass(frozen=True)
class Split:
    """A completion cut at its thinking.

    Two or more blocks: the answer is the text after the LAST `</think>`, as
    long as no `<think>` reopens after it; text between blocks counts as
    thinking. A model that thinks, talks, thinks again and then answers has
    committed to that last answer; `well_formed` (and the `think_format`
    reward) is where the extra block is penalised, not correctness.
    Text before the first `<think>` belongs to neither part.
    """

    thinking: str | None  # from the first <think> to the last </think>; None without any tag
    answer: str | None  # after the last </think>; the whole text without tags; None if unclosed
    closed: bool  # a </think> comes after the last <think>
    opened: bool  # a <think> occurs at all
    well_formed: bool  # exactly one <think> at the start (after whitespace), one </think> after it


def split_thinking(text: str) -> Split:
    last_open, last_close = text.rfind(THINK_OPEN), text.rfind(THINK_CLOSE)
    opened, closed = last_open >= 0, last_close > last_open
    if not opened and not closed:
        return Split(thinking=None, answer=text, closed=False, opened=False, well_formed=False)
    first_open = text.find(THINK_OPEN)
    start = first_open + len(THINK_OPEN) if opened else 0
    if not closed:
        # Runaway thinking: whatever it says, nothing was committed as an answer.
        return Split(thinking=text[start:], answer=None, closed=False, opened=True, well_formed=False)
    well_formed = (
        text.count(THINK_OPEN) == 1 and text.count(THINK_CLOSE) == 1
        and text.lstrip().startswith(THINK_OPEN)
    )
    return Split(thinking=text[start:last_close], answer=text[last_close + len(THINK_CLOSE):],
                 closed=True, opened=opened, well_formed=well_formed)


def answer_for_metric(completion: str) -> tuple[str, str | None]:
    """What a benchmark's metric is shown, and why it is empty when it is.

    The text after the last `</think>` (leading whitespace dropped, as lm-eval does); the whole
    completion when it never opens `<think>` (a chat model's reply). A trace that never closes
    committed to nothing: "" with reason UNCLOSED, and a closed one with nothing after it: ""
    with NO_ANSWER. The metric then scores "" (wrong for every benchmark metric we know of,
    IFEval's included: it fails an empty response), and the reason is counted.
    """
    split = split_thinking(completion)
    if split.answer is None:
        return "", UNCLOSED
    answer = split.answer.lstrip()
    return answer, (None if answer.strip() else NO_ANSWER)


# ---------------------------------------------------------------- extraction

def _brace_body(text: str, open_at: int) -> tuple[str, int] | None:
    """The text inside the brace opened at `open_at`, nested braces included, and
    the index after its closing brace; None when the brace never closes."""
    depth = 0
    for i in range(open_at, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[open_at + 1:i], i + 1
    return None


def _boxed(text: str) -> list[str]:
    found, after = [], 0
    for match in _BOXED_RE.finditer(text):
        if match.start() < after:  # a \boxed nested inside the previous one
            continue
        body = _brace_body(text, match.end() - 1)
        if body is not None and body[0].strip():
            found.append(body[0].strip())
            after = body[1]
    return found


def _hashes(text: str) -> list[str]:
    # Numbers only: GSM8K golds always are, and a markdown heading such as
    # "#### Final answer" must not count as a second, different answer.
    values = (text[m.end():].split("\n", 1)[0].strip().rstrip(_TRAILING) for m in _HASHES_RE.finditer(text))
    return [v for v in values if parse_number(v) is not None]


def _answer_is(text: str) -> list[str]:
    matches = list(_ANSWER_IS_RE.finditer(text))
    found = []
    for match, following in zip(matches, [*matches[1:], None]):
        # Each value stops where the next "the answer is" starts, so "what the
        # answer is, but the answer is 5" gives one candidate, not two.
        value = text[match.end():following.start() if following else len(text)].split("\n", 1)[0]
        sentence_end = _SENTENCE_END_RE.search(value)
        if sentence_end:
            value = value[:sentence_end.start()]
        # Markdown bold ("The answer is **42**.") is common in distilled traces.
        value = value.rstrip(_TRAILING).strip("*").rstrip(_TRAILING).strip()
        if value:
            found.append(value)
    return found


def final_answers(answer_text: str) -> list[str]:
    """Every final-answer statement in the answer part: boxed, then ####, then
    "The answer is", each in text order."""
    return [*_boxed(answer_text), *_hashes(answer_text), *_answer_is(answer_text)]


def extract_final(answer_text: str, fallback: str | None = None) -> str | None:
    """The final answer stated in `answer_text` (the part after `</think>`): the
    last \\boxed{}, else the last `#### N`, else the last "The answer is X";
    with fallback="last_number", else the last number. None when none is found."""
    if fallback not in FALLBACKS:
        raise ValueError(f"fallback={fallback!r} is not one of {FALLBACKS}; use None or 'last_number'")
    for found in (_boxed(answer_text), _hashes(answer_text), _answer_is(answer_text)):
        if found:
            return found[-1]
    if fallback == "last_number":
        numbers = _LAST_NUMBER_RE.findall(answer_text)
        return numbers[-1].strip() if numbers else None
    return None


def is_ambiguous(answer_text: str) -> bool:
    """True when the answer part states two final answers that differ.

    Scored as wrong: under RL a policy that may list candidates ("The answer is
    5. The answer is 7.") learns to hedge, since one of several guesses is more
    often right than one. Restating the same answer ("**12** ... \\boxed{12}") is fine.
    """
    found = final_answers(answer_text)
    return any(not answers_match(other, found[0]) for other in found[1:])


# ---------------------------------------------------------------- comparison

def _canonical(text: str) -> str:
    """Formatting removed: surrounding whitespace, bold, trailing punctuation,
    $...$ and \\boxed{} wrappers, LaTeX spacing, \\text{}, \\frac{a}{b} -> a/b."""
    value = text.strip().strip("*").rstrip(_TRAILING).strip()
    for left, right in (("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if len(value) > len(left) + len(right) and value.startswith(left) and value.endswith(right):
            value = value[len(left):-len(right)].strip()
    wrapper = _BOXED_RE.match(value)
    body = _brace_body(value, wrapper.end() - 1) if wrapper else None
    if body is not None and body[1] == len(value):
        value = body[0].strip()
    for noise in _LATEX_NOISE:
        value = value.replace(noise, "")
    value = _TEXT_RE.sub(r"\1", value).replace("\\%", "%").replace("\\$", "$")
    return _FRAC_RE.sub(r"\1/\2", value).strip().rstrip(_TRAILING)


def parse_number(text: str) -> Fraction | None:
    """The exact value of a numeric answer, or None when it is not one.

    Accepted: sign (also U+2212), a leading $, thousands commas in valid groups
    ("1,200"; "1,20" is not a number), decimals, exponents, a/b and \\frac{a}{b},
    then an optional % or one unit word ("12 apples"). The % is read as a unit,
    not as /100: a GSM8K question asking "what percent" has gold "12", and
    "12%" must match it; "0.12" does not.
    """
    match = _NUMERIC_RE.match(_canonical(text).lower())
    if not match:
        return None
    value = Fraction(match["num"].replace(",", "") + (match["exp"] or ""))
    if match["den"] is not None:
        if int(match["den"]) == 0:
            return None
        value /= int(match["den"])
    return -value if match["sign"] in ("-", "\u2212") else value


def _text_key(text: str) -> str:
    return "".join(_canonical(text).casefold().split()).strip("\"'`")


def answers_match(pred: str | None, gold: str | int | float | None) -> bool:
    """Whether `pred` states the same answer as `gold`.

    Numbers compare by exact value (Fraction): 12 == 12.0 == $12 == 12% ==
    "12 apples", 1,200 == 1200, 3/4 == 0.75 == \\frac{3}{4}; no tolerance, so
    0.33 != 1/3. A number never matches a non-number. Anything else compares
    case-insensitively with whitespace, bold and trailing punctuation removed
    ("Yes." == "yes"). None on either side is never a match.
    """
    if pred is None or gold is None:
        return False
    pred, gold = str(pred), str(gold)
    pred_num, gold_num = parse_number(pred), parse_number(gold)
    if pred_num is not None or gold_num is not None:
        return pred_num == gold_num
    key = _text_key(gold)
    return bool(key) and _text_key(pred) == key


def answer_key(text: str | None) -> str | None:
    """A key that two answers share exactly when `answers_match` says they match: the exact
    value for numbers ("12", "12.0", "$12" -> "=12"), the case- and space-free text otherwise.
    Majority votes count answers by it; None for no answer."""
    if text is None:
        return None
    value = parse_number(text)
    if value is not None:
        return f"={value}"
    key = _text_key(text)
    return f"~{key}" if key else None


# ---------------------------------------------------------------- grading

@dataclass(frozen=True)
class Grade:
    correct: bool
    reason: str  # CORRECT, WRONG, NO_ANSWER, UNCLOSED or AMBIGUOUS
    answer: str | None  # the final answer compared with the gold one


def grade(completion: str, gold: str | int | float, fallback: str | None = None) -> Grade:
    """Grade one completion against its gold answer.

    No answer (unclosed <think>, nothing after </think>, an answer only inside
    the think block) and two different final answers are wrong. An answer part
    with no marker at all ("5", as chat models reply) is compared whole.
    """
    split = split_thinking(completion)
    if split.answer is None:
        return Grade(False, UNCLOSED, None)
    body = split.answer.strip()
    if not body:
        return Grade(False, NO_ANSWER, None)
    if is_ambiguous(body):
        return Grade(False, AMBIGUOUS, None)
    final = extract_final(body, fallback) or body
    ok = answers_match(final, gold)
    return Grade(ok, CORRECT if ok else WRONG, final)


# ---------------------------------------------------------------- gold answers

def gsm8k_gold(answer_field: str) -> str | None:
    """GSM8K's gold answer: the text after the last `####` ("... #### 72" -> "72");
    None when the field has none, for the normalizer to reject the row."""
    found = _hashes(answer_field or "")
    return found[-1] if found else None


def math_gold(solution: str) -> str | None:
    """MATH's gold answer: the content of the solution's last \\boxed{} (nested
    braces kept: "\\frac{1}{2}"); None when there is none."""
    found = _boxed(solution or "")
    return found[-1] if found else None
