"""Row schemas: what a canonical row of each schema must be (normalize.py makes them from real
Hugging Face shapes). A stage kind names the schema its blends hold (train/<kind>.py);
nothing here knows the kinds.

Canonical rows:
    text          {"text": str}                                           (pretrain)
    chat          {"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}   (sft)
    reasoning     chat rows whose final assistant turn opens with a <think> block   (reasoning_sft)
    preference    {"prompt": [msg...], "chosen": [assistant msg], "rejected": [assistant msg]}   (dpo)
    prompt        {"prompt": [msg..., user msg], "answer": "<gold final answer>"}   (grpo)
plus any extra columns the source carried (`source`, `chat_template_kwargs`, scores...).

Validation runs per row inside Ray Data `map_batches`, so it is pure, imports nothing
heavy, and signals a bad row with a short reason code rather than an exception that
would kill a blend job over one row in a million.
"""

import collections

# normalize_row, RowError, family and SCHEMAS are read through this module by the blend builder
from tinyreason.data.normalize import SCHEMAS, RowError, as_list, check_schema, family, normalize_row  # noqa: F401
from tinyreason.model.chat import THINK_CLOSE, THINK_OPEN

# What a chat (non-reasoning) stage does with assistant turns that carry <think> blocks:
# the reference recipe's stage 1 is chat SFT "without any chain-of-thought".
THINK_POLICIES = ("reject", "keep")
ROLES = ("system", "user", "assistant")

# Stable codes: the dataset card prints these sentences next to reject counts.
REASONS = {
    "not_a_dict": "The row is not a mapping of column names to values.",
    "missing_text": "A pretrain row has no `text` (nor `content` / `story`) column.",
    "bad_text": "The `text` value is not a string.",
    "empty_text": "The `text` value is empty or whitespace only.",
    "missing_messages": "A chat row has no messages (`messages`, `conversations`, or prompt + completion).",
    "bad_messages": "The messages value is not a list of {role, content} mappings.",
    "unknown_role": "A message role is not system, user or assistant (or human/gpt).",
    "bad_content": "A message content is not a string (a number, list or mapping).",
    "empty_content": "A message content is empty, whitespace only, or missing.",
    "misplaced_system": "A system message appears after the first turn, or more than once.",
    "bad_turn_order": "User and assistant turns do not strictly alternate starting with user.",
    "last_not_assistant": "The conversation does not end with an assistant turn.",
    "missing_think": "The final assistant turn has no <think>...</think> block.",
    "think_in_chat": "An assistant turn has a <think> block, and this chat stage trains without thinking "
                     "(data.think_rows: keep keeps such rows).",
    "multiple_think": "An assistant turn has more than one <think> or </think> tag.",
    "unbalanced_think": "An assistant turn has <think> without </think>, or the reverse.",
    "misordered_think": "</think> comes before <think>.",
    "text_before_think": "An assistant turn has text before its <think> tag.",
    "empty_answer": "Nothing but whitespace follows </think>.",
    "bad_chat_template_kwargs": "`chat_template_kwargs` is neither a mapping nor a JSON object string.",
    "missing_prompt": "A preference row has no prompt and no shared conversation prefix.",
    "bad_prompt": "The prompt is neither a string nor a list of messages.",
    "prompt_not_user_last": "The prompt does not end with a user turn.",
    "missing_chosen": "A preference row has no `chosen` value.",
    "missing_rejected": "A preference row has no `rejected` value.",
    "bad_chosen": "`chosen` is not exactly one non-empty assistant turn after the prompt.",
    "bad_rejected": "`rejected` is not exactly one non-empty assistant turn after the prompt.",
    "chosen_equals_rejected": "`chosen` and `rejected` are the same text: no preference signal.",
    "missing_question": "A prompt row has no question (`prompt`, `question` or `problem`, or chat `messages`).",
    "missing_gold": "A prompt row has no gold answer: no `answer`, no `#### N`, no \\boxed{} in its `solution`, "
                    "and no answer in a final assistant turn.",
    "too_long": "The row's total characters exceed max_chars.",
}

MAX_SAMPLES = 20


def _content_problem(content) -> str | None:
    if content is None:
        return "empty_content"
    if not isinstance(content, str):
        return "bad_content"
    return None if content.strip() else "empty_content"


def _turns_problem(messages, last_role: str, last_code: str) -> str | None:
    """Roles known, one optional leading system, then user/assistant alternating
    from user, ending on `last_role`."""
    messages = as_list(messages)
    if messages is None:
        return "bad_messages"
    if not messages:
        return "missing_messages"
    for msg in messages:
        if not isinstance(msg, dict):
            return "bad_messages"
        if msg.get("role") not in ROLES:
            return "unknown_role"
        problem = _content_problem(msg.get("content"))
        if problem:
            return problem
    turns = messages[1:] if messages[0]["role"] == "system" else messages
    for i, msg in enumerate(turns):
        if msg["role"] == "system":
            return "misplaced_system"
        if msg["role"] != ("user" if i % 2 == 0 else "assistant"):
            return "bad_turn_order"
    if not turns or turns[-1]["role"] != last_role:
        return last_code
    return None


def _think_problem(content: str, required: bool) -> str | None:
    opens, closes = content.count(THINK_OPEN), content.count(THINK_CLOSE)
    if opens == 0 and closes == 0:
        return "missing_think" if required else None
    if opens > 1 or closes > 1:
        return "multiple_think"
    if opens != closes:
        return "unbalanced_think"
    start, end = content.index(THINK_OPEN), content.index(THINK_CLOSE)
    if end < start:
        return "misordered_think"
    if content[:start].strip():
        return "text_before_think"
    if not content[end + len(THINK_CLOSE):].strip():
        return "empty_answer"
    return None


def _reasoning_problem(messages: list[dict]) -> str | None:
    # Earlier assistant turns may carry no block: multi-turn sources (smoltalk2)
    # and Qwen3-style templates strip reasoning from history. A block that is
    # present must still be well formed, and the final turn must have one.
    assistant = [m["content"] for m in messages if m["role"] == "assistant"]
    for i, content in enumerate(assistant):
        problem = _think_problem(content, required=i == len(assistant) - 1)
        if problem:
            return problem
    return None


def _reply_problem(reply, code: str) -> str | None:
    reply = as_list(reply)
    if not reply or len(reply) != 1 or not isinstance(reply[0], dict):
        return code
    msg = reply[0]
    if msg.get("role") != "assistant" or _content_problem(msg.get("content")):
        return code
    return None


def _dpo_problem(row: dict) -> str | None:
    for key in ("prompt", "chosen", "rejected"):
        if row.get(key) is None or (as_list(row[key]) == []):
            return f"missing_{key}"
    problem = _turns_problem(row["prompt"], "user", "prompt_not_user_last")
    if problem:
        return "bad_prompt" if problem == "bad_messages" else problem
    problem = _reply_problem(row["chosen"], "bad_chosen") or _reply_problem(row["rejected"], "bad_rejected")
    if problem:
        return problem
    if row["chosen"][0]["content"] == row["rejected"][0]["content"]:
        return "chosen_equals_rejected"
    return None


def _chat_think_problem(messages: list[dict], think: str) -> str | None:
    """A chat stage's rule for <think> blocks: reject rows that have one, or (think="keep")
    keep them when well formed. Malformed markup is never trained on."""
    for m in messages:
        if m["role"] != "assistant" or (THINK_OPEN not in m["content"] and THINK_CLOSE not in m["content"]):
            continue
        if think == "reject":
            return "think_in_chat"
        problem = _think_problem(m["content"], required=False)
        if problem:
            return problem
    return None


def _prompt_problem(row: dict) -> str | None:
    if row.get("prompt") is None:
        return "missing_question"
    problem = _turns_problem(row["prompt"], "user", "prompt_not_user_last")
    if problem:
        return "bad_prompt" if problem == "bad_messages" else problem
    answer = row.get("answer")
    return None if isinstance(answer, str) and answer.strip() else "missing_gold"


def _total_chars(row: dict, schema: str) -> int:
    if schema == "text":
        return len(row["text"])
    if schema == "prompt":
        return sum(len(m["content"]) for m in row["prompt"]) + len(row["answer"])
    if schema == "preference":
        messages = list(row["prompt"]) + list(row["chosen"]) + list(row["rejected"])
    else:
        messages = row["messages"]
    return sum(len(m["content"]) for m in messages)


def validate_row(row: dict, schema: str, max_chars: int = 100_000, think: str = "reject") -> str | None:
    """None when a normalized row is fit for `schema`, else a REASONS code. `think` is a chat
    schema's policy for assistant turns with <think> blocks (THINK_POLICIES)."""
    check_schema(schema)
    if think not in THINK_POLICIES:
        raise ValueError(f"think={think!r} is not one of {THINK_POLICIES}")
    if not isinstance(row, dict):
        return "not_a_dict"
    if schema == "text":
        text = row.get("text")
        if text is None:
            return "missing_text"
        if not isinstance(text, str):
            return "bad_text"
        problem = None if text.strip() else "empty_text"
    elif schema == "preference":
        problem = _dpo_problem(row)
    elif schema == "prompt":
        problem = _prompt_problem(row)
    else:
        if row.get("messages") is None:
            return "missing_messages"
        problem = _turns_problem(row["messages"], "assistant", "last_not_assistant")
        if problem is None:
            problem = (_reasoning_problem(row["messages"]) if schema == "reasoning"
                       else _chat_think_problem(row["messages"], think))
    if problem is None and _total_chars(row, schema) > max_chars:
        problem = "too_long"
    return problem


def check_rows(
    rows: list[dict], schema: str, max_chars: int = 100_000, think: str = "reject"
) -> tuple[list[dict], collections.Counter, list[dict]]:
    """Normalize and validate rows: (kept, Counter of reject reasons, <= 20 rejected samples).

    Samples show the normalized row when normalizing worked (what validate saw),
    else the raw row; each carries `_reject_reason`.
    """
    check_schema(schema)
    kept, reasons, samples = [], collections.Counter(), []
    for raw in rows:
        row = raw
        try:
            row = normalize_row(raw, schema)
            reason = validate_row(row, schema, max_chars, think)
        except RowError as err:
            reason = err.reason
        if reason is None:
            kept.append(row)
            continue
        reasons[reason] += 1
        if len(samples) < MAX_SAMPLES:
            sample = dict(row) if isinstance(row, dict) else {"_raw": repr(row)[:500]}
            sample["_reject_reason"] = reason
            samples.append(sample)
    return kept, reasons, samples
