"""A real study on a real local Ray: three micro arms over two seeds. Arms that share a prefix
train it once; every arm and seed is in the report with its spread; a failing arm is
recorded and the others finish."""

import json

import pytest
import yaml

from tinyreason.config.studies import load_study
from tinyreason.study import run_study
from tinyreason.study_report import write_study_report

# Arms start from the micro base (no pretrain stage) and train on one worker each, two arms at a
# time: the study's logic is what is under test, and each stage costs a worker group's start-up.
FAST = ["evaluation.after_each_stage=last", "evaluation.heldout_problems=10", "evaluation.benchmarks.tasks=[]",
        "stages.sft.trainer.max_steps=6", "stages.reasoning.trainer.max_steps=6",
        "stages.sft.scaling.num_workers=1", "stages.reasoning.scaling.num_workers=1", "tracking.wandb.enabled=false"]


@pytest.fixture(scope="module")
def study(ray_local, tmp_path_factory, micro_tokenizer):
    tmp = tmp_path_factory.mktemp("study")
    tok = micro_tokenizer  # the micro model starts from scratch: without a pretrain stage it needs a tokenizer
    raw = {"name": "micro-study", "base": "configs/micro.yaml", "seeds": [0, 1], "max_concurrent": 2,
           "overrides": [f"storage.path={tmp / 'runs'}", f"tokenizer={{path: {tok}}}", *FAST],
           "arms": [{"name": "sft", "stages": ["sft"]},
                    {"name": "think", "stages": ["sft", "reasoning"]},
                    {"name": "diverges", "stages": ["sft"],
                     "set": ["stages.sft.trainer.learning_rate=1e9"]}]}
    path = tmp / "study.yaml"
    path.write_text(yaml.safe_dump(raw))
    study, configs = load_study(path)
    result = run_study(study, configs)
    return tmp, result, write_study_report(result)


def test_a_shared_prefix_trains_once(study):
    tmp, result, _ = study
    stages = tmp / "runs" / "stages"
    for name in ("sft", "reasoning"):  # sft and think share their sft stage: one per seed
        done = [d for d in stages.glob(f"*-{name}-*") if (d / "manifest.json").exists()]
        assert len(done) == 2, (name, sorted(d.name for d in done))
    think = [r for r in result.runs if r.arm == "think"]
    sft = [r for r in result.runs if r.arm == "sft"]
    for a, b in zip(sft, think):  # the same seed: the same sft stage, by its manifest's key
        assert a.result.stages[0].manifest["key"] == b.result.stages[0].manifest["key"]


def test_the_report_has_every_arm_and_seed_with_spreads(study):
    _, result, report = study
    text = report.read_text()
    for arm in ("sft", "think", "diverges"):
        assert f"| {arm} " in text
    results = json.loads((report.parent / "results.json").read_text())
    assert {(r["arm"], r["seed"]) for r in results["runs"]} == {(a, s) for a in ("sft", "think", "diverges")
                                                                for s in (0, 1)}
    for arm in ("sft", "think"):
        objective = results["arms"][arm]["objective"]
        assert objective["n"] == 2 and objective["std"] is not None and objective["min"] <= objective["max"]
    assert (report.parent / "report.html").exists() and (report.parent / "curves.png").exists()


def test_a_failing_arm_is_recorded_and_the_others_finish(study):
    _, result, report = study
    failed = [r for r in result.runs if r.arm == "diverges"]
    assert all(r.error and "non-finite" in r.error for r in failed), [r.error for r in failed]
    assert all(r.result is not None for r in result.runs if r.arm != "diverges")
    assert "## Failed runs" in report.read_text()
