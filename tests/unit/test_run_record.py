"""Every invocation gets its own run record with its provenance, the newest is easy to find,
and the report's footer shows where the numbers came from."""

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import ray

from tinyreason.config.loading import load_config
from tinyreason.context import RunContext
from tinyreason.curriculum import CurriculumResult
from tinyreason.outputs import ModelRef, Outputs
from tinyreason.provenance_report import footer
from tinyreason.run_provenance import RunProvenance, git_brief, machine_summary, shown_command
from tinyreason.stage import StageOutcome
from tinyreason.storage import Storage

ROOT = Path(__file__).resolve().parents[2]


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def dirty_repo(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    root = tmp_path / "checkout"
    (root / "platform").mkdir(parents=True)
    (root / "platform" / "model.py").write_text("WIDTH = 64\n")
    git(root, "-c", "init.defaultBranch=main", "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "first")
    (root / "platform" / "model.py").write_text("WIDTH = 128\n")  # uncommitted
    (root / "notes.py").write_text("")  # untracked
    return root


def test_runs_never_overwrite_each_other_and_the_latest_is_easy_to_find(tmp_path):
    outputs = Outputs(Storage(str(tmp_path)))
    assert outputs.latest_run("exp") is None
    first = outputs.run("exp")
    time.sleep(0.002)
    second = outputs.run("exp")
    assert first.run_id != second.run_id and sorted([second.run_id, first.run_id]) == [first.run_id, second.run_id]
    for run, value in ((first, 1), (second, 2)):
        run.start()
        run.write_json("config.json", {"value": value})
    home = tmp_path / "runs" / "exp"
    assert (home / "LATEST").read_text().strip() == second.run_id
    assert (home / "latest").is_symlink() and os.readlink(home / "latest") == second.run_id  # relative
    assert json.loads((home / "latest" / "config.json").read_text()) == {"value": 2}
    assert json.loads((first.path / "config.json").read_text()) == {"value": 1}  # the first record stays
    assert outputs.latest_run("exp").path == second.path


def test_the_command_line_is_recorded_without_credentials(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secretvalue123")
    argv = ["jobs/curriculum.py", "--set", "storage.path=s3://AKIA:wJalrXUtn@bucket/x", "--set", "x=hf_secretvalue123"]
    shown = " ".join(shown_command(argv))
    assert "wJalrXUtn" not in shown and "hf_secretvalue123" not in shown and "s3://***@bucket/x" in shown


def test_the_run_records_git_environment_and_times_and_the_footer_shows_them(tmp_path, dirty_repo):
    cfg = load_config(ROOT / "configs" / "micro.yaml", [f"storage.path={tmp_path / 'store'}", "seed=3"])
    ctx = RunContext.of(cfg)
    run = ctx.outputs.run(cfg.name)
    run.start()
    prov = RunProvenance.start(ctx, run, repo_root=dirty_repo)
    assert ctx.trained_by.git["dirty"] is True and ctx.trained_by.git["source"] == "git"
    record = json.loads((run.path / "provenance.json").read_text())
    assert record["ended_at"] is None and record["status"] == "running"  # a run that dies keeps this
    prov.finish()
    record = json.loads((run.path / "provenance.json").read_text())
    git_state = record["git"]
    assert git_state["commit"] == git(dirty_repo, "rev-parse", "HEAD").strip() and git_state["dirty"]
    assert "+WIDTH = 128" in (run.path / "git.diff").read_text() and git_state["untracked"] == ["notes.py"]
    assert record["config"]["seed"] == 3 and record["seed"] == 3 and record["ended_at"] >= record["started_at"]
    freeze = (run.path / "requirements-driver.txt").read_text().splitlines()
    assert any(p.startswith("torch==") for p in freeze) and freeze == record["driver"]["packages"]
    assert record["driver"]["python"]["version"] and record["driver"]["cpu"]["count"] >= 1
    assert {"torch", "trl", "transformers"} <= set(record["numerics"])
    # recorded, never raised: no Ray when this tier runs alone, a live one after the ray tier
    assert record["ray"]["available"] is ray.is_initialized()
    assert record["platform"]["version"]

    stage = cfg.stages[0]
    manifest = {"key": "k", "summary": {}, "provenance": {
        "trained_by": ctx.trained_by.of("pretrain"), "seed": {"seed": 3, "from": "seed"},
        "worker": machine_summary(record["driver"])}}
    outcome = StageOutcome(0, stage, ctx.outputs.stage(0, stage.name, "k"), manifest, False)
    stale = StageOutcome(1, cfg.stages[1], ctx.outputs.stage(1, "sft", "old"), {"key": "old"}, True,
                         stale=["trl 1.16.0 -> 1.17.0"])
    text = "\n".join(footer(CurriculumResult(cfg, run, ModelRef("base", "b", "b", "k"), None, [outcome, stale])))
    short = git_state["commit"][:12]
    for fragment in ("## Provenance", run.run_id, f"commit {short} (main), DIRTY", "git.diff",
                     "requirements-driver.txt", f"trl {record['numerics']['trl']}", "3 (seed)",
                     "stale (reused)", "**sft** is stale", "trl 1.16.0 -> 1.17.0", "the checkout the driver ran in"):
        assert fragment in text, (fragment, text)


def test_summaries_keep_what_changes_numbers():
    assert git_brief({"available": False, "why": "no git"}) == {"available": False, "why": "no git"}
    brief = git_brief({"available": True, "commit": "c" * 40, "branch": "main", "dirty": True, "diff": "x",
                       "source": "client record"})
    assert brief["dirty"] and brief["diff_digest"] and brief["source"] == "client record"
    assert machine_summary(None) is None
    env = {"hostname": "h", "python": {"version": "3.12"}, "torch": {"version": "2.13.0", "cuda_build": "12.8",
           "gpus": ["NVIDIA H200"]}, "nvidia": {"driver": "570.1"}, "cpu": {"model": "Xeon", "usable": 16},
           "packages": ["a==1", "b==2"]}
    s = machine_summary(env)
    assert s["gpus"] == ["NVIDIA H200"] and s["nvidia_driver"] == "570.1" and s["packages"] == 2


def test_a_report_without_a_provenance_record_says_so(tmp_path):
    cfg = load_config(ROOT / "configs" / "micro.yaml", [f"storage.path={tmp_path}"])
    run = Outputs(Storage(str(tmp_path))).run("micro")
    lines = footer(CurriculumResult(cfg, run, ModelRef("base", "b", "b", "k"), None, []))
    assert "No provenance.json" in "\n".join(lines)


def test_provenance_reaches_the_wandb_config(tmp_path):
    import wandb
    from wandb_log import read_offline_run

    from tinyreason.tracking import finish_run, log_provenance

    log_provenance({"ignored": True})  # no run: a no-op
    settings = wandb.Settings(silent=True, init_timeout=300)  # wandb-core starts slowly on 2 busy cores
    wandb.init(mode="offline", dir=str(tmp_path), project="t", settings=settings)
    log_provenance({"git": {"commit": "abc", "dirty": True}, "versions": {"trl": "1.16.0"}, "seed": 5})
    finish_run()  # finish, then wait for wandb-core to write the log out
    [path] = tmp_path.rglob("*.wandb")
    config = read_offline_run(path.parent).config
    assert config["tinyreason"]["git"] == {"commit": "abc", "dirty": True} and config["tinyreason"]["seed"] == 5
