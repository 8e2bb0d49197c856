"""The text of a GRPO completion or prompt in either of TRL's shapes: a plain string, or a
conversation (a list of messages whose content is a string or a list of text blocks). Shared by
the rewards (rewards.py, claims.py) and the samples a stage logs. Pure: no Ray, no torch."""

from __future__ import annotations

from typing import Any, Mapping


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content blocks: [{"type": "text", "text": ...}]
        return "".join(part.get("text", "") for part in content if isinstance(part, Mapping))
    return "" if content is None else str(content)


def completion_text(completion: str | list) -> str:
    """The text of a completion: a string as is; for a conversational completion
    (a list of messages) its assistant messages' content, joined by newlines."""
    if isinstance(completion, str):
        return completion
    return "\n".join(_content_text(m.get("content")) for m in completion
                     if isinstance(m, Mapping) and m.get("role", "assistant") == "assistant")


def prompt_text(prompt: str | list | None) -> str:
    """A prompt as one line of text for messages: a string as is, for a
    conversation the content of its last user message (the question)."""
    if not isinstance(prompt, list):
        return "" if prompt is None else str(prompt)
    users = [m for m in prompt if isinstance(m, Mapping) and m.get("role") == "user"]
    last = (users or prompt)[-1] if prompt else None
    return _content_text(last.get("content")) if isinstance(last, Mapping) else ""
