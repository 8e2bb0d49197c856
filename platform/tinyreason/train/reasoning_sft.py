"""Stage kind `reasoning_sft`: SFT on `<think>...</think>` traces (paper stage 2).

Differs from `sft` in the tokenizer only: `<think>` and `</think>` become single
special tokens (embeddings resized, new rows at the mean embedding) and our
ChatML template with `{% generation %}` markers is enforced, so the trace and
the answer after it are both trained on and nothing else is.
"""

from __future__ import annotations

from tinyreason.config import StageConfig
from tinyreason.train.sft import tokenize_steps, train_loop_per_worker  # noqa: F401  (chat rows, same loop)

KIND = "reasoning_sft"


def prepare_tokenizer(tok, stage: StageConfig):
    from tinyreason.model.tokenizer import add_think_tokens, prepare_chat_tokenizer

    tok = prepare_chat_tokenizer(tok, enforce_template=True)
    if stage.think_tokens:
        add_think_tokens(tok)
    return tok
