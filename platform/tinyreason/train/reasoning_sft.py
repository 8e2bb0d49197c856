"""Stage kind `reasoning_sft`: SFT on `<think>...</think>` traces (paper stage 2).

Differs from `sft` in its rows and tokenizer only: every final assistant turn opens with
a well-formed think block (the `reasoning` row schema), `<think>` and `</think>` become
single special tokens (embeddings grown, new rows at the mean embedding), and our ChatML
template with `{% generation %}` markers is enforced, so the trace and the answer after
it are both trained on and nothing else is. The worker loop is sft's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tinyreason.model.tokenizer import add_think_tokens, prepare_chat_tokenizer
from tinyreason.train import sft
from tinyreason.train.kind import StageKind

if TYPE_CHECKING:
    from tinyreason.config.experiment import StageConfig


def prepare_tokenizer(tok, stage: StageConfig):
    tok = prepare_chat_tokenizer(tok, enforce_template=True)
    if stage.think_tokens:
        add_think_tokens(tok)
    return tok


KIND = StageKind(
    name="reasoning_sft", summary="SFT on <think> traces (paper stage 2)", schema="reasoning",
    trl_config=sft.trl_config, train_loop=sft.train_loop_per_worker, tokenize_steps=sft.tokenize_steps,
    prepare_tokenizer=prepare_tokenizer, check=sft.check, packing="chat", rows="packed bins", think_tokens=True,
    sections=("peft",),
    curves=sft.SFT_CURVES, summary_metrics=("mean_token_accuracy", "entropy"),
)
