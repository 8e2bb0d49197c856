"""Tokenizing and packing are pure functions: masks, boundaries, best-fit decreasing."""

import random

import pytest

from tinyreason.data import synthetic
from tinyreason.data.tokenize import (
    IGNORE,
    pack_bfd,
    pack_documents,
    real_token_share,
    tokenize_chat,
    tokenize_preference,
)
from tinyreason.model.chat import EOS, THINK_CLOSE, THINK_OPEN
from tinyreason.model.tokenizer import add_think_tokens, is_single_token, prepare_chat_tokenizer, train_bpe


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    texts = [r["text"] for r in synthetic.pretrain_rows(400, 0)]
    t = prepare_chat_tokenizer(train_bpe(texts, 400, tmp_path_factory.mktemp("tok")))
    add_think_tokens(t)
    return t


def test_think_tokens_are_single_and_template_marks_generation(tok):
    assert is_single_token(tok, THINK_OPEN) and is_single_token(tok, THINK_CLOSE)
    assert "{% generation %}" in tok.chat_template


def test_chat_labels_cover_exactly_the_assistant_reply(tok):
    row = synthetic.reasoning_rows(1, 0)[0]
    enc = tokenize_chat(tok, row["messages"], max_length=512)
    trained = [t for t, lbl in zip(enc["input_ids"], enc["labels"]) if lbl != IGNORE]
    assert tok.decode(trained) == row["messages"][-1]["content"] + EOS
    assert enc["labels"][0] == IGNORE  # the system prompt is context, not target


def test_an_overlong_row_is_dropped_by_default_and_truncating_away_every_target_drops_it_too(tok):
    row = synthetic.chat_rows(1, 0)[0]
    dropped = tokenize_chat(tok, row["messages"], max_length=5)
    assert dropped["input_ids"] == [] and dropped["_fate"] == "dropped_overlong" and dropped["_tokens"] > 5
    assert tokenize_chat(tok, row["messages"], max_length=5, overlong="truncate")["_fate"] == "no_labels"


def _examples(lengths):
    return [{"input_ids": list(range(n)), "labels": list(range(n))} for n in lengths]


def test_bfd_keeps_every_token_and_boundary():
    rng = random.Random(0)
    lengths = [rng.randint(5, 120) for _ in range(300)]
    packed = pack_bfd(_examples(lengths), max_length=128)
    assert sorted(n for p in packed for n in p["seq_lengths"]) == sorted(lengths)
    assert all(len(p["input_ids"]) == sum(p["seq_lengths"]) <= 128 for p in packed)
    assert real_token_share(packed, 128) > 0.95


def test_bfd_beats_padding_on_a_chat_like_length_mix():
    rng = random.Random(1)
    lengths = [min(512, int(rng.lognormvariate(4.5, 0.7))) + 1 for _ in range(2000)]
    padded = real_token_share(_examples(lengths), 512)
    packed = real_token_share(pack_bfd(_examples(lengths), 512), 512)
    assert packed > 0.95 > padded


def test_documents_are_cut_into_full_blocks():
    blocks = pack_documents([list(range(50)), list(range(70)), list(range(30))], max_length=64)
    assert [len(b["input_ids"]) for b in blocks] == [64, 64, 22]
    assert blocks[0]["seq_lengths"] == [50, 14] and blocks[1]["seq_lengths"] == [56, 8]


def test_preference_split_and_prompt_cut_from_the_left(tok):
    row = synthetic.preference_rows(1, 0)[0]
    full = tokenize_preference(tok, row, max_length=512, max_prompt_length=None)
    cut = tokenize_preference(tok, row, max_length=512, max_prompt_length=10)
    assert len(cut["prompt_ids"]) == 10 and cut["prompt_ids"] == full["prompt_ids"][-10:]
    assert tok.decode(full["chosen_ids"]).startswith(row["chosen"][0]["content"])
    assert full["chosen_ids"] != full["rejected_ids"]


def test_packed_rows_attend_only_within_their_own_example(tiny_llama):
    """Two examples packed into one row, a third alone in the next: every token's logits equal
    those of its example run on its own, so no attention crosses an example boundary."""
    import torch

    from tinyreason.data.tokenize import IGNORE, collate_packed_rows

    model = tiny_llama().eval()
    a, b, c = [3, 4, 5, 6, 7], [8, 9, 10, 11, 12, 13, 14], [15, 16, 17, 18]
    batch = collate_packed_rows([{"input_ids": a + b, "labels": a + b, "seq_lengths": [5, 7]},
                                 {"input_ids": c, "labels": c, "seq_lengths": [4]}], pad_token_id=0)
    assert batch["input_ids"].shape == (2, 12) and "attention_mask" not in batch
    assert batch["position_ids"].tolist() == [list(range(5)) + list(range(7)), list(range(4)) + list(range(8))]
    assert batch["labels"][0, 0] == IGNORE and batch["labels"][0, 5] == IGNORE and batch["labels"][0, 6] == 9
    assert (batch["labels"][1, 4:] == IGNORE).all()  # the pad tail is never a target
    with torch.no_grad():  # use_cache=False, as every trainer sets it: a cache turns packed-mask detection off
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        alone = [model(input_ids=torch.tensor([x])).logits[0] for x in (a, b, c)]
    torch.testing.assert_close(packed[0, :5], alone[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(packed[0, 5:12], alone[1], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(packed[1, :4], alone[2], atol=1e-5, rtol=1e-4)


def test_padding_free_batch_gives_the_packed_rows_loss(tiny_llama):
    """The padding-free layout, checked without a varlen kernel: TRL's padding-free collator
    joins the packed rows into one sequence, and the loss over it equals the loss over the
    same rows kept as rows. SDPA here masks the joined sequence block-causally from its
    position ids; a varlen kernel reads the boundaries instead."""
    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from tinyreason.data.tokenize import IGNORE, collate_packed_rows

    model = tiny_llama()
    a, b, c = [3, 4, 5, 6, 7], [8, 9, 10, 11, 12, 13, 14], [15, 16, 17, 18]
    mask = lambda x, prompt: [IGNORE] * prompt + x[prompt:]  # noqa: E731  (prompt tokens are not targets)
    examples = [{"input_ids": a + b, "labels": mask(a, 2) + mask(b, 3), "seq_lengths": [5, 7]},
                {"input_ids": c, "labels": mask(c, 1), "seq_lengths": [4]}]
    rows = collate_packed_rows(examples, pad_token_id=0)
    joined = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(examples)
    assert joined["input_ids"].shape == (1, 16) and "attention_mask" not in joined  # no pad tail at all
    assert joined["cu_seq_lens_q"].tolist() == [0, 5, 12, 16]  # what a varlen kernel reads
    assert joined["labels"][0].tolist() == rows["labels"][0].tolist() + rows["labels"][1, :4].tolist()
    with torch.no_grad():
        by_rows = model(**rows, use_cache=False).loss
        by_joined = model(**joined, use_cache=False).loss
    torch.testing.assert_close(by_joined, by_rows, atol=1e-5, rtol=1e-5)
