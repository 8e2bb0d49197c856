"""Tokenizers: a byte-level BPE trained from scratch, the chat template, <think> tokens.

A tiny model spends most of its parameters on embeddings when the vocabulary is
large (a 49k vocab at width 192 is 9.4M parameters, more than the whole tiny
preset), so from-scratch runs train a small BPE (2k by default) on their own corpus.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tinyreason.model.chat import (
    BOS,
    CHAT_SPECIAL_TOKENS,
    CHAT_TEMPLATE,
    EOS,
    PAD,
    THINK_CLOSE,
    THINK_OPEN,
)
from tinyreason.storage import resolve


def train_bpe(texts: Iterable[str], vocab_size: int, out_dir: str | Path):
    """Train a byte-level BPE on `texts` and save it as a Hugging Face tokenizer dir."""
    # on use: the config layer imports this module, and transformers costs ~3 s per process
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    # Every digit its own token, as SmolLM2's tokenizer does: merged on the corpus, "38"
    # and "83" become unrelated ids and a tiny model must memorise every sum as a fact;
    # split, "29 + 4 = 33" is digit-wise arithmetic it can learn from a few thousand traces.
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(CHAT_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=PAD
    )
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(str(out_dir))
    return tok


def load_tokenizer(path: str, trust_remote_code: bool = False, revision: str | None = None):
    from transformers import AutoTokenizer  # on use: see train_bpe

    return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, revision=revision)


_CACHE: dict = {}


def cached_tokenizer(path: str):
    """One tokenizer per process (a Ray Data worker's), not one per batch: loading costs ~50 ms.
    A `storage.Located` path is fetched from object storage on first use on this node."""
    if path not in _CACHE:
        _CACHE[path] = load_tokenizer(resolve(path))
    return _CACHE[path]


def prepare_chat_tokenizer(tok, install_chatml: bool = False):
    """Make a tokenizer ready for training: a pad token, and with `install_chatml` (a from-scratch
    base) tinyreason's ChatML template, its tokens added when missing and its end of turn as eos.

    Nothing else touches the template: the one a chat stage trains with is settled before its
    kind runs this (model/templates.prepare: the model's own, or what model.chat_template names).
    """
    if install_chatml:
        missing = [t for t in (BOS, EOS) if t not in tok.get_vocab()]
        if missing:
            tok.add_special_tokens({"additional_special_tokens": missing})
        tok.chat_template = CHAT_TEMPLATE
        tok.eos_token = EOS
    if tok.pad_token is None:
        tok.pad_token = PAD if PAD in tok.get_vocab() else tok.eos_token
    return tok


def add_think_tokens(tok) -> int:
    """Add <think> and </think> as single special tokens; returns how many were new.

    As ordinary text `<think>` is 3-4 BPE pieces that a tiny model learns to emit
    as a unit only slowly; as one token it is a single, unmistakable decision.
    """
    have = set(tok.get_vocab())
    new = [t for t in (THINK_OPEN, THINK_CLOSE) if t not in have]
    if new:
        extra = list(getattr(tok, "additional_special_tokens", []) or [])
        tok.add_special_tokens({"additional_special_tokens": extra + new})
    return len(new)


def is_single_token(tok, text: str) -> bool:
    return len(tok(text, add_special_tokens=False)["input_ids"]) == 1
