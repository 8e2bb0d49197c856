"""LoRA on a stage, with real TRL, peft and DeepSpeed on a real local Ray: the adapter is the
only thing that trains, the export is the adapter merged into the parent (its logits are the
parent's plus the adapter's), the adapter is kept beside it, and the next stage starts from
the merged weights. It shares nothing with the Ray tier's other modules, so it runs last, on
whichever worker is free, with a local Ray of its own there (tests/conftest.py: SECOND_RAY)."""

import json

import pytest
import torch
import yaml
from peft import PeftModel
from safetensors.torch import load_file

from tinyreason.config.base import CONFIG_DIR
from tinyreason.config.loading import load_config
from tinyreason.curriculum import run_curriculum
from tinyreason.model.presets import load_model
from tinyreason.model.tokenizer import load_tokenizer
from tinyreason.train.lora import ADAPTER_DIR, PEFT_EVENT

TARGETS = ("q_proj", "v_proj")


def _sft(name: str, **extra) -> dict:
    return {"name": name, "kind": "sft", "data": {"blend": {"sources": [{"synthetic": "chat", "entries": 240}]},
                                                  "max_length": 128},
            "trainer": {"learning_rate": 3e-3, "max_steps": 8, "per_device_train_batch_size": 4, "logging_steps": 2},
            "scaling": {"num_workers": 2}, **extra}


@pytest.fixture(scope="module")
def result(ray_local, tmp_path_factory, micro_tokenizer):
    d = tmp_path_factory.mktemp("lora")
    raw = yaml.safe_load((CONFIG_DIR / "micro.yaml").read_text())
    raw.update(name="lora-test", tokenizer={"path": str(micro_tokenizer)}, storage={"path": str(d / "runs")},
               evaluation={"after_each_stage": False}, tracking={"wandb": {"enabled": False}},
               stages=[_sft("full"), _sft("lora", peft={"r": 4, "lora_alpha": 8, "lora_dropout": 0.0,
                                                          "target_modules": list(TARGETS)}), _sft("after")])
    (d / "lora.yaml").write_text(yaml.safe_dump(raw))
    return run_curriculum(load_config(d / "lora.yaml"))


def _weights(model_dir) -> dict[str, torch.Tensor]:
    """A model's tensors by name; a tied LM head (some savers write it, some do not) left out."""
    weights = load_file(str(model_dir / "model.safetensors"))
    head = weights.pop("lm_head.weight", None)
    assert head is None or torch.equal(head, weights["model.embed_tokens.weight"])
    return weights


def test_only_the_adapter_trains_and_the_export_merges_it_into_the_frozen_parent(result):
    full, lora, _ = result.stages
    before, after = _weights(full.output.model_dir), _weights(lora.output.model_dir)
    assert before.keys() == after.keys()
    targeted = {k for k in before if any(f".{t}." in k for t in TARGETS)}
    assert targeted and all(torch.equal(before[k], after[k]) for k in before.keys() - targeted)  # frozen
    assert all(not torch.equal(before[k], after[k]) for k in targeted)  # the merged adapter moved them
    adapter = load_file(str(lora.output.model_dir / ADAPTER_DIR / "adapter_model.safetensors"))
    assert adapter and all("lora_A" in k or "lora_B" in k for k in adapter)  # the adapter holds only its own
    assert all(v.abs().sum() > 0 for k, v in adapter.items() if "lora_B" in k)  # B starts at 0: it trained
    size = next(m for m in lora.metrics if m.get("event") == PEFT_EVENT)
    assert 0 < size["trainable_parameters"] < 0.2 * size["parameters"]


def test_the_merged_export_computes_the_parent_plus_the_adapter(result):
    full, lora, _ = result.stages
    tok = load_tokenizer(str(lora.output.model_dir))
    ids = tok.apply_chat_template([{"role": "user", "content": "What is 7 plus 5?"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)["input_ids"]
    merged = load_model(str(lora.output.model_dir)).eval()  # a plain model: no peft needed to load it
    assert not (lora.output.model_dir / "adapter_config.json").exists()
    base_plus_adapter = PeftModel.from_pretrained(load_model(str(full.output.model_dir)),
                                                  str(lora.output.model_dir / ADAPTER_DIR)).eval()
    with torch.no_grad():
        a, b = merged(ids).logits, base_plus_adapter(ids).logits
    assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()


def test_the_next_stage_starts_from_the_merged_weights(result):
    _, lora, after = result.stages
    assert after.manifest["parent"] == {"name": "lora", "path": str(lora.output.model_dir),
                                        "key": lora.manifest["key"]}
    assert json.loads((lora.output.model_dir / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    assert after.manifest["summary"]["steps"] == 8
