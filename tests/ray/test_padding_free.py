"""The padding-free path, end to end on CPU: the same sft stage trained with its micro-batches
joined into one sequence (TRL's padding-free collator, attention per example through
sdpa_varlen) and with packed bins kept as rows (SDPA, block-causal mask) must log the same
losses step for step. On a GPU the joined sequence goes to a varlen flash kernel instead."""

import pytest


def test_padding_free_stage_logs_the_losses_of_packed_rows(ray_local, run_micro_sft):
    def stage(attn):  # data.padding_free unset: it follows the kernel
        return run_micro_sft(f"pf-{attn}", data={"blend": {"sources": [{"synthetic": "chat", "entries": 160}]},
                                                  "max_length": 128},
                             trainer={"per_device_train_batch_size": 4, "logging_steps": 1},
                             scaling={"num_workers": 1}, model={"attn_implementation": attn})

    joined, rows = stage("sdpa_varlen"), stage("sdpa")

    assert joined.manifest["summary"]["padding_free"] is True
    assert rows.manifest["summary"]["padding_free"] is False
    loss = {name: [m["loss"] for m in s.metrics if "loss" in m] for name, s in (("joined", joined), ("rows", rows))}
    assert len(loss["rows"]) >= 8  # one log per step
    assert loss["joined"] == pytest.approx(loss["rows"], rel=1e-4)  # measured: within 2e-7
    assert loss["rows"][-1] < loss["rows"][0]  # it trained
