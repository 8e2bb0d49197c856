"""The private-API adapters (train/compat.py): the version gate, the TRL x peft fix that lets
a LoRA stage that adds <think> tokens to a tied-head model train through TRL's fused LM head,
the one-rank all-reduce skip, and the two start-up adapters (Muon's compile on first use, wandb
Launch's inputs looked for only where they can exist)."""

import sys
import types

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


ONE_RANK_CHILD = r"""
import json, os, sys
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=sys.argv[1], RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
import torch
from datasets import Dataset
from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainerCallback, TrainingArguments
from tinyreason.train import compat

compat.skip_deepspeed_shm_comm()
compat.muon_compiles_on_first_use()  # as every stage's worker does, before DeepSpeed meets Muon
rows = Dataset.from_dict({"input_ids": [[(7 * i + j) % 40 for j in range(12)] for i in range(16)]})
rows = rows.map(lambda r: {"labels": r["input_ids"]})


class Record(TrainerCallback):
    def __init__(self):
        self.losses, self.flag = [], None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if "loss" in (logs or {}):
            self.losses.append(logs["loss"])


def run(zero_stage, skip, out):
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=2))
    args = TrainingArguments(output_dir=out, max_steps=4, per_device_train_batch_size=2, gradient_accumulation_steps=2,
                             learning_rate=1e-2, max_grad_norm=0.5, logging_steps=1, save_strategy="no",
                             report_to=[], use_cpu=True, seed=0, disable_tqdm=True,
                             deepspeed={"train_micro_batch_size_per_gpu": "auto", "train_batch_size": "auto",
                                        "gradient_accumulation_steps": "auto", "gradient_clipping": "auto",
                                        "zero_optimization": {"stage": zero_stage}, "steps_per_print": 10**9})
    record = Record()
    trainer = Trainer(model=model, args=args, train_dataset=rows, callbacks=[record])
    if skip:
        compat.one_rank_skips_allreduce(trainer)
    trainer.train()
    weights = sum(p.detach().double().sum().item() for p in trainer.model.parameters())
    return {"losses": record.losses, "weights": weights, "allreduce": trainer.model_wrapped.enable_backward_allreduce}


runs = {name: run(stage, skip, f"{sys.argv[2]}/{name}") for name, stage, skip in
        [("zero0", 0, False), ("zero0_skip", 0, True), ("zero2_skip", 2, True)]}
runs["modules"] = {"muon": "deepspeed.runtime.zero.muon.muon_optimizer" in sys.modules,
                   "inductor": "torch._inductor.compile_fx" in sys.modules}
print(json.dumps(runs))
"""


def test_a_one_rank_zero0_engine_skips_its_allreduce_and_trains_the_same(tmp_path):
    """In a fresh process (a process group of one, under Trainer, as a one-worker stage runs):
    the skipped all-reduce over one rank changes nothing, loss for loss and weight for weight,
    with gradient accumulation and clipping; a ZeRO-2 engine keeps its reduce step. And the
    ZeRO-2 engine imported DeepSpeed's Muon module without importing torch's inductor."""
    import json
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = subprocess.run([sys.executable, "-c", ONE_RANK_CHILD, str(port), str(tmp_path)], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    runs = json.loads(out.stdout.strip().splitlines()[-1])
    assert runs["zero0"]["allreduce"] and not runs["zero0_skip"]["allreduce"] and runs["zero2_skip"]["allreduce"]
    assert len(runs["zero0"]["losses"]) == 4 and runs["zero0_skip"]["losses"] == runs["zero0"]["losses"]
    assert runs["zero0_skip"]["weights"] == runs["zero0"]["weights"]
    assert runs["zero0"]["losses"][-1] < runs["zero0"]["losses"][0]  # it trained
    # ZeRO-2's gradient averaging imports Muon (DeepSpeed 0.19); its compile waits for a first call
    assert runs["modules"] == {"muon": True, "inductor": False}


def test_muons_functions_compile_on_their_first_call_with_what_torch_compile_returns(monkeypatch):
    from deepspeed.runtime import compiler

    compat.muon_compiles_on_first_use()
    compiled = []

    def fake_compile(func):  # torch.compile(func): a callable that compiles on its first call
        compiled.append(func)
        return lambda *a, **kw: ("compiled", func(*a, **kw))

    monkeypatch.setattr(compat.torch, "compile", fake_compile)

    @compiler.compile()  # how DeepSpeed's Muon module wraps muon_update and its Newton-Schulz steps
    def muon_update(x, scale=1):
        """Muon's update."""
        return x * scale

    assert compiled == [] and muon_update.__doc__ == "Muon's update."  # nothing compiled on import
    assert muon_update(3, scale=2) == ("compiled", 6) and muon_update(4) == ("compiled", 4)
    assert len(compiled) == 1 and compiled[0].__name__ == "muon_update"  # compiled once, on first use


def test_wandb_applies_launch_inputs_only_where_a_launch_job_could_have_staged_them(monkeypatch):
    """wandb's own method runs once wandb Launch's input module is imported (the only way inputs
    get staged); before that the method returns without importing it."""
    from wandb.sdk.wandb_run import Run

    compat.wandb_init_skips_unstaged_launch_inputs()
    run = object.__new__(Run)  # the method reads nothing of the run until it applies an input
    monkeypatch.delitem(sys.modules, compat.WANDB_LAUNCH_INPUTS, raising=False)
    Run._detect_and_apply_job_inputs(run)
    assert compat.WANDB_LAUNCH_INPUTS not in sys.modules  # not imported by the check

    applied = []
    staged = types.ModuleType(compat.WANDB_LAUNCH_INPUTS)
    staged.StagedLaunchInputs = lambda: types.SimpleNamespace(apply=applied.append)
    monkeypatch.setitem(sys.modules, compat.WANDB_LAUNCH_INPUTS, staged)
    Run._detect_and_apply_job_inputs(run)  # wandb's own: `StagedLaunchInputs().apply(self)`
    assert applied == [run]
