"""Embedding rows follow the tokenizer up, never down; added tokens start from their text."""

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


def test_added_think_tokens_start_from_the_rows_of_their_text(micro_tokenizer):
    """<think> starts as the mean of `<`, `think`, `>` (whatever pieces this BPE cuts it
    into), so the model scores it where it scores that text, not at the mean row."""
    from transformers import AutoTokenizer

    from tinyreason.model.tokenizer import THINK_OPEN, add_think_tokens

    tok = AutoTokenizer.from_pretrained(micro_tokenizer)
    pieces = tok(THINK_OPEN, add_special_tokens=False)["input_ids"]
    model = _model(len(tok))
    assert add_think_tokens(tok) == 2
    fit_embeddings(model, tok)
    emb = model.get_input_embeddings().weight
    assert emb.shape[0] == len(tok) == model.get_output_embeddings().weight.shape[0]
    new = tok.convert_tokens_to_ids(THINK_OPEN)
    assert len(pieces) > 1 and new >= len(tok) - 2
    assert (emb[new] - emb[pieces].mean(0)).abs().max() < 1e-6
    assert (emb[new] - emb[:len(tok) - 2].mean(0)).abs().max() > 1e-3  # not the mean row


def test_a_grown_untied_head_starts_from_the_same_pieces(micro_tokenizer):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from tinyreason.model.tokenizer import THINK_CLOSE, add_think_tokens

    tok = AutoTokenizer.from_pretrained(micro_tokenizer)
    pieces = tok(THINK_CLOSE, add_special_tokens=False)["input_ids"]
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, num_attention_heads=2,
                                         tie_word_embeddings=False))
    add_think_tokens(tok)
    fit_embeddings(model, tok)
    head = model.get_output_embeddings().weight
    new = tok.convert_tokens_to_ids(THINK_CLOSE)
    assert head.shape[0] == len(tok) and head is not model.get_input_embeddings().weight
    assert (head[new] - head[pieces].mean(0)).abs().max() < 1e-6


def test_spare_rows_beyond_the_tokenizer_are_kept():
    """Padded vocabularies (Qwen2.5: 151,936 rows for 151,665 tokens; a benchmark model with
    SmolLM2's 49,152 rows and a smaller tokenizer) keep their shape."""
    model = _model(512)
    fit_embeddings(model, _Tokenizer(300))
    assert model.get_input_embeddings().num_embeddings == 512
