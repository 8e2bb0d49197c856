"""`attn_implementation: sdpa_varlen` on CPU: its per-example path must give the packed rows'
logits, loss and gradients exactly, fall back to SDPA for padded and cached batches, and leave
no trace in an exported model. The CUDA kernel path is checked in tests/gpu/test_varlen_cuda.py."""

import pytest
import torch

from tinyreason.data.tokenize import collate_packed_rows
from tinyreason.model import varlen

A, B, C = [3, 4, 5, 6, 7], [8, 9, 10, 11, 12, 13, 14], [15, 16, 17, 18, 19, 20]
EXAMPLES = [{"input_ids": A + B, "labels": A + B, "seq_lengths": [5, 7]}, {"input_ids": C, "labels": C, "seq_lengths": [6]}]


def _joined():
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    return DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(EXAMPLES)


def test_boundaries_come_from_position_ids():
    assert varlen.boundaries(torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3]])).tolist() == [0, 3, 5, 9]
    assert varlen.boundaries(torch.tensor([[0, 1, 2, 3]])) is None  # one example: plain causal
    assert varlen.boundaries(torch.tensor([[0, 1, 0, 1], [0, 1, 2, 3]])) is None  # rows are not one joined row
    assert varlen.boundaries(None) is None


@pytest.mark.parametrize("given", ["cu_seq_lens", "position_ids only"])
def test_a_joined_row_gives_each_example_its_own_logits(given, tiny_llama):
    model = tiny_llama("sdpa_varlen").eval()
    batch = _joined()
    if given == "position_ids only":
        batch = {k: batch[k] for k in ("input_ids", "position_ids")}
    with torch.no_grad():
        joined = model(input_ids=batch["input_ids"], use_cache=False,
                       **{k: v for k, v in batch.items() if k not in ("input_ids", "labels")}).logits[0]
        alone = [model(input_ids=torch.tensor([x])).logits[0] for x in (A, B, C)]
    torch.testing.assert_close(joined, torch.cat(alone), atol=1e-5, rtol=1e-4)


def test_loss_and_gradients_equal_packed_rows_on_sdpa(tiny_llama):
    rows_model, joined_model = tiny_llama("sdpa"), tiny_llama("sdpa_varlen")
    by_rows = rows_model(**collate_packed_rows(EXAMPLES, pad_token_id=0), use_cache=False).loss
    by_joined = joined_model(**_joined(), use_cache=False).loss
    by_rows.backward()
    by_joined.backward()
    torch.testing.assert_close(by_joined, by_rows, atol=1e-6, rtol=1e-5)
    for (name, p), q in zip(rows_model.named_parameters(), joined_model.parameters()):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-6, rtol=1e-4, msg=name)


def test_padded_batches_and_generation_are_sdpas(tiny_llama):
    sdpa, ours = tiny_llama("sdpa").eval(), tiny_llama("sdpa_varlen").eval()
    ids = torch.tensor([[3, 4, 5, 6, 7, 8], [0, 0, 9, 10, 11, 12]])  # left-padded, as for generation
    mask = (ids != 0).long()
    with torch.no_grad():
        torch.testing.assert_close(ours(input_ids=ids, attention_mask=mask).logits,
                                   sdpa(input_ids=ids, attention_mask=mask).logits)
        kw = dict(attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=0)
        assert ours.generate(ids, **kw).tolist() == sdpa.generate(ids, **kw).tolist()


def test_an_exported_model_loads_as_plain_sdpa(tmp_path, tiny_llama):
    from transformers import AutoModelForCausalLM

    tiny_llama("sdpa_varlen").save_pretrained(tmp_path)
    assert "sdpa_varlen" not in (tmp_path / "config.json").read_text()
    assert AutoModelForCausalLM.from_pretrained(tmp_path).config._attn_implementation == "sdpa"


def test_options_it_cannot_compute_are_refused():
    q = torch.zeros(1, 4, 6, 8)
    kv = torch.zeros(1, 2, 6, 8)
    cu = torch.tensor([0, 2, 6], dtype=torch.int32)
    module = torch.nn.Module()
    with pytest.raises(ValueError, match="sdpa_varlen computes plain causal attention.*sliding window"):
        varlen.attention_forward(module, q, kv, kv, None, cu_seq_lens_q=cu, sliding_window=4)
