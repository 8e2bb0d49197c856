"""Stage kind `reasoning_sft`: SFT on `<think>...</think>` traces (paper stage 2).

Differs from `sft` in its rows and tokenizer only: every final assistant turn opens with
a well-formed think block (the `reasoning` row schema), and `<think>` and `</think>` are
single tokens: the family's own where it has them (Qwen3's ids are reused), else added as
special tokens (embeddings grown, each new row the mean of the rows of its text's pieces:
model/presets.fit_embeddings). The model's own chat template stays (model/templates.py): the
whole assistant turn, trace, answer and end of turn, is trained on and nothing else is. The
worker loop is sft's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tinyreason.model.tokenizer import add_think_tokens, prepare_chat_tokenizer
from tinyreason.train import sft
from tinyreason.train.kind import StageKind

if TYPE_CHECKING:
    from tinyreason.config.experiment import StageConfig


def prepare_tokenizer(tok, stage: StageConfig):
    tok = prepare_chat_tokenizer(tok)
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
