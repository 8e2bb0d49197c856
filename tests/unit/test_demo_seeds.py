"""bench/demo_seeds.py: the default demo's figures over seeds, read from each run's record."""

import json
from pathlib import Path

import pytest


@pytest.fixture
def demo_seeds(bench_script):
    return bench_script("demo_seeds")


def _run(root: Path, seed: int, acc: dict, well_formed: float = 1.0) -> Path:
    run = root / f"s{seed}" / "runs" / "default" / "latest"
    run.mkdir(parents=True)
    stages = [{"stage": s, "heldout_accuracy": a, "new_templates_accuracy": a - 0.05,
               "well_formed_think": 0.0 if s == "sft" else well_formed} for s, a in acc.items()]
    (run / "results.json").write_text(json.dumps({"stages": stages}))
    (run / "config.json").write_text(json.dumps({"seed": seed}))
    return root / f"s{seed}"


def test_deltas_and_targets_come_from_each_runs_record(demo_seeds, tmp_path):
    a = _run(tmp_path, 0, {"sft": 0.15, "reasoning": 0.35, "dpo": 0.34, "grpo": 0.40})
    b = _run(tmp_path, 1, {"sft": 0.20, "reasoning": 0.33, "dpo": 0.35, "grpo": 0.36}, well_formed=0.9)
    demo_seeds.main([str(a), str(b), "--wall", "800", "950"])
    out = json.loads(demo_seeds.OUT.read_text())
    assert [s["seed"] for s in out["seeds"]] == [0, 1]
    s = out["summary"]
    assert s["final_accuracy"] == {"mean": 0.38, "min": 0.36, "max": 0.4}
    assert s["think_over_chat"]["min"] == pytest.approx(0.13) and s["grpo_over_dpo"]["max"] == pytest.approx(0.06)
    # +16.5 over chat SFT on average meets its target; +3.5 over DPO, 90% well-formed, 950 s do not
    assert out["met"] == {"final_accuracy": False, "think_over_chat": True, "grpo_over_dpo": False,
                          "well_formed": False, "wall_s": False}


def test_a_wall_figure_per_run_or_none(demo_seeds, tmp_path):
    a = _run(tmp_path, 0, {"sft": 0.1, "reasoning": 0.3, "dpo": 0.3, "grpo": 0.3})
    with pytest.raises(SystemExit, match="1 figures for 2 runs"):
        demo_seeds.main([str(a), str(a), "--wall", "800"])


def test_the_cpu_each_seed_ran_on_is_kept(demo_seeds, tmp_path):
    """The same seed trains to other numbers on another CPU: the figures say which one made them."""
    a = _run(tmp_path, 0, {"sft": 0.1, "reasoning": 0.3, "dpo": 0.3, "grpo": 0.3})
    b = _run(tmp_path, 1, {"sft": 0.1, "reasoning": 0.3, "dpo": 0.3, "grpo": 0.3})
    cpu = {"model": "Intel(R) Xeon(R) Processor", "id": {"model": "167"}, "isa": ["avx512f"], "cache": {"L3": "491520K"},
           "count": 2}
    for run, model in ((a, "167"), (b, "167")):
        (run / "runs" / "default" / "latest" / "provenance.json").write_text(
            json.dumps({"driver": {"cpu": {**cpu, "id": {"model": model}}}}))
    out_path = tmp_path / "here.json"
    demo_seeds.main([str(a), str(b), "--out", str(out_path), "--note", "evening"])
    out = json.loads(out_path.read_text())
    assert out["cpu"] == {k: v for k, v in cpu.items() if k != "count"} and out["note"] == "evening"
    (b / "runs" / "default" / "latest" / "provenance.json").write_text(
        json.dumps({"driver": {"cpu": {**cpu, "id": {"model": "143"}}}}))
    demo_seeds.main([str(a), str(b), "--out", str(out_path)])
    assert [c["id"]["model"] for c in json.loads(out_path.read_text())["cpu"]] == ["167", "143"]


def test_runs_that_end_at_dpo_are_summed_without_a_grpo_figure(demo_seeds, tmp_path):
    """A DPO variant screened with `--stages pretrain,sft,reasoning,dpo`: its final stage is DPO."""
    a = _run(tmp_path, 0, {"sft": 0.2, "reasoning": 0.5, "dpo": 0.52})
    b = _run(tmp_path, 1, {"sft": 0.2, "reasoning": 0.4, "dpo": 0.38}, well_formed=0.96)
    out_path = tmp_path / "dpo.json"
    demo_seeds.main([str(a), str(b), "--out", str(out_path)])
    out = json.loads(out_path.read_text())
    assert "grpo_over_dpo" not in out["summary"] and "grpo_over_dpo" not in out["met"]
    assert out["summary"]["dpo_over_think"] == {"mean": 0.0, "min": -0.02, "max": 0.02}
    assert out["summary"]["final_accuracy"]["mean"] == 0.45 and out["met"]["well_formed"] is True


def test_a_seed_continued_by_another_run_reads_both_and_checks_the_seam(demo_seeds, tmp_path):
    """`A+B`: B's base is the export of A's <think> SFT stage, and B trained the stages after it."""
    a = _run(tmp_path, 1, {"pretrain": 0.0, "sft": 0.2, "reasoning": 0.7, "dpo": 0.68, "grpo": 0.695})
    record = a / "runs" / "default" / "latest" / "results.json"
    results = json.loads(record.read_text())
    record.write_text(json.dumps({**results, "benchmarks": {"reasoning": {"heldout/accuracy": {"value": 0.7}}}}))
    b = tmp_path / "route" / "runs" / "route" / "latest"
    b.mkdir(parents=True)
    stages = [{"stage": s, "heldout_accuracy": v, "new_templates_accuracy": 0.3, "well_formed_think": 1.0}
              for s, v in (("dpo", 0.71), ("grpo", 0.69))]
    (b / "results.json").write_text(json.dumps({"stages": stages,
                                                "benchmarks": {"base": {"heldout/accuracy": {"value": 0.7}}}}))
    base = str(a / "stages" / "02-reasoning-a0a01762ad5b" / "model")
    (b / "config.json").write_text(json.dumps({"seed": 1, "model": {"name_or_path": base}}))
    out_path = tmp_path / "continued.json"
    demo_seeds.main([f"{a}+{b}", "--out", str(out_path)])
    (seed,) = json.loads(out_path.read_text())["seeds"]
    assert list(seed["stages"]) == ["pretrain", "sft", "reasoning", "dpo", "grpo"]
    assert seed["dpo_over_think"] == pytest.approx(0.01) and seed["final_accuracy"] == 0.69
    (b / "results.json").write_text(json.dumps({"stages": stages,
                                                "benchmarks": {"base": {"heldout/accuracy": {"value": 0.65}}}}))
    with pytest.raises(SystemExit, match="its evaluation of its base differs"):
        demo_seeds.main([f"{a}+{b}", "--out", str(out_path)])
    (b / "config.json").write_text(json.dumps({"seed": 2, "model": {"name_or_path": base}}))
    with pytest.raises(SystemExit, match="is no stage of"):
        demo_seeds.main([f"{a}+{b}", "--out", str(out_path)])


def test_the_held_out_wordings_well_formed_share_is_kept_beside_the_targets(demo_seeds, tmp_path):
    """The target reads the training wordings' share; the held-out wordings' is recorded beside it,
    and a continued seed takes it for B's stages from B's benchmark table, not A's."""
    a = _run(tmp_path, 1, {"pretrain": 0.0, "sft": 0.2, "reasoning": 0.7, "dpo": 0.68, "grpo": 0.695})
    record = a / "runs" / "default" / "latest" / "results.json"
    wf = {s: {"heldout_new/well_formed": {"value": v}} for s, v in (("reasoning", 0.96), ("dpo", 0.99), ("grpo", 0.99))}
    wf["reasoning"]["heldout/accuracy"] = {"value": 0.7}
    record.write_text(json.dumps({**json.loads(record.read_text()), "benchmarks": wf}))
    alone = tmp_path / "alone.json"
    demo_seeds.main([str(a), "--out", str(alone)])
    out = json.loads(alone.read_text())
    assert out["seeds"][0]["stages"]["reasoning"]["new_templates_well_formed"] == 0.96
    assert out["summary"]["well_formed_new_templates_min"]["min"] == 0.96 and out["met"]["well_formed"] is True
    b = tmp_path / "route" / "runs" / "route" / "latest"
    b.mkdir(parents=True)
    stages = [{"stage": s, "heldout_accuracy": 0.7, "new_templates_accuracy": 0.3, "well_formed_think": 1.0}
              for s in ("dpo", "grpo")]
    (b / "results.json").write_text(json.dumps({"stages": stages, "benchmarks": {
        "base": {"heldout/accuracy": {"value": 0.7}, "heldout_new/well_formed": {"value": 0.96}},
        "dpo": {"heldout_new/well_formed": {"value": 0.88}}, "grpo": {"heldout_new/well_formed": {"value": 0.91}}}}))
    (b / "config.json").write_text(json.dumps({"seed": 1, "model": {"name_or_path": str(a / "stages" / "02-reasoning-k" / "model")}}))
    demo_seeds.main([f"{a}+{b}", "--out", str(alone)])
    seed = json.loads(alone.read_text())["seeds"][0]
    assert [seed["stages"][s]["new_templates_well_formed"] for s in ("reasoning", "dpo", "grpo")] == [0.96, 0.88, 0.91]
    assert seed["well_formed_new_templates_min"] == 0.88 and seed["well_formed_min"] == 1.0
