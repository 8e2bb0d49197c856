"""Stage kind `pretrain`: next-token training from scratch on plain text.

Documents are joined with <|endoftext|> and cut into full `max_length` blocks (no padding
at all); each block keeps its document boundaries so attention restarts at every
document. The loop is sft's: with labels equal to input_ids, TRL's SFTTrainer is a plain
causal-LM trainer. The base model's tokenizer is trained on this stage's blend when the
experiment starts from scratch (see base.py).
"""

from __future__ import annotations

import math
from functools import partial
from typing import TYPE_CHECKING

from tinyreason.data import tokenize as T
from tinyreason.model.tokenizer import cached_tokenizer, prepare_chat_tokenizer
from tinyreason.train import sft
from tinyreason.train.kind import LEARNING_RATE, LOSS, Curve, StageKind

if TYPE_CHECKING:
    from tinyreason.config.experiment import StageConfig


def prepare_tokenizer(tok, stage: StageConfig):
    # the chat template rides along so later stages and evaluation see one format
    return prepare_chat_tokenizer(tok)


def tokenize_steps(tokenizer_dir: str, stage: StageConfig) -> list[T.Step]:
    # 512 documents per batch: the only padding is one partial block per batch (<1% at 256 tokens)
    return [T.Step(partial(_tokenize_text, tokenizer_dir=tokenizer_dir, max_length=stage.data.max_length), 512)]


def _tokenize_text(batch, tokenizer_dir: str, max_length: int):
    return T.tokenize_text_batch(batch, cached_tokenizer(tokenizer_dir), max_length)


KIND = StageKind(
    name="pretrain", summary="next-token training from scratch on text", schema="text",
    trl_config=sft.trl_config, train_loop=sft.train_loop_per_worker, tokenize_steps=tokenize_steps,
    prepare_tokenizer=prepare_tokenizer, check=sft.check, packing="documents", rows="blocks", sections=("peft",),
    # validation perplexity is measured once, after training (eval/pretrain.py): a star at the
    # stage's last step beside the training perplexity, exp of the logged loss
    curves=(LOSS, Curve("loss", "perplexity: training (line), held-out (star)", transform=math.exp,
                        point="pretrain/perplexity", log=True), LEARNING_RATE),
)
