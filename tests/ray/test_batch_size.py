"""A batch counted in examples, on a real local Ray with 2 workers: with
`data.packed_batch: examples` a packed stage takes the steps of its unpacked recipe,
per_device_train_batch_size chat rows per worker and step, not that many packed bins."""

from pathlib import Path

import pytest
import yaml

from tinyreason.config import load_config
from tinyreason.curriculum import run_curriculum
from tinyreason.data import synthetic
from tinyreason.model.tokenizer import train_bpe

ROOT = Path(__file__).resolve().parents[2]
ROWS, PER_DEVICE, WORKERS = 300, 8, 2


def test_a_batch_of_examples_keeps_the_unpacked_step_count(ray_local, tmp_path):
    tok = tmp_path / "tok"
    train_bpe((r["text"] for r in synthetic.pretrain_rows(1000, 0)), 512, tok)
    raw = yaml.safe_load((ROOT / "configs" / "micro.yaml").read_text())
    sft = next(s for s in raw["stages"] if s["kind"] == "sft")
    sft["data"] = {"blend": {"sources": [{"synthetic": "chat", "entries": ROWS}]}, "max_length": 256,
                   "packed_batch": "examples"}
    sft["trainer"].update(per_device_train_batch_size=PER_DEVICE, logging_steps=5)
    raw.update(name="examples", stages=[sft], tokenizer={"path": str(tok)}, evaluation={"after_each_stage": False})
    path = tmp_path / "examples.yaml"
    path.write_text(yaml.safe_dump(raw))

    stage = run_curriculum(load_config(path, [f"storage.path={tmp_path / 'runs'}"])).stages[0]
    rows, bins, steps = stage.manifest["blend"]["rows"], stage.manifest["sequences"], stage.manifest["summary"]["steps"]
    assert bins < rows / 2  # packing put several chat rows in each bin
    assert steps == pytest.approx(rows / (PER_DEVICE * WORKERS), abs=2)  # as unpacked; bins would give ~bins/8
