"""Real Ray Tune sweeps over the micro curriculum: parents trained once, each trial
scored and tracked in wandb offline files, a diverging trial recorded as failed, lagging
trials stopped early by ASHA, report and best.yaml written."""

import json
import math
from pathlib import Path

import pytest
import yaml

from wandb_log import offline_runs

from tinyreason.config.loading import load_config
from tinyreason.config.sweeps import load_sweep
from tinyreason.outputs import read_jsonl
from tinyreason.tune.report import write_sweep_report
from tinyreason.tune.sweep import run_sweep


def _sweep_file(tmp: Path, name: str, stage: str, space: dict, storage: Path, search="grid", workers: int | None = 1,
                **extra) -> Path:
    """A sweep over micro.yaml in the shared storage, so its parents are the curriculum test's
    stages. Trials train on `workers` worker(s) (None: the stage's own two): each trial starts a
    worker group, and on 2 cores one worker's start-up is half the cost of two."""
    path = tmp / f"{name}.yaml"
    scaling = [] if workers is None else [f"stages.{stage}.scaling.num_workers={workers}"]
    path.write_text(yaml.safe_dump({
        "name": name, "curriculum": "configs/micro.yaml",
        # Ray workers carry a (fake) WANDB_API_KEY: "auto" would go online, and there is no network here
        "overrides": [f"storage.path={storage}", "tracking.wandb.mode=offline", *scaling],
        "stage": stage, "search": search, "space": space, "num_samples": 1, "max_concurrent": 1, **extra,
    }))
    return path


@pytest.fixture(scope="module")
def storage(micro_storage, micro_job):
    return micro_storage  # the micro job's storage, once its stages are there (tests/conftest.py)


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
    trial_dirs = {t.stage_dir for t in result.trials}  # keys in storage: stages/NN-dpo-<key>
    assert len(trial_dirs) == 3 and all(d and d.startswith("stages/") and d.endswith(tuple("0123456789abcdef"))
                                        for d in trial_dirs)
    for d in trial_dirs:  # every trial started from the one cached reasoning stage
        parent = json.loads((storage / d / "manifest.json").read_text())["parent"]["path"]
        assert parent == str(_stage_dirs(storage, "reasoning")[0] / "model")
    for t in result.trials:
        assert 0.0 <= t.metrics["objective"] <= 1.0
        assert "bench/heldout/accuracy" in t.metrics and "bench/heldout/well_formed" in t.metrics
    assert sorted(t.params["beta"] for t in result.trials) == [0.05, 0.1, 0.5]


def test_reference_logprobs_computed_once_and_shared(beta_sweep, storage):
    caches = list((storage / "ref-logps").glob("*/manifest.json"))
    assert len(caches) == 1
    assert json.loads(caches[0].read_text())["rows"] > 0
    # one file, whatever the row count: each trial's read lists every file through Ray Data's
    # pool of footer-reading actors (97 one-row files cost ~5 s a trial on 2 cores)
    assert [p.name for p in (caches[0].parent / "rows").iterdir()] == ["rows.parquet"]
    result, _ = beta_sweep
    for t in result.trials:
        manifest = json.loads((storage / t.stage_dir / "manifest.json").read_text())
        assert manifest["config"]["trainer"]["precompute_ref_log_probs"]


def test_report_and_best_yaml_validate(beta_sweep):
    result, report = beta_sweep
    text = report.read_text()
    assert "## Best trial" in text and "objective_vs_beta.png" in text
    html = (report.parent / "report.html").read_text()
    assert "data:image/png;base64," in html and "<table>" in html
    head = next(line for line in text.splitlines() if line.startswith("| trial"))
    assert "tinyreason_choice/acc" not in head and "objective ± se" in head  # one column per benchmark
    assert all(t.metrics["objective_se"] > 0 for t in result.trials)
    best = text.split("## Best trial")[1].split("###")[0]
    assert "Within noise of it" in best or "below it by more than the noise" in best
    lines = text.splitlines()  # each trial's first row is in the trials table (the cost table comes later)
    marks = [next(line for line in lines if line.startswith(f"| {t.trial_id} ")) for t in result.trials]
    assert len(marks) == 3 and sum(" best " in m for m in marks) == 1
    assert all("within noise" in m or " best " in m or "beyond noise" in m for m in marks)
    assert str(result.ctx.store.local_root) not in text  # paths relative to the storage root
    best = report.parent / "best.yaml"
    cfg = load_config(best)
    assert cfg.stage("dpo").trainer.beta == result.best.params["beta"]


def test_the_sweep_report_reads_cleanly_in_chromium(beta_sweep):
    import browser

    if browser.missing_browser():
        pytest.skip(browser.missing_browser())
    page = beta_sweep[1].with_suffix(".html")
    assert browser.check_report(page, Path(__file__).resolve().parents[2] / "test-artifacts" / "reports" / "sweep.png"
                                ) == []


def _logged_steps(storage: Path, stage_dir: str) -> list[int]:
    return [m["step"] for m in read_jsonl(storage / stage_dir / "metrics.jsonl") if "loss" in m]


def test_wandb_offline_runs_hold_the_logged_metrics(beta_sweep, storage):
    """Each trial's .wandb file (what `wandb sync` uploads) names its sweep group and tags,
    holds the trial's settings as config and the training logs as history."""
    result, _ = beta_sweep
    runs = {r.name: r for r in offline_runs(storage)}
    for t in result.trials:
        run = runs[f"micro-beta/{t.trial_id}"]  # one run per trial, named sweep/trial
        assert (run.project, run.group, run.tags) == ("tinyreason", "sweep/micro-beta", ["dpo", "micro"])
        assert run.config["beta"] == t.params["beta"] and run.config["learning_rate"] == 1e-4
        # the steps of its loss logs (the trainer's closing summary also carries a global step)
        steps = [row["train/global_step"] for row in run.history if "train/loss" in row]
        assert len(steps) >= 2 and steps == sorted(steps) and set(steps) <= set(_logged_steps(storage, t.stage_dir))
        losses = run.series("train/loss")
        assert len(losses) >= 2 and all(math.isfinite(v) for v in losses)
        assert run.series("train/learning_rate") and run.series("train/rewards/margins")


def test_wandb_offline_runs_are_finished_with_every_logged_step(beta_sweep, storage):
    result, _ = beta_sweep
    runs = {r.name: r for r in offline_runs(storage)}
    for t in result.trials:
        run = runs[f"micro-beta/{t.trial_id}"]
        assert run.exit_code == 0  # only wandb.finish() writes the exit record
        assert set(_logged_steps(storage, t.stage_dir)) <= set(run.series("train/global_step"))


ASHA = {"type": "asha", "metric": "loss", "mode": "min", "grace_period": 4, "reduction_factor": 2}


def test_asha_stops_a_lagging_trial_early_records_a_diverging_one_and_the_report_shows_both(ray_local, storage,
                                                                                           tmp_path):
    """A learning-rate sweep over sft under ASHA, trials one at a time. The first (a good
    learning rate) trains to the end and sets the bar at every rung (steps 4, 8, 16 of 18); a
    learning rate 2000x smaller barely moves the loss and is cut at the first rung; 1e9 drives
    the loss non-finite and fails. Stopped is not failed: no error, last metrics kept. One sweep
    shows both, as a researcher's first learning-rate sweep often does."""
    path = _sweep_file(tmp_path, "micro-asha", "sft", {"learning_rate": {"grid": [2.0e-3, 1.0e-6, 1.0e9]}},
                       storage, workers=None, scheduler=ASHA)  # the rungs are set for sft's own step count
    sweep, cfg = load_sweep(path)
    result = run_sweep(sweep, cfg)
    report = write_sweep_report(result)
    by_lr = {t.params["learning_rate"]: t for t in result.trials}
    winner = by_lr[2.0e-3]
    assert winner.status == "TERMINATED" and result.best is winner and "objective" in winner.metrics
    assert (storage / winner.stage_dir / "manifest.json").exists()
    final_step = winner.metrics["step"]

    lagging = by_lr[1.0e-6]
    assert lagging.status == "STOPPED" and lagging.error is None and "objective" not in lagging.metrics
    assert ASHA["grace_period"] <= lagging.metrics["step"] < final_step  # its last report to Tune
    assert math.isfinite(lagging.metrics["loss"]) and lagging.metrics["loss"] > winner.metrics["loss"]
    # its stage never completed: no manifest (a re-run resumes it), logs cut short of the end
    assert lagging.stage_dir and not (storage / lagging.stage_dir / "manifest.json").exists()
    logged = _logged_steps(storage, lagging.stage_dir)
    assert lagging.metrics["step"] in logged and max(logged) < final_step

    diverged = by_lr[1.0e9]
    assert diverged.status == "ERROR" and "non-finite" in diverged.error

    runs = {r.name: r for r in offline_runs(storage)}  # a stopped trial still left its wandb run
    assert all(runs[f"micro-asha/{t.trial_id}"].config["learning_rate"] == t.params["learning_rate"]
               for t in (winner, lagging))
    text = report.read_text()
    assert "3 trials (1 failed, 1 stopped early)" in text and "Scheduler ASHA on training `loss`" in text
    assert text.count("stopped early by ASHA at step") == 1 and "## Best trial" in text and "ERROR: " in text
    assert load_config(report.parent / "best.yaml").stage("sft").trainer.learning_rate == 2.0e-3
    saved = {t["trial_id"]: t["status"] for t in json.loads((report.parent / "trials.json").read_text())}
    assert sorted(saved.values()) == ["ERROR", "STOPPED", "TERMINATED"]


def test_a_grpo_sweep_over_its_own_knobs_finishes_with_its_report(ray_local, storage, tmp_path):
    """GRPO's knobs sweep like any stage's: three trials over beta (the KL coefficient: 0 runs
    without a reference model), each its own stage from the cached dpo parent, scored, reported."""
    path = _sweep_file(tmp_path, "micro-grpo", "grpo", {"beta": {"grid": [0.0, 0.02, 0.04]}}, storage)
    sweep, cfg = load_sweep(path)
    result = run_sweep(sweep, cfg)
    report = write_sweep_report(result)
    assert len(result.trials) == 3 and all(t.status == "TERMINATED" for t in result.trials), result.trials
    for t in result.trials:
        manifest = json.loads((storage / t.stage_dir / "manifest.json").read_text())
        assert manifest["kind"] == "grpo" and manifest["parent"]["name"] == "dpo"
        assert manifest["config"]["trainer"]["beta"] == t.params["beta"]
        assert "reward" in manifest["summary"]
    assert "## Best trial" in report.read_text() and load_config(report.parent / "best.yaml")
