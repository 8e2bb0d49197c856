"""Row schemas: normalize real Hugging Face shapes, then validate. A stage kind names the
schema its blends hold (train/<kind>.py); nothing here knows the kinds.

Canonical rows:
    text          {"text": str}                                           (pretrain)
    chat          {"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}   (sft)
    reasoning     chat rows whose final assistant turn opens with a <think> block   (reasoning_sft)
    preference    {"prompt": [msg...], "chosen": [assistant msg], "rejected": [assistant msg]}   (dpo)
plus any extra columns the source carried (`source`, `chat_template_kwargs`, scores...).

Both steps run per row inside Ray Data `map_batches`, so they are pure, import
nothing heavy, and signal a bad row with a short reason code rather than an
exception that would kill a blend job over one row in a million.
"""

import collections
import json

from tinyreason.model.chat import THINK_CLOSE, THINK_OPEN

# Each schema and its family: the columns its rows have (a reasoning row is a chat row)
FAMILY = {"text": "text", "chat": "chat", "reasoning": "chat", "preference": "preference"}
SCHEMAS = tuple(FAMILY)
# What a chat (non-reasoning) stage does with assistant turns that carry <think> blocks:
# the reference recipe's stage 1 is chat SFT "without any chain-of-thought".
THINK_POLICIES = ("reject", "keep")
ROLES = ("system", "user", "assistant")

# ShareGPT-style sources (`conversations` with from/value) use human/gpt.
ROLE_MAP = {
    "system": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
}

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
    "too_long": "The row's total characters exceed max_chars.",
}

MAX_SAMPLES = 20


class RowError(ValueError):
    """A row that cannot be normalized; `.reason` is a key of REASONS."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def family(schema: str) -> str:
    """The column family of a schema: text, chat or preference."""
    _check_schema(schema)
    return FAMILY[schema]


def _check_schema(schema: str) -> None:
    # A wrong schema is a bug in a stage kind, not a bad row: fail loudly, never count it.
    if schema not in FAMILY:
        raise ValueError(f"row schema {schema!r} is not one of {SCHEMAS}")


def _present(row: dict, *keys: str):
    """First (key, value) whose value is not None.

    Blending several sources unifies their Arrow schemas, so a column a source
    lacks shows up as None rather than missing; both count as absent.
    """
    for key in keys:
        if row.get(key) is not None:
            return key, row[key]
    return None, None


def _as_list(value):
    """List from a list, tuple or numpy object array (Ray's numpy batch format), else None."""
    if isinstance(value, list):
        return value
    if isinstance(value, tuple):
        return list(value)
    if not isinstance(value, (str, bytes, dict)) and hasattr(value, "tolist"):
        out = value.tolist()
        return out if isinstance(out, list) else None
    return None


def _message(msg, bad: str) -> dict:
    """One canonical {role, content}; other message keys are dropped so every
    source writes the same parquet struct type."""
    if not isinstance(msg, dict):
        raise RowError(bad)
    role = msg.get("role", msg.get("from"))
    role = ROLE_MAP.get(role.strip().lower()) if isinstance(role, str) else None
    if role is None:
        raise RowError("unknown_role")
    content = msg["content"] if "content" in msg else msg.get("value")
    return {"role": role, "content": content}


def _messages(value, default_role: str, bad: str) -> list[dict]:
    """Messages from a bare string (one turn of `default_role`), a message, or a list."""
    if isinstance(value, str):
        return [{"role": default_role, "content": value}]
    if isinstance(value, dict):
        return [_message(value, bad)]
    items = _as_list(value)
    if items is None:
        raise RowError(bad)
    return [_message(m, bad) for m in items]


def _normalize_common(row: dict) -> dict:
    out = dict(row)
    if "dataset" in out:
        dataset = out.pop("dataset")
        if out.get("source") is None:
            out["source"] = dataset
    if "chat_template_kwargs" in out:
        kwargs = out["chat_template_kwargs"]
        if kwargs is None or kwargs == "":
            kwargs = {}
        elif isinstance(kwargs, str):
            try:
                kwargs = json.loads(kwargs)
            except ValueError:
                raise RowError("bad_chat_template_kwargs") from None
        if not isinstance(kwargs, dict):
            raise RowError("bad_chat_template_kwargs")
        out["chat_template_kwargs"] = kwargs
    return out


def _normalize_pretrain(row: dict) -> dict:
    key, text = _present(row, "text", "content", "story")
    if key is None:
        raise RowError("missing_text")
    row.pop(key)
    row["text"] = text
    return row


def _normalize_chat(row: dict) -> dict:
    key, value = _present(row, "messages", "conversations")
    if key is not None:
        # A bare string here is a mis-mapped column, not a one-turn chat.
        if isinstance(value, (str, dict)):
            raise RowError("bad_messages")
        row.pop(key)
        row["messages"] = _messages(value, "user", "bad_messages")
        return row
    reply_key, reply = _present(row, "completion", "response")
    if row.get("prompt") is None or reply_key is None:
        raise RowError("missing_messages")
    prompt = _messages(row.pop("prompt"), "user", "bad_messages")
    row.pop(reply_key)
    row["messages"] = prompt + _messages(reply, "assistant", "bad_messages")
    return row


def _shared_prefix(a: list, b: list) -> int:
    # Capped so each side keeps at least its last turn: identical pairs stay
    # visible to validate as chosen_equals_rejected instead of empty tails.
    limit = min(len(a), len(b)) - 1
    n = 0
    while n < limit and a[n] == b[n]:
        n += 1
    return n


def _normalize_dpo(row: dict) -> dict:
    if row.get("chosen") is None:
        raise RowError("missing_chosen")
    if row.get("rejected") is None:
        raise RowError("missing_rejected")
    chosen = _messages(row["chosen"], "assistant", "bad_chosen")
    rejected = _messages(row["rejected"], "assistant", "bad_rejected")
    prompt = [] if row.get("prompt") is None else _messages(row["prompt"], "user", "bad_prompt")
    # olmo / ultrafeedback mixes ship chosen and rejected as full conversations
    # sharing the prompt; that shared prefix is the real prompt (system included).
    n = _shared_prefix(chosen, rejected)
    if n:
        prompt, chosen, rejected = chosen[:n], chosen[n:], rejected[n:]
    elif prompt:
        k = len(prompt)
        if chosen[:k] == prompt and len(chosen) > k:
            chosen = chosen[k:]
        if rejected[:k] == prompt and len(rejected) > k:
            rejected = rejected[k:]
    if not prompt:
        raise RowError("missing_prompt")
    row.update(prompt=prompt, chosen=chosen, rejected=rejected)
    return row


_NORMALIZERS = {
    "text": _normalize_pretrain,
    "chat": _normalize_chat,
    "reasoning": _normalize_chat,
    "preference": _normalize_dpo,
}


def normalize_row(row: dict, schema: str) -> dict:
    """Canonical row of `schema`; raises RowError(reason) when it cannot be built.

    Returns a new dict: the input row is never mutated (Ray may reuse batches).
    """
    _check_schema(schema)
    if not isinstance(row, dict):
        raise RowError("not_a_dict")
    return _NORMALIZERS[schema](_normalize_common(row))


def _content_problem(content) -> str | None:
    if content is None:
        return "empty_content"
    if not isinstance(content, str):
        return "bad_content"
    return None if content.strip() else "empty_content"


def _turns_problem(messages, last_role: str, last_code: str) -> str | None:
    """Roles known, one optional leading system, then user/assistant alternating
    from user, ending on `last_role`."""
    messages = _as_list(messages)
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
    reply = _as_list(reply)
    if not reply or len(reply) != 1 or not isinstance(reply[0], dict):
        return code
    msg = reply[0]
    if msg.get("role") != "assistant" or _content_problem(msg.get("content")):
        return code
    return None


def _dpo_problem(row: dict) -> str | None:
    for key in ("prompt", "chosen", "rejected"):
        if row.get(key) is None or (_as_list(row[key]) == []):
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


def _total_chars(row: dict, schema: str) -> int:
    if schema == "text":
        return len(row["text"])
    if schema == "preference":
        messages = list(row["prompt"]) + list(row["chosen"]) + list(row["rejected"])
    else:
        messages = row["messages"]
    return sum(len(m["content"]) for m in messages)


def validate_row(row: dict, schema: str, max_chars: int = 100_000, think: str = "reject") -> str | None:
    """None when a normalized row is fit for `schema`, else a REASONS code. `think` is a chat
    schema's policy for assistant turns with <think> blocks (THINK_POLICIES)."""
    _check_schema(schema)
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
    _check_schema(schema)
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
