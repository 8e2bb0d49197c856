"""bench/demo_ladder.py: each variant's lineage back to pre-training, read from the stages' own records."""

import json
from pathlib import Path

import pytest


@pytest.fixture
def ladder(bench_script, monkeypatch):
    mod = bench_script("demo_ladder")
    monkeypatch.setattr(mod, "fact_probe", lambda model_dir: {"add": 0.95, "from": Path(model_dir).parent.name})
    return mod


def _stage(root: Path, name: str, kind: str, parent: Path | None, acc: float, lr: float) -> Path:
    d = root / "stages" / name
    d.mkdir(parents=True)
    parent_ref = {"name": "base", "path": str(root / "base")} if parent is None else \
        {"name": parent.name.split("-")[1], "path": str(parent / "model")}
    config = {"trainer": {"learning_rate": lr}, "data": {"blend": {"sources": [{"entries": 12000}, {"entries": 8}]}}}
    (d / "manifest.json").write_text(json.dumps({"stage": name.split("-")[1], "kind": kind, "parent": parent_ref,
                                                 "config": config, "train_seconds": 10.0}))
    samples = [{"output": "<think>\n3 + 4 = 8\n</think>\nThe answer is 8."}]
    (d / "eval-a.json").write_text(json.dumps({"n": 200, "accuracy": acc, "per_task": {}, "format": {"well_formed": 1.0},
                                               "samples": samples, "new_templates": {"accuracy": 0.1, "samples": []}}))
    return d


def test_a_variant_is_its_leaf_and_every_parent_back_to_pretraining(ladder, tmp_path):
    pre = _stage(tmp_path, "00-pretrain-a", "pretrain", None, 0.0, 1e-3)
    sft = _stage(tmp_path, "01-sft-b", "sft", pre, 0.2, 5e-4)
    leaf = _stage(tmp_path, "02-reasoning-c", "reasoning_sft", sft, 0.55, 7e-4)
    ladder.main([f"7 drills in 10, lr 7e-4={leaf}"])
    (variant,) = json.loads(ladder.OUT.read_text())["variants"]
    assert variant["label"] == "7 drills in 10, lr 7e-4"
    assert [s["stage"] for s in variant["stages"]] == ["pretrain", "sft", "reasoning"]
    assert [s["learning_rate"] for s in variant["stages"]] == [1e-3, 5e-4, 7e-4]
    assert variant["stages"][0]["entries"] == 12008
    assert variant["stages"][0]["fact_probe"]["from"] == "00-pretrain-a"  # the pre-trained model is probed
    assert "fact_probe" not in variant["stages"][1]
    assert variant["stages"][2]["steps_true"]["add_take"] == 0.0  # 3 + 4 = 8


def test_a_variant_without_a_label_is_refused_with_the_form(ladder, tmp_path):
    with pytest.raises(SystemExit, match="give LABEL=STAGE_DIR"):
        ladder.main([str(tmp_path)])
