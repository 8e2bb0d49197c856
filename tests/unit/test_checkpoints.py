"""Checkpoint retention and the re-run explanation: pure functions, no Ray."""

import pyarrow.fs as pafs
import pytest

from tinyreason.curriculum import StageOutcome, why_trained
from tinyreason.train.checkpoints import MetricWindow, Saved, best_and_kept, choose_kept, write_info


def _saved(*pairs):
    return [Saved(f"ckpt-{step}", step, value) for step, value in pairs]


def test_keeps_the_last_n_and_the_best():
    saved = _saved((10, 3.0), (20, 1.5), (30, 2.0), (40, 2.5), (50, 2.2))
    assert choose_kept(saved, 2, True, "min") == {"ckpt-40", "ckpt-50", "ckpt-20"}
    assert choose_kept(saved, 2, False, "min") == {"ckpt-40", "ckpt-50"}
    assert choose_kept(saved, 2, True, "max") == {"ckpt-40", "ckpt-50", "ckpt-10"}
    assert choose_kept(saved, None, True, "min") == {s.path for s in saved}


def test_best_among_the_last_adds_nothing_and_ties_go_to_the_later():
    assert choose_kept(_saved((10, 3.0), (20, 2.0), (30, 1.0)), 2, True, "min") == {"ckpt-20", "ckpt-30"}
    assert choose_kept(_saved((10, 1.0), (20, 1.0), (30, 5.0), (40, 5.0)), 1, True, "min") == {"ckpt-20", "ckpt-40"}


def test_unscored_checkpoints_are_kept_by_recency_only():
    assert choose_kept(_saved((10, None), (20, None), (30, None)), 1, True, "min") == {"ckpt-30"}


def test_metric_window_averages_since_the_last_checkpoint():
    w = MetricWindow("loss")
    for v in (4.0, 2.0):
        w.add({"loss": v, "step": 1})
    w.add({"grad_norm": 1.0})
    assert w.take() == 3.0
    assert w.take() == 2.0  # nothing logged since: the last value (save_steps < logging_steps)


def test_best_and_kept_reads_info_files_and_skips_uploads_in_progress(tmp_path):
    for step, value in ((10, 2.0), (20, 1.0), (30, 1.5)):
        d = tmp_path / f"checkpoint_{step}"
        d.mkdir()
        write_info(d, step, "loss", value)
    (tmp_path / "checkpoint_40").mkdir()  # no info file yet: still uploading
    (tmp_path / "checkpoint_manager_snapshot.json").write_text("{}")
    out = best_and_kept(pafs.LocalFileSystem(), str(tmp_path), "min")
    assert [k["step"] for k in out["kept"]] == [10, 20, 30]
    assert out["best"]["step"] == 20 and out["best"]["value"] == 1.0
    assert best_and_kept(pafs.LocalFileSystem(), str(tmp_path / "missing"), "min") == {"kept": [], "best": None}


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
