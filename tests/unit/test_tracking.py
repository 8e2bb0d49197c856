"""Tracking without Ray: the wandb environment a stage gets, and reading offline runs back.

The round trip runs real wandb (offline, in a subprocess like a Ray worker) and reads its
.wandb transaction log with tracking.read_offline_run: what the sweep and curriculum tests
use to check that the metrics the platform logged are in the files `wandb sync` uploads.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tinyreason.config.sections import TrackingConfig
from tinyreason.tracking import report_to, wandb_env, wandb_mode
from wandb_log import offline_runs, read_offline_run

ROOT = Path(__file__).resolve().parents[2]


def _tracking(**wandb) -> TrackingConfig:
    return TrackingConfig.model_validate({"wandb": wandb})


def test_mode_is_online_only_with_a_key(monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert wandb_mode(_tracking()) == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    assert wandb_mode(_tracking()) == "online"
    assert wandb_mode(_tracking(mode="offline")) == "offline"
    assert wandb_mode(_tracking(enabled=False)) == "disabled"


def test_env_names_group_tags_and_dir_and_never_the_key(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_API_KEY", "0f3e9c1d2bfake7f3e9c1d2bfake")
    env = wandb_env(_tracking(mode="offline"), tmp_path, group="sweep/lr", tags=["sft", "micro"])
    assert env["WANDB_MODE"] == "offline" and env["WANDB_RUN_GROUP"] == "sweep/lr"
    assert env["WANDB_TAGS"] == "sft,micro" and env["WANDB_DIR"] == str(tmp_path / "wandb")
    assert not any("0f3e9c1d2bfake" in v for v in env.values())
    assert report_to(env) == ["wandb"]
    assert wandb_env(_tracking(enabled=False), tmp_path, "g", []) == {} and report_to({}) == []


# A stage's rank 0 as transformers' WandbCallback drives it: init from the env, config, one
# history row per log with train/ prefixes and train/global_step, then (or not) finish.
_RUN = """
import os, sys, wandb
run = wandb.init(name="micro/sft", config={"learning_rate": 1e-3, "beta": 0.1})
for step in (2, 4, 6):
    wandb.log({"train/loss": 5.0 - step / 10, "train/learning_rate": 1e-3 * (1 - step / 8), "train/global_step": step})
if sys.argv[1] == "finish":
    wandb.finish()
else:
    import time
    time.sleep(0.6)  # past the 0.25 s flush interval wandb_env sets; at 1 s the file kept 7 bytes
    os._exit(0)  # how a Ray Train worker ends: killed, no atexit
"""


def _offline_run(tmp_path: Path, how: str) -> Path:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(wandb_env(_tracking(mode="offline"), tmp_path, group="micro", tags=["sft", "micro"]))
    subprocess.run([sys.executable, "-c", _RUN, how], env=env, check=True, timeout=120, cwd=tmp_path)
    (run_dir,) = (tmp_path / "wandb" / "wandb").glob("offline-run-*")
    return run_dir


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    return _offline_run(tmp_path_factory.mktemp("wandb-finished"), "finish")


def test_offline_run_reads_back_what_was_logged(finished_run):
    run = read_offline_run(finished_run)
    assert (run.name, run.project, run.group, run.tags) == ("micro/sft", "tinyreason", "micro", ["sft", "micro"])
    assert run.config["learning_rate"] == 1e-3 and run.config["beta"] == 0.1
    assert run.series("train/global_step") == [2, 4, 6]
    assert run.series("train/loss") == pytest.approx([4.8, 4.6, 4.4])
    assert len(run.series("train/learning_rate")) == 3 and run.exit_code == 0
    assert [r.name for r in offline_runs(finished_run.parents[2])] == ["micro/sft"]


def test_a_truncated_log_reads_up_to_where_it_stops(finished_run, tmp_path):
    src = next(finished_run.glob("*.wandb"))
    cut = tmp_path / "offline-run-cut"
    cut.mkdir()
    data = src.read_bytes()
    (cut / src.name).write_bytes(data[: len(data) * 2 // 3])  # a worker killed mid-write
    run = read_offline_run(cut)
    assert run.name == "micro/sft" and len(run.history) <= 3


def test_not_a_wandb_file_is_refused(tmp_path):
    (tmp_path / "run-x.wandb").write_bytes(json.dumps({"a": 1}).encode())
    with pytest.raises(ValueError, match="not a wandb transaction log"):
        read_offline_run(tmp_path)


def test_a_killed_run_keeps_what_it_logged_a_moment_before(tmp_path):
    """A Ray Train worker is killed (with its wandb-core child) when the loop returns, a
    fault hits or ASHA stops its trial. wandb-core flushes every 15 s by default: a killed
    10 s stage left a header-only file. wandb_env makes it flush every 0.25 s: a micro trial
    that ASHA stops under a second after its run began keeps its config and rows."""
    run = read_offline_run(_offline_run(tmp_path, "kill"))
    assert run.group == "micro" and run.series("train/global_step") == [2, 4, 6]
    assert run.exit_code is None  # no exit record: only wandb.finish() writes one
