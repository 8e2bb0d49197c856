"""Spot-safe training without Ray: the SIGTERM notice, timed checkpoints, elastic batch
arithmetic, which checkpoints need converting, and what a stage's cache key ignores.
The same pieces under real Ray Train workers are in tests/ray/test_faults.py."""

import os
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tinyreason.config.loading import load_config
from tinyreason.stage import stage_key
from tinyreason.train import elastic, notice
from tinyreason.train.args import deepspeed_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sigterm_notice():
    """The notice handler on this (main) thread, restored afterwards; Ray's would exit instead."""
    exits = []
    before = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda signum, frame: exits.append(signum))
    notice.install()
    yield exits
    notice.NOTICE.training = False
    notice.NOTICE.clear()
    signal.signal(signal.SIGTERM, before)


def _deliver(sig=signal.SIGTERM):
    os.kill(os.getpid(), sig)
    time.sleep(0.05)  # Python runs the handler between bytecodes on the main thread


def test_sigterm_during_training_is_a_notice_and_a_second_one_exits(sigterm_notice):
    check = notice.StepCheck(every_minutes=None, on_notice=True)
    check.start()
    assert check.at_step_end() == notice.Decision()
    _deliver()
    assert notice.received() == "SIGTERM" and sigterm_notice == []  # recorded, not exited
    decision = check.at_step_end()
    assert decision.save and decision.stop == "SIGTERM" and decision.cause == "notice (SIGTERM)"
    assert notice.NOTICE.watchdog is not None and notice.NOTICE.watchdog.is_alive()  # exits if the save hangs
    _deliver()
    assert sigterm_notice == [signal.SIGTERM]  # the second signal: the handler it replaced (Ray's exit)


def test_sigterm_outside_training_exits_at_once(sigterm_notice):
    _deliver()
    assert notice.received() is None and sigterm_notice == [signal.SIGTERM]


def test_without_on_notice_a_sigterm_is_not_taken(sigterm_notice):
    check = notice.StepCheck(every_minutes=None, on_notice=False)
    check.start()
    _deliver()
    assert sigterm_notice == [signal.SIGTERM] and check.at_step_end() == notice.Decision()


def test_a_timed_checkpoint_is_due_every_minutes_after_the_last_save():
    check = notice.StepCheck(every_minutes=0.5 / 60, on_notice=False)  # half a second
    check.start()
    assert not check.at_step_end().save
    time.sleep(0.6)
    assert check.at_step_end() == notice.Decision(save=True, cause="every_minutes")
    check.saved()
    assert not check.at_step_end().save


def _stage(*overrides):
    return load_config(ROOT / "configs" / "micro.yaml", list(overrides)).stages[0]


@pytest.mark.parametrize("step, at_end, saved", [
    (12, False, False),  # the last step, not a save_steps multiple: the export is the stage's model
    (12, True, True),    # kept on request (checkpoints.at_end)
    (10, False, True),   # a save_steps multiple is a checkpoint like any other
])
def test_the_last_step_is_checkpointed_only_when_asked_or_due(tmp_path, step, at_end, saved):
    """transformers' own flow callback saves the last step; the platform's report callback,
    after it in the same on_step_end, takes that back unless checkpoints.at_end asks for it."""
    from transformers import TrainerControl, TrainerState, TrainingArguments
    from transformers.trainer_callback import DefaultFlowCallback

    from tinyreason.outputs import StageOutput
    from tinyreason.storage import Storage
    from tinyreason.train.job import StageJob
    from tinyreason.train.reporting import make_report_callback

    stage = _stage("stages.pretrain.trainer.save_steps=5", f"stages.pretrain.checkpoints.at_end={at_end}")
    job = StageJob(stage, "parent", "tok", StageOutput(Storage(str(tmp_path)), "stages/00-pretrain"))
    args = TrainingArguments(output_dir=str(tmp_path), save_strategy="steps", save_steps=5, use_cpu=True)
    state, control = TrainerState(global_step=step, max_steps=step, save_steps=5), TrainerControl()
    for callback in (DefaultFlowCallback(), make_report_callback(job)):
        callback.on_step_end(args, state, control)
    assert control.should_training_stop and control.should_save is saved


def test_fewer_workers_accumulate_more_micro_batches_and_keep_the_batch():
    stage = _stage("stages.pretrain.trainer.gradient_accumulation_steps=2")
    assert elastic.micro_batches_per_step(stage) == 4
    assert [elastic.accumulation(stage, w) for w in (1, 2, 4)] == [4, 2, 1]
    with pytest.raises(ValueError, match="runs on 3 workers, which cannot share its 4 micro-batches"):
        elastic.accumulation(stage, 3)


def _checkpoint(tmp_path: Path, ranks: int, tag: str = "global_step12") -> Path:
    ckpt = tmp_path / "checkpoint-12"
    (ckpt / tag).mkdir(parents=True)
    (ckpt / "latest").write_text(tag)
    for r in range(ranks):
        (ckpt / tag / f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt").write_bytes(b"")
        (ckpt / f"rng_state_{r}.pth").write_bytes(b"")
    (ckpt / tag / "mp_rank_00_model_states.pt").write_bytes(b"")
    return ckpt


def test_which_checkpoints_need_converting(tmp_path):
    ckpt = _checkpoint(tmp_path, 2)
    assert elastic.deepspeed_tag(ckpt) == "global_step12" and elastic.written_by(ckpt) == 2
    assert elastic.plan(str(ckpt), 2, 0, 0, tmp_path / "scratch") == elastic.Resume(str(ckpt))  # as it is
    assert elastic.plan(None, 1, 0, 0, tmp_path) == elastic.Resume(None)
    bare = tmp_path / "no-deepspeed"
    bare.mkdir()
    (bare / "optimizer.pt").write_bytes(b"")  # an unpartitioned optimizer loads on any number of workers
    assert elastic.written_by(bare) is None and elastic.plan(str(bare), 4, 0, 0, tmp_path) == elastic.Resume(str(bare))


def test_one_worker_resumes_rank_0s_random_state(tmp_path):
    ckpt, dest = _checkpoint(tmp_path, 2), tmp_path / "universal"
    dest.mkdir()
    elastic.link_rng_states(ckpt, dest, world=1, rank=0)
    assert (dest / "rng_state.pth").samefile(ckpt / "rng_state_0.pth")


def test_a_failed_conversion_names_the_checkpoint_and_leaves_nothing_half_made(tmp_path):
    ckpt = _checkpoint(tmp_path, 2)  # empty files: DeepSpeed's converter cannot read them
    with pytest.raises(RuntimeError, match=r"converting .*global_step12 to a universal checkpoint failed"):
        elastic.make_universal(ckpt, tmp_path / "out")
    assert not list(tmp_path.glob("out*"))


def test_a_universal_resume_tells_deepspeed_to_load_one():
    ds = _stage().deepspeed
    assert "checkpoint" not in deepspeed_config(ds, "fp32")
    assert deepspeed_config(ds, "fp32", universal=True)["checkpoint"] == {"load_universal": True}


def test_how_a_stage_runs_is_not_part_of_its_cache_key():
    parent, blend = SimpleNamespace(key="p"), SimpleNamespace(manifest={"key": "b"})
    base = stage_key(_stage(), parent, blend, 0)
    for run_only in ("stages.pretrain.scaling.min_workers=1", "stages.pretrain.checkpoints.every_minutes=15",
                     "stages.pretrain.checkpoints.on_notice=false", "stages.pretrain.scaling.max_failures=3",
                     "stages.pretrain.scaling.placement_strategy=SPREAD", "stages.pretrain.checkpoints.upload=sync",
                     "stages.pretrain.checkpoints.at_end=true"):
        assert stage_key(_stage(run_only), parent, blend, 0) == base, run_only
    assert stage_key(_stage("stages.pretrain.scaling.num_workers=1"), parent, blend, 0) != base  # the batch changed


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "configs").glob("*.yaml")))
def test_gpu_configs_survive_a_lost_node_and_checkpoint_by_the_clock(name):
    """cluster.yaml's GPU nodes are spot: a stage that fails on the first reclaim, or saves only
    every few hundred steps, is not a stage for them."""
    for stage in load_config(ROOT / "configs" / f"{name}.yaml").stages:
        if stage.scaling.use_gpu:
            assert stage.scaling.max_failures >= 1, (name, stage.name)
            assert stage.checkpoints.every_minutes and stage.checkpoints.every_minutes <= 30, (name, stage.name)
            assert stage.checkpoints.on_notice, (name, stage.name)


def test_an_elastic_stage_asks_ray_train_for_a_range_of_workers():
    from tinyreason.train import launch

    fixed = launch.scaling_config(_stage())
    assert fixed.num_workers == 2 and not fixed.elasticity_enabled
    elastic_ = launch.scaling_config(_stage("stages.pretrain.scaling.min_workers=1"))
    assert elastic_.num_workers == (1, 2) and elastic_.elastic_resize_monitor_interval_s == launch.RESIZE_CHECK_S
