"""Real Hugging Face row shapes made canonical, per row schema (data/schema.py validates them).

ShareGPT `conversations` (from/value), prompt + completion columns, preference pairs given as
full conversations that share their prompt, `dataset` renamed `source`, JSON-string
`chat_template_kwargs`: each becomes the schema's canonical row, or a RowError with a reason
code. Pure and per row: it runs inside Ray Data `map_batches`.
"""

import json

from tinyreason.answers import extract_final, gsm8k_gold, math_gold, split_thinking

# Each schema and its family: the columns its rows have (a reasoning row is a chat row)
FAMILY = {"text": "text", "chat": "chat", "reasoning": "chat", "preference": "preference", "prompt": "prompt"}
SCHEMAS = tuple(FAMILY)

# ShareGPT-style sources (`conversations` with from/value) use human/gpt.
ROLE_MAP = {
    "system": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
}


class RowError(ValueError):
    """A row that cannot be normalized; `.reason` is a key of schema.REASONS."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def family(schema: str) -> str:
    """The column family of a schema: text, chat or preference."""
    check_schema(schema)
    return FAMILY[schema]


def check_schema(schema: str) -> None:
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


def as_list(value):
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
    items = as_list(value)
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


def _normalize_prompt(row: dict) -> dict:
    """A question and its gold answer, from GSM8K (`question`, `answer` ending `#### N`),
    MATH (`problem`, `solution` with a boxed answer, or an `answer` column), a prompt with an
    `answer` column, or a chat row whose last assistant turn holds the answer."""
    key, question = _present(row, "prompt", "question", "problem")
    if key is None and row.get("messages") is not None:
        messages = _messages(row.pop("messages"), "user", "bad_messages")
        if not messages or messages[-1]["role"] != "assistant":
            raise RowError("missing_gold")
        prompt, reply = messages[:-1], messages[-1]["content"]
        if not isinstance(reply, str):
            raise RowError("bad_content")
        gold = extract_final(split_thinking(reply).answer or "", fallback="last_number")
        row.update(prompt=prompt, answer=gold)
        return row
    if key is None:
        raise RowError("missing_question")
    row.pop(key)
    row["prompt"] = _messages(question, "user", "bad_prompt")
    answer, solution = row.get("answer"), row.pop("solution", None)
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        answer = str(answer)
    if isinstance(answer, str) and "####" in answer:
        answer = gsm8k_gold(answer)
    if (answer is None or answer == "") and isinstance(solution, str):
        answer = math_gold(solution)
    row["answer"] = answer.strip() if isinstance(answer, str) else answer
    return row


_NORMALIZERS = {
    "text": _normalize_pretrain,
    "chat": _normalize_chat,
    "reasoning": _normalize_chat,
    "preference": _normalize_dpo,
    "prompt": _normalize_prompt,
}


def normalize_row(row: dict, schema: str) -> dict:
    """Canonical row of `schema`; raises RowError(reason) when it cannot be built.

    Returns a new dict: the input row is never mutated (Ray may reuse batches).
    """
    check_schema(schema)
    if not isinstance(row, dict):
        raise RowError("not_a_dict")
    return _NORMALIZERS[schema](_normalize_common(row))


