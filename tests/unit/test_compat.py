"""The private-API adapters (train/compat.py): the version gate, and the TRL x peft fix that lets
a LoRA stage that adds <think> tokens to a tied-head model train through TRL's fused LM head."""

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM
from trl.trainer.utils import add_fused_lm_head

from tinyreason.train import compat


def test_the_installed_libraries_are_the_ones_the_adapters_were_written_for():
    compat.check()


def test_a_library_that_moved_on_is_named_with_what_to_recheck(monkeypatch):
    monkeypatch.setitem(compat.WRITTEN_FOR, "trl", "0.1.")
    with pytest.raises(ValueError, match=r"private APIs of trl .* \(written for 0\.1\.x\); re-check each adapter"):
        compat.check()


def _tied_model_with_two_new_trainable_rows():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    add_fused_lm_head(model)  # what TRL's SFT, DPO and GRPO trainers do before wrapping with peft
    lora = LoraConfig(task_type="CAUSAL_LM", r=2, target_modules="all-linear",
                      trainable_token_indices={"embed_tokens": [38, 39]})  # what train/lora.py asks for
    return get_peft_model(model, lora)


def test_trls_fused_head_scores_a_tied_head_with_trainable_rows_and_trains_them():
    model = _tied_model_with_two_new_trainable_rows()
    ids = torch.tensor([[1, 38, 5, 39, 7]])
    # the installed pair still has the gap; when this fails, the adapter can go
    with pytest.raises(AttributeError, match="bias"):
        model(input_ids=ids, labels=ids, fused_lm_head=True)

    compat.fused_head_sees_trainable_tokens(model)
    fused = model(input_ids=ids, labels=ids, fused_lm_head=True).log_probs
    plain = torch.log_softmax(model(input_ids=ids).logits[:, :-1].float(), -1).gather(-1, ids[:, 1:, None])[..., 0]
    assert torch.allclose(fused.reshape(plain.shape), plain, atol=1e-5)

    fused.sum().backward()
    delta = next(p for n, p in model.named_parameters() if "trainable_tokens_delta" in n)
    assert delta.grad is not None and delta.grad.abs().sum() > 0  # the <think> rows learn
