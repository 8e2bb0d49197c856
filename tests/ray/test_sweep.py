"""Real Ray Tune sweeps over the micro curriculum: parents trained once, each trial
scored, a diverging trial recorded as failed, report and best.yaml written."""

import json
from pathlib import Path

import pytest
import yaml

from tinyreason.config import load_config, load_sweep
from tinyreason.tune.report import write_sweep_report
from tinyreason.tune.sweep import run_sweep


def _sweep_file(tmp: Path, name: str, stage: str, space: dict, storage: Path, search="grid") -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "name": name, "curriculum": "configs/micro.yaml",
        # Ray workers carry a (fake) WANDB_API_KEY: "auto" would go online, and there is no network here
        "overrides": [f"storage.path={storage}", "tracking.wandb.mode=offline"],
        "stage": stage, "search": search, "space": space, "num_samples": 1, "max_concurrent": 1,
    }))
    return path


@pytest.fixture(scope="module")
def storage(micro_storage):
    return micro_storage


@pytest.fixture(scope="module")
def beta_sweep(ray_local, storage, tmp_path_factory):
    path = _sweep_file(tmp_path_factory.mktemp("cfg"), "micro-beta", "dpo",
                       {"beta": {"grid": [0.05, 0.1, 0.5]}}, storage)
    sweep, cfg = load_sweep(path)
    result = run_sweep(sweep, cfg)
    return result, write_sweep_report(result)


def _stage_dirs(storage: Path, name: str) -> list[Path]:
    return sorted(p for p in (storage / "stages").glob(f"*-{name}-*") if (p / "manifest.json").exists())


def test_parent_stages_trained_once_and_every_trial_scored(beta_sweep, storage):
    result, _ = beta_sweep
    assert len(result.trials) == 3 and all(t.status == "TERMINATED" for t in result.trials)
    for name in ("pretrain", "sft", "reasoning"):
        assert len(_stage_dirs(storage, name)) == 1, name  # one parent, shared by all trials
    trial_dirs = {t.stage_dir for t in result.trials}
    assert len(trial_dirs) == 3 and all(d and d.endswith(tuple("0123456789abcdef")) for d in trial_dirs)
    for d in trial_dirs:  # every trial started from the one cached reasoning stage
        parent = json.loads((Path(d) / "manifest.json").read_text())["parent"]["path"]
        assert parent == str(_stage_dirs(storage, "reasoning")[0] / "model")
    for t in result.trials:
        assert 0.0 <= t.metrics["objective"] <= 1.0
        assert "bench/heldout/accuracy" in t.metrics and "bench/heldout/well_formed" in t.metrics
    assert sorted(t.params["beta"] for t in result.trials) == [0.05, 0.1, 0.5]


def test_reference_logprobs_computed_once_and_shared(beta_sweep, storage):
    caches = list((storage / "ref-logps").glob("*/DONE"))
    assert len(caches) == 1
    assert json.loads(caches[0].read_text())["rows"] > 0
    result, _ = beta_sweep
    for t in result.trials:
        manifest = json.loads((Path(t.stage_dir) / "manifest.json").read_text())
        assert manifest["config"]["trainer"]["precompute_ref_log_probs"]


def test_report_and_best_yaml_validate(beta_sweep):
    result, report = beta_sweep
    text = report.read_text()
    assert "## Best trial" in text and "objective_vs_beta.png" in text
    html = (report.parent / "report.html").read_text()
    assert "data:image/png;base64," in html and "<table>" in html
    best = report.parent / "best.yaml"
    cfg = load_config(best)
    assert cfg.stage("dpo").trainer.beta == result.best.params["beta"]


def test_wandb_offline_files_hold_the_logged_metrics(beta_sweep, storage):
    runs = list((storage / "wandb").glob("wandb/offline-run-*"))
    assert len(runs) >= 3  # every trial's DPO stage (parents may have logged too)
    assert any(f.stat().st_size > 0 for r in runs for f in r.glob("*.wandb"))


def test_learning_rate_sweep_records_a_diverging_trial_and_finishes(ray_local, storage, tmp_path):
    path = _sweep_file(tmp_path, "micro-lr", "sft", {"learning_rate": {"grid": [3.0e-4, 3.0e-3, 1.0e9]}}, storage)
    sweep, cfg = load_sweep(path)
    result = run_sweep(sweep, cfg)
    report = write_sweep_report(result)
    status = {t.params["learning_rate"]: t for t in result.trials}
    assert status[1.0e9].status == "ERROR" and "non-finite" in status[1.0e9].error
    assert status[3.0e-4].status == status[3.0e-3].status == "TERMINATED"
    assert result.best.params["learning_rate"] in (3.0e-4, 3.0e-3)
    assert "ERROR: " in report.read_text() and load_config(report.parent / "best.yaml")
