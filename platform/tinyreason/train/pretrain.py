"""Stage kind `pretrain`: next-token training from scratch on plain text.

Documents are joined with <|endoftext|> and cut into full `max_length` blocks
(no padding at all); each block keeps its document boundaries so attention
restarts at every document. The loop itself is the SFT loop: with labels equal
to input_ids, TRL's SFTTrainer is a plain causal-LM trainer.
"""

from __future__ import annotations

from functools import partial

from tinyreason.config import StageConfig
from tinyreason.train.sft import cached_tokenizer, train_loop_per_worker  # noqa: F401  (the same loop)

KIND = "pretrain"


def prepare_tokenizer(tok, stage: StageConfig):
    from tinyreason.model.tokenizer import prepare_chat_tokenizer

    # the chat template rides along so later stages and evaluation see one format
    return prepare_chat_tokenizer(tok)


def tokenize_steps(tokenizer_dir: str, stage: StageConfig) -> list:
    from tinyreason.data.tokenize import Step

    # 512 documents per batch: the only padding is one partial block per batch (<1% at 256 tokens)
    return [Step(partial(_tokenize_text, tokenizer_dir=tokenizer_dir, max_length=stage.data.max_length), 512)]


def _tokenize_text(batch, tokenizer_dir: str, max_length: int):
    from tinyreason.data.tokenize import tokenize_text_batch

    return tokenize_text_batch(batch, cached_tokenizer(tokenizer_dir), max_length)
