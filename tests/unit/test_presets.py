"""Embedding rows follow the tokenizer up, never down."""

from tinyreason.model.presets import fit_embeddings, init_model


class _Tokenizer:
    """What init_model reads of a tokenizer: its size and three special ids."""

    bos_token_id, eos_token_id, pad_token_id = 0, 1, 2

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n


def _model(rows: int):
    return init_model("micro", _Tokenizer(rows))


def test_added_tokens_grow_the_embedding_at_the_mean():
    model = _model(300)
    mean = model.get_input_embeddings().weight[:300].mean(0)
    fit_embeddings(model, 302)  # <think>, </think>
    emb = model.get_input_embeddings().weight
    assert emb.shape[0] == 302 and model.get_output_embeddings().weight.shape[0] == 302
    assert (emb[300] - mean).abs().max() < 0.05  # new rows start near the mean, not at random


def test_spare_rows_beyond_the_tokenizer_are_kept():
    """Padded vocabularies (Qwen2.5: 151,936 rows for 151,665 tokens; a benchmark model with
    SmolLM2's 49,152 rows and a smaller tokenizer) keep their shape."""
    model = _model(512)
    fit_embeddings(model, 300)
    assert model.get_input_embeddings().num_embeddings == 512
