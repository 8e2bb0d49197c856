"""Pre-training metrics on a tiny random Llama: perplexity is exp of the token-weighted
mean NLL (checked against the model's own loss, document by document), chunks restart
like training blocks, it drops after a few training steps, and samples come back."""

import math

import pytest

from tinyreason.data import synthetic
from tinyreason.eval import pretrain

# unequal lengths in any tokenizer trained on the synthetic world: the second has a third more words
DOCS = ["Once upon a time, there was a little girl named Mia. Mia liked to go to the park.",
        "Question: Tom has 3 shells. He finds 4 more, then he gives away 2. How many shells does Tom have now?"
        "\nAnswer: 5."]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import torch

    from tinyreason.model import presets
    from tinyreason.model.tokenizer import prepare_chat_tokenizer, train_bpe

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 shared cores: a second thread only thrashes at this size
    out = tmp_path_factory.mktemp("tiny-pretrain")
    tok = prepare_chat_tokenizer(train_bpe([r["text"] for r in synthetic.pretrain_rows(300, 0)], 400, out))
    yield presets.init_model("micro", tok).eval(), tok, out
    torch.set_num_threads(threads)


def _by_hand(model, tok, chunks):
    """Sum over chunks of (HF mean loss x scored tokens): the model's own shifted loss."""
    import torch

    total = count = 0
    for ids in chunks:
        x = torch.tensor([ids])
        with torch.no_grad():
            total += model(input_ids=x, labels=x).loss.item() * (len(ids) - 1)
        count += len(ids) - 1
    return total, count


def test_perplexity_is_exp_of_the_token_weighted_nll_of_two_documents(tiny):
    model, tok, _ = tiny
    sep = tok.convert_tokens_to_ids(tok.pad_token)  # the document separator of tokenize_text_batch
    docs = [tok(d, add_special_tokens=False)["input_ids"] + [sep] for d in DOCS]
    assert len(docs[0]) != len(docs[1])  # unequal lengths: a plain mean of the two losses would differ
    total, count = _by_hand(model, tok, docs)
    got = pretrain.perplexity(model, tok, DOCS, max_length=128)
    assert math.isfinite(got["perplexity"]) and got["perplexity"] > 1
    assert got["tokens"] == count == sum(len(d) - 1 for d in docs) and got["documents"] == 2
    assert got["nll"] == pytest.approx(total / count, rel=1e-5)
    assert got["perplexity"] == pytest.approx(math.exp(total / count), rel=1e-5)
    # a random model is near uniform over the vocabulary: log(V) nats, give or take
    assert abs(got["nll"] - math.log(len(tok))) < 1.0


def test_long_documents_are_cut_into_independent_chunks(tiny):
    model, tok, _ = tiny
    sep = tok.convert_tokens_to_ids(tok.pad_token)
    ids = tok(DOCS[0], add_special_tokens=False)["input_ids"] + [sep]
    chunks = [ids[i:i + 8] for i in range(0, len(ids), 8)]
    chunks = [c for c in chunks if len(c) > 1]
    assert pretrain.chunk_documents([ids], 8) == chunks and all(len(c) <= 8 for c in chunks)
    total, count = _by_hand(model, tok, chunks)
    got = pretrain.perplexity(model, tok, DOCS[:1], max_length=8, batch_size=3)  # padded batches of 3
    assert got["tokens"] == count and got["chunks"] == len(chunks)
    assert got["nll"] == pytest.approx(total / count, rel=1e-5)
    # never past the model's positions (micro: 512)
    assert pretrain.perplexity(model, tok, DOCS, max_length=10_000)["max_length"] == 512


def test_token_budget_counts_whole_documents(tiny):
    _, tok, _ = tiny
    n0 = len(tok(DOCS[0], add_special_tokens=False)["input_ids"]) + 1
    assert len(pretrain.tokenize_documents(tok, DOCS * 5, max_tokens=n0)) == 1
    assert len(pretrain.tokenize_documents(tok, DOCS * 5, max_tokens=n0 + 1)) == 2
    assert len(pretrain.tokenize_documents(tok, DOCS * 5)) == 10


def test_samples_come_back_for_each_prompt_and_repeat_with_the_seed(tiny):
    model, tok, _ = tiny
    samples = pretrain.generate_samples(model, tok, max_new_tokens=12)
    assert [s["prompt"] for s in samples] == list(pretrain.PROMPTS)
    assert all(isinstance(s["greedy"], str) and isinstance(s["sampled"], str) and s["greedy"] for s in samples)
    again = pretrain.generate_samples(model, tok, prompts=pretrain.PROMPTS[::-1], max_new_tokens=12)
    assert {s["prompt"]: s["sampled"] for s in again} == {s["prompt"]: s["sampled"] for s in samples}


def test_perplexity_drops_after_a_few_training_steps(tiny, tmp_path):
    """The same check a curriculum's report makes, base vs pretrain stage, through the
    function the Ray task runs: an exported model dir and a held-out parquet split."""
    import copy

    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    model, tok, _ = tiny
    model = copy.deepcopy(model).train()
    heldout = tmp_path / "heldout"
    heldout.mkdir()
    texts = [r["text"] for r in synthetic.pretrain_rows(340, 1)]
    pq.write_table(pa.table({"text": texts[300:]}), heldout / "part-0.parquet")
    base_dir, trained_dir = tmp_path / "base", tmp_path / "trained"
    for d in (base_dir, trained_dir):
        tok.save_pretrained(d)
    model.save_pretrained(base_dir)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for step in range(25):
        enc = tok(texts[step * 12:][:12], return_tensors="pt", padding=True, add_special_tokens=False)
        loss = model(**enc, labels=enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(trained_dir)
    before = pretrain.evaluate_pretrain(str(base_dir), str(heldout), max_length=64)
    after = pretrain.evaluate_pretrain(str(trained_dir), str(heldout), max_length=64)
    assert before["documents"] == after["documents"] == 40 and before["tokens"] == after["tokens"]
    assert after["perplexity"] < 0.5 * before["perplexity"], (before["perplexity"], after["perplexity"])
    assert len(after["samples"]) == len(pretrain.PROMPTS)
    none = pretrain.evaluate_pretrain(str(trained_dir), None, max_length=64)  # no held-out split: samples only
    assert none["perplexity"] is None and none["samples"] == after["samples"]


def test_perplexity_is_a_table_row_but_never_part_of_the_objective(tmp_path):
    from tinyreason.eval.tables import results_table
    from tinyreason.eval.scores import objective_value, primary_scores, table_scores, table_with_errors
    from tinyreason.generations import pretrain_samples
    from tinyreason.render import markdown_to_html

    sample = {"prompt": "Once upon a time,", "greedy": " there was | a cat.\nThe end", "sampled": ""}
    base = {"accuracy": 0.0, "format": {"well_formed": 0.0},
            "pretrain": {"perplexity": 400.0, "nll": math.log(400), "tokens": 900, "documents": 30,
                         "samples": [sample]}}
    stage = {**base, "pretrain": {**base["pretrain"], "perplexity": 12.5, "nll": math.log(12.5)}}
    assert "pretrain/perplexity" not in primary_scores(stage)
    assert table_scores(stage)["pretrain/perplexity"] == 12.5
    assert objective_value(stage, {}) == 0.0  # the held-out accuracy alone, perplexity left out
    table = results_table({"base": table_with_errors(base), "pretrain": table_with_errors(stage)}, base="base")
    row = next(line for line in table.splitlines() if "perplexity" in line)
    assert [c.strip() for c in row.strip("|").split("|")] == ["pretrain/perplexity", "400.000", "12.500"]
    md = "\n".join(pretrain_samples("pretrain", stage["pretrain"]))
    assert "### pretrain" in md and "Held-out perplexity 12.500 over 900 tokens of 30 documents." in md
    page = markdown_to_html(md, tmp_path, "samples")
    assert page.count("Once upon a time, there was | a cat.\nThe end") == 1  # verbatim, in its fenced block
    assert pretrain_samples("x", {"perplexity": None, "samples": []}) == []
