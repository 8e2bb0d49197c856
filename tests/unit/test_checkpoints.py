"""Checkpoint bookkeeping on storage and the re-run explanation: pure functions and a
local pyarrow filesystem, no Ray started (the resume test stands in Ray Train's context)."""

import json
from pathlib import Path
from types import SimpleNamespace

import pyarrow.fs as pafs
import pytest

from tinyreason.curriculum import StageOutcome, why_trained
from tinyreason.train.checkpoints import MetricWindow, best_and_kept, is_better, keep_if_best, write_info

FS = pafs.LocalFileSystem()


def _checkpoint(run, step, value, optimizer=True):
    d = run / f"checkpoint_{step:03d}"
    d.mkdir(parents=True)
    (d / "model.safetensors").write_bytes(b"w" * step)
    (d / "config.json").write_text("{}")
    if optimizer:
        (d / "global_step").mkdir()
        (d / "global_step" / "optim_states.pt").write_bytes(b"o")
        (d / "scheduler.pt").write_bytes(b"s")
    write_info(d, step, "loss", value)
    return d


def test_is_better_by_mode():
    assert is_better(1.0, 2.0, "min") and not is_better(3.0, 2.0, "min")
    assert is_better(3.0, 2.0, "max") and is_better(1.0, None, "min") and not is_better(None, 1.0, "min")


def test_the_best_models_files_are_copied_aside_and_the_old_best_removed(tmp_path):
    run = tmp_path / "run"
    for step, value, improves in ((10, 3.0, True), (20, 1.5, True), (30, 2.0, False)):
        assert keep_if_best(FS, str(_checkpoint(run, step, value)), "min") is improves
    best = json.loads((run / "best.json").read_text())
    assert best["step"] == 20 and best["value"] == 1.5
    kept = run / "best" / "checkpoint_020"
    assert sorted(p.name for p in kept.iterdir()) == ["config.json", "model.safetensors", "tinyreason_checkpoint.json"]
    assert not (run / "best" / "checkpoint_010").exists()  # the previous best is gone
    # the run's checkpoints themselves are untouched: Ray owns and prunes those
    assert all((run / f"checkpoint_{s:03d}" / "scheduler.pt").exists() for s in (10, 20, 30))


def test_max_mode_keeps_the_highest(tmp_path):
    run = tmp_path / "run"
    for step, value in ((10, 0.2), (20, 0.9), (30, 0.5)):
        keep_if_best(FS, str(_checkpoint(run, step, value)), "max")
    assert json.loads((run / "best.json").read_text())["step"] == 20


def test_best_and_kept_lists_registered_checkpoints_only(tmp_path):
    run = tmp_path / "run"
    for step, value in ((10, 2.0), (20, 1.0)):
        keep_if_best(FS, str(_checkpoint(run, step, value)), "min")
    (run / "checkpoint_030").mkdir()  # no info file yet: still uploading
    _checkpoint(run, 40, 0.5)  # info file there, but Ray never registered it: a killed attempt's partial upload
    registered = [{"checkpoint_dir_name": f"checkpoint_{s:03d}", "metrics": {}} for s in (10, 20, 30)]
    (run / "checkpoint_manager_snapshot.json").write_text(json.dumps({"checkpoint_results": registered}))
    out = best_and_kept(FS, str(run), "min")
    assert [k["step"] for k in out["kept"]] == [10, 20]
    assert out["best"]["step"] == 20 and out["best"]["path"].endswith("best/checkpoint_020")
    assert best_and_kept(FS, str(tmp_path / "missing"), "min") == {"kept": [], "best": None}


def test_metric_window_averages_since_the_last_checkpoint():
    w = MetricWindow("loss")
    for v in (4.0, 2.0):
        w.add({"loss": v, "step": 1})
    w.add({"grad_norm": 1.0})
    assert w.take() == 3.0
    assert w.take() == 2.0  # nothing logged since: the last value (save_steps < logging_steps)


def _outcome(config, blend="b1", parent="p1", cached=False, resumed=False):
    manifest = {"config": config, "blend": {"key": blend}, "parent": {"key": parent, "name": "sft"}}
    return StageOutcome(1, None, None, manifest, cached, resumed=resumed)


PREV = {"config": {"trainer": {"learning_rate": 1e-3, "beta": 0.1}}, "blend": "b1", "parent": "p1"}


@pytest.mark.parametrize("outcome, fragments", [
    (_outcome(PREV["config"], cached=True), ["unchanged", "reused"]),
    (_outcome({"trainer": {"learning_rate": 2e-3, "beta": 0.1}}), ["config changed", "trainer.learning_rate 0.001 -> 0.002"]),
    (_outcome(PREV["config"], blend="b2"), ["blend changed"]),
    (_outcome(PREV["config"], parent="p2"), ["parent sft changed"]),
    (_outcome(PREV["config"]), ["output was missing"]),
    (_outcome({"trainer": {"learning_rate": 1e-3, "beta": 0.2}}, resumed=True),
     ["trainer.beta 0.1 -> 0.2", "resumed an interrupted attempt"]),
])
def test_why_a_stage_was_trained(outcome, fragments):
    text = why_trained(PREV, outcome)
    for f in fragments:
        assert f in text, text


def test_a_first_run_says_so():
    assert "had not run it before" in why_trained(None, _outcome(PREV["config"]))


def test_each_rank_downloads_a_checkpoint_from_object_storage_to_a_directory_of_its_own(tmp_path, monkeypatch):
    """Ray's default download dir is the checkpoint's alone, shared by a node's ranks, and a rank
    that comes after the first has finished downloads it again over the files the first is
    reading. A checkpoint on a filesystem that is not this machine's (here a sub-tree filesystem,
    as S3 would be) goes to a dir per rank, each complete; a local one is read in place."""
    import ray.train
    from ray.train import Checkpoint

    from tinyreason.train import checkpoints

    remote = tmp_path / "bucket"
    (remote / "checkpoint_000").mkdir(parents=True)
    (remote / "checkpoint_000" / "trainer_state.json").write_text('{"global_step": 10}')
    ckpt = Checkpoint("checkpoint_000", filesystem=pafs.SubTreeFileSystem(str(remote), FS))
    monkeypatch.chdir(tmp_path)  # "checkpoint_000" is no path on this machine
    monkeypatch.setattr(ray.train, "get_checkpoint", lambda: ckpt)
    dirs = []
    for rank in (0, 1):
        monkeypatch.setattr(ray.train, "get_context", lambda rank=rank: SimpleNamespace(get_world_rank=lambda: rank))
        dirs.append(checkpoints.resume_checkpoint())
    assert dirs[0] != dirs[1] and all(d.endswith(f"-rank{r}") for r, d in enumerate(dirs))
    assert all(json.loads((Path(d) / "trainer_state.json").read_text()) == {"global_step": 10} for d in dirs)
    local = Checkpoint.from_directory(str(remote / "checkpoint_000"))
    monkeypatch.setattr(ray.train, "get_checkpoint", lambda: local)
    assert checkpoints.resume_checkpoint() == str(remote / "checkpoint_000")
