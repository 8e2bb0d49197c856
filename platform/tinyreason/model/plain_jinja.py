"""A chat template for plain Jinja2: what llama.cpp, Ollama and most chat servers render.

transformers' templates may carry `{% generation %}` (tinyreason's ChatML does, for TRL's
assistant_only_loss); plain Jinja2 fails on it. Every stage's export carries its template
without such tags, checked to render a multi-turn conversation exactly as transformers does,
and the GGUF exports (model/gguf_export.py) write the same text.
"""

from __future__ import annotations

import re
from pathlib import Path

import jinja2

from tinyreason.model.templates import SETTING, TemplateError, render_kwargs

PLAIN_TEMPLATE = "chat_template.plain.jinja"  # beside a stage's exported model


# `{% generation %}` is a transformers-only tag (assistant masks for TRL); llama.cpp and plain
# Jinja2 fail on it. One with whitespace control becomes an empty expression with the same
# control, so stripping it never moves a newline.
_GENERATION_TAG = re.compile(r"\{%(-?)\s*(?:end)?generation\s*(-?)%\}")


def plain_template(template: str) -> str:
    """The chat template without transformers-only tags, renderable by plain Jinja2."""
    return _GENERATION_TAG.sub(_empty_like, template)


def _empty_like(tag: re.Match) -> str:
    left, right = tag[1], tag[2]
    return "{{" + left + " '' " + right + "}}" if left or right else ""


def render_plain(template: str, messages: list[dict], add_generation_prompt: bool = False, **kwargs) -> str:
    """A template rendered by plain Jinja2 with the block handling every chat server uses
    (trim_blocks, lstrip_blocks: transformers', vLLM's and llama.cpp's)."""
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template).render(messages=messages, add_generation_prompt=add_generation_prompt, **kwargs)


PLAIN_PROBE = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 7 plus 5?"},
               {"role": "assistant", "content": "<think>\n7 plus 5 is 12.\n</think>\n12"},
               {"role": "user", "content": "And 7 plus 6?"}]


def write_plain_template(tok, path: str | Path) -> Path:
    """Write the tokenizer's template as plain Jinja2, after checking that plain Jinja2 renders a
    multi-turn conversation (with and without the generation prompt) exactly as transformers does."""
    plain = plain_template(tok.chat_template)
    kwargs = {**tok.special_tokens_map, **render_kwargs(tok.chat_template)}
    for gen in (False, True):
        want = tok.apply_chat_template(PLAIN_PROBE, tokenize=False, add_generation_prompt=gen, **kwargs)
        try:
            got = render_plain(plain, PLAIN_PROBE, gen, **kwargs)
        except jinja2.TemplateError as e:
            raise TemplateError(f"{path}: the chat template does not render in plain Jinja2 ({e}); fix: give "
                                f"{SETTING} a template without transformers-only extensions") from None
        if got != want:
            raise TemplateError(f"{path}: plain Jinja2 renders the chat template differently from transformers "
                                f"({got[:60]!r} vs {want[:60]!r}); fix: give {SETTING} a template without "
                                "transformers-only extensions")
    Path(path).write_text(plain, encoding="utf-8")
    return Path(path)
