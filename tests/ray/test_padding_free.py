"""The padding-free path, end to end on CPU: the same sft stage trained with its micro-batches
joined into one sequence (TRL's padding-free collator, attention per example through
sdpa_varlen) and with packed bins kept as rows (SDPA, block-causal mask) must log the same
losses step for step. On a GPU the joined sequence goes to a varlen flash kernel instead."""

from pathlib import Path

import pytest
import yaml

from tinyreason.config import load_config
from tinyreason.curriculum import run_curriculum
from tinyreason.data import synthetic
from tinyreason.model.tokenizer import train_bpe

ROOT = Path(__file__).resolve().parents[2]


def _stage(tmp_path, tok, padding_free: bool):
    raw = yaml.safe_load((ROOT / "configs" / "micro.yaml").read_text())
    raw["model"]["attn_implementation"] = "sdpa_varlen" if padding_free else "sdpa"
    sft = next(s for s in raw["stages"] if s["kind"] == "sft")
    sft["data"] = {"blend": {"sources": [{"synthetic": "chat", "entries": 160}]}, "max_length": 128,
                   "padding_free": None}  # follows the kernel
    sft["trainer"].update(per_device_train_batch_size=4, logging_steps=1)
    sft["scaling"] = {"num_workers": 1}
    raw.update(name=f"pf-{padding_free}", stages=[sft], tokenizer={"path": str(tok)},
               evaluation={"after_each_stage": False})
    path = tmp_path / f"pf-{padding_free}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return run_curriculum(load_config(path, [f"storage.path={tmp_path / 'runs'}"])).stages[0]


def test_padding_free_stage_logs_the_losses_of_packed_rows(ray_local, tmp_path):
    tok = tmp_path / "tok"
    train_bpe((r["text"] for r in synthetic.pretrain_rows(1000, 0)), 512, tok)
    joined, rows = _stage(tmp_path, tok, True), _stage(tmp_path, tok, False)

    assert joined.manifest["summary"]["padding_free"] is True
    assert rows.manifest["summary"]["padding_free"] is False
    loss = {name: [m["loss"] for m in s.metrics if "loss" in m] for name, s in (("joined", joined), ("rows", rows))}
    assert len(loss["rows"]) >= 8  # one log per step
    assert loss["joined"] == pytest.approx(loss["rows"], rel=1e-4)  # measured: within 2e-7
    assert loss["rows"][-1] < loss["rows"][0]  # it trained
