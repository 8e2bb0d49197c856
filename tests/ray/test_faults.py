"""Faults are boring: a killed training worker resumes from the latest checkpoint at the
right step; a worker told to stop (SIGTERM) checkpoints the step it is on and the resumed
stage loses none; a stage stopped on 2 workers resumes on 1 at the same step, learning
rate and data position; a stage that cannot be scheduled fails before anything trains.
Real processes, real `os.kill`. The killed driver is in test_object_storage.py."""

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import yaml

from tinyreason.config.loading import load_config
from tinyreason.curriculum import run_curriculum
from tinyreason.train import launch
from tinyreason.train.checkpoints import INFO_FILE

ROOT = Path(__file__).resolve().parents[2]
STEPS, SAVE = 60, 10


def _micro(tmp_path: Path, stages: int, name: str, **stage_trainer) -> Path:
    """The micro curriculum cut to its first `stages` stages, with more steps and checkpoints."""
    raw = yaml.safe_load((ROOT / "configs" / "micro.yaml").read_text())
    raw["name"] = name
    raw["stages"] = raw["stages"][:stages]
    raw["evaluation"] = {"after_each_stage": False}
    for st in raw["stages"]:
        st["trainer"].update({"max_steps": STEPS, "save_steps": SAVE, "logging_steps": 5, "save_total_limit": 2,
                              **stage_trainer})
        st["scaling"]["max_failures"] = 1
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _checkpoints(run_dir: Path) -> list[Path]:
    return sorted(p for p in run_dir.glob("checkpoint_*") if (p / INFO_FILE).exists())


def _registered_names(run_dir: Path) -> set[str]:
    """The checkpoints Ray Train has registered (every rank's report is in): a restart gets the latest."""
    try:
        snapshot = json.loads((run_dir / "checkpoint_manager_snapshot.json").read_text())
    except (OSError, ValueError):
        return set()
    results = [*snapshot.get("checkpoint_results", []), snapshot.get("latest_checkpoint_result")]
    return {r["checkpoint_dir_name"] for r in results if r}


def _registered(run_dir: Path) -> bool:
    return bool(_registered_names(run_dir))


def _wait_for(predicate, timeout: float, what: str):
    end = time.time() + timeout
    while time.time() < end:
        found = predicate()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def _losses(metrics: list[dict]) -> dict[int, dict]:
    return {m["step"]: m for m in metrics if "loss" in m}


@pytest.fixture(scope="module")
def uninterrupted(ray_local, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("uninterrupted")
    cfg = load_config(_micro(tmp, 1, "faults"), [f"storage.path={tmp / 'runs'}"])
    return run_curriculum(cfg).stages[0]


def test_a_killed_worker_resumes_at_the_right_step_with_the_same_loss(ray_local, tmp_path, uninterrupted):
    cfg = load_config(_micro(tmp_path, 1, "faults"), [f"storage.path={tmp_path / 'runs'}"])
    killed = {}

    def kill_rank_1_after_the_first_checkpoint():
        run_dirs = lambda: list((tmp_path / "runs" / "ray").glob("00-pretrain-*"))  # noqa: E731
        run_dir = _wait_for(lambda: run_dirs() and _registered(run_dirs()[0]) and run_dirs()[0], 300,
                            "the first registered checkpoint")
        stage_dir = tmp_path / "runs" / "stages" / run_dir.name
        workers = [json.loads(l) for l in (stage_dir / "workers.jsonl").read_text().splitlines()]
        victim = next(w for w in workers if w["rank"] == 1)
        os.kill(victim["pid"], signal.SIGKILL)  # the process, not a mock: Ray sees a dead actor
        killed.update(victim, checkpoints=len(_checkpoints(run_dir)))

    killer = threading.Thread(target=kill_rank_1_after_the_first_checkpoint, daemon=True)
    killer.start()
    stage = run_curriculum(cfg).stages[0]
    killer.join(timeout=5)
    assert killed, "the worker was never killed"

    workers = [json.loads(l) for l in (stage.dir / "workers.jsonl").read_text().splitlines()]
    assert len(workers) == 4 and killed["pid"] not in [w["pid"] for w in workers[2:]]  # a second attempt
    startups = [m for m in stage.metrics if m.get("event") == "startup"]
    assert len(startups) == 2
    resumed_at = startups[1]["step"] - 1  # the attempt's first step follows its checkpoint
    assert resumed_at >= SAVE and resumed_at % SAVE == 0, startups

    # the same optimizer steps, learning-rate position and (to float noise) loss as without the fault
    ref, got = _losses(uninterrupted.metrics), _losses(stage.metrics)
    assert stage.manifest["summary"]["steps"] == uninterrupted.manifest["summary"]["steps"] == STEPS
    assert got[STEPS]["learning_rate"] == pytest.approx(ref[STEPS]["learning_rate"], rel=1e-6)
    assert got[STEPS]["loss"] == pytest.approx(ref[STEPS]["loss"], rel=0.02)
    assert stage.manifest["resumed"] is False  # resumed within the attempt, not from an earlier run


def _stage_dirs(tmp_path: Path) -> tuple[Path, Path]:
    """The stage's Ray run dir and stage dir, once Ray Train has registered a checkpoint."""
    run_dirs = lambda: list((tmp_path / "runs" / "ray").glob("00-pretrain-*"))  # noqa: E731
    run_dir = _wait_for(lambda: run_dirs() and _registered(run_dirs()[0]) and run_dirs()[0], 300,
                        "the first registered checkpoint")
    return run_dir, tmp_path / "runs" / "stages" / run_dir.name


def _sigterm_rank_1(tmp_path: Path, sent: dict) -> None:
    """After the first registered checkpoint: SIGTERM to rank 1, noting the step rank 0 had
    logged, then wait for the checkpoint on notice to be registered."""
    run_dir, stage_dir = _stage_dirs(tmp_path)
    workers = [json.loads(l) for l in (stage_dir / "workers.jsonl").read_text().splitlines()]
    victim = next(w for w in workers if w["rank"] == 1)
    logged = [json.loads(l) for l in (stage_dir / "metrics.jsonl").read_text().splitlines()]
    sent.update(pid=victim["pid"], logged=max(m.get("step", 0) for m in logged), time=time.time())
    os.kill(victim["pid"], signal.SIGTERM)  # what a spot reclaim or `ray stop` sends first

    def on_notice():
        for ckpt in _checkpoints(run_dir):
            info = json.loads((ckpt / INFO_FILE).read_text())
            # that checkpoint itself registered, not only one before it
            if info.get("cause", "").startswith("notice") and ckpt.name in _registered_names(run_dir):
                return info
        return None

    info = _wait_for(on_notice, 60, "a checkpoint on notice")
    sent.update(info=info, registered_after=time.time() - sent["time"])


def test_sigterm_checkpoints_the_current_step_and_the_resumed_stage_loses_none(ray_local, tmp_path, uninterrupted):
    cfg = load_config(_micro(tmp_path, 1, "faults", logging_steps=1), [f"storage.path={tmp_path / 'runs'}"])
    sent: dict = {}
    signaller = threading.Thread(target=_sigterm_rank_1, args=(tmp_path, sent), daemon=True)
    signaller.start()
    stage = run_curriculum(cfg).stages[0]
    signaller.join(timeout=5)
    assert "info" in sent, "no checkpoint on notice"

    # the step rank 1 was on when told, checkpointed and registered within seconds, by both workers
    step = sent["info"]["step"]
    assert sent["logged"] <= step <= sent["logged"] + 2, sent
    assert sent["registered_after"] < 10, sent
    assert sent["info"]["world_size"] == 2 and sent["info"]["cause"] == "notice (a notice on another worker)"
    notices = [m for m in stage.metrics if m.get("event") == "notice"]
    assert [n["step"] for n in notices] == [step]

    # the resumed attempt starts at the next step: every step trained once, none lost, none repeated
    startups = [m for m in stage.metrics if m.get("event") == "startup"]
    assert [s["step"] for s in startups] == [1, step + 1]
    logged = sorted(m["step"] for m in stage.metrics if "loss" in m)
    assert logged == list(range(1, STEPS + 1))
    workers = [json.loads(l) for l in (stage.dir / "workers.jsonl").read_text().splitlines()]
    assert len(workers) == 4 and sent["pid"] not in [w["pid"] for w in workers[2:]]

    # the same step count and learning-rate position as the run nobody interrupted
    assert stage.manifest["summary"]["steps"] == uninterrupted.manifest["summary"]["steps"] == STEPS
    ref, got = _losses(uninterrupted.metrics), _losses(stage.metrics)
    assert got[STEPS]["learning_rate"] == pytest.approx(ref[STEPS]["learning_rate"], rel=1e-6)
    assert stage.manifest["cost"]["attempts"] == 2 and stage.manifest["cost"]["worker_hours"] > 0


def test_a_stage_stopped_on_2_workers_resumes_on_1_at_the_same_step(ray_local, tmp_path, uninterrupted, monkeypatch):
    """Stop a 2-worker ZeRO-2 stage mid-way (SIGTERM, no retries), then run it again where
    only 1 worker fits: it resumes from the 2-worker checkpoint through a universal
    checkpoint, accumulating 2 micro-batches where 2 workers each took 1."""
    path = _micro(tmp_path, 1, "elastic")
    stopped = load_config(path, [f"storage.path={tmp_path / 'runs'}", "stages.pretrain.scaling.max_failures=0"])
    sent: dict = {}
    signaller = threading.Thread(target=_sigterm_rank_1, args=(tmp_path, sent), daemon=True)
    signaller.start()
    with pytest.raises(Exception, match="on notice"):
        run_curriculum(stopped)
    signaller.join(timeout=5)
    step = sent["info"]["step"]

    # Ray Train's elastic policy sizes the group from the nodes alive; one node here cannot
    # lose a node, so this stands in for its decision after losing one: 1 worker, not 2
    elastic = load_config(path, [f"storage.path={tmp_path / 'runs'}", "stages.pretrain.scaling.max_failures=0",
                                 "stages.pretrain.scaling.min_workers=1"])
    sized = launch.scaling_config
    monkeypatch.setattr(launch, "scaling_config", lambda st: sized(st.model_copy(
        update={"scaling": st.scaling.model_copy(update={"num_workers": 1, "min_workers": None})})))
    stage = run_curriculum(elastic).stages[0]

    startups = [m for m in stage.metrics if m.get("event") == "startup"]
    assert [(s["step"], s["world_size"], s["gradient_accumulation_steps"]) for s in startups] == \
        [(1, 2, 1), (step + 1, 1, 2)]
    assert stage.manifest["resumed"] is True and stage.manifest["summary"]["steps"] == STEPS
    ref, got = _losses(uninterrupted.metrics), _losses(stage.metrics)
    after = [s for s in got if s > step]
    assert after and all(got[s]["learning_rate"] == pytest.approx(ref[s]["learning_rate"], rel=1e-6) for s in after)
    # the same batches in the same steps, from the same optimizer state: the same loss, to float noise
    assert got[STEPS]["loss"] == pytest.approx(ref[STEPS]["loss"], rel=0.02)
    assert not (stage.dir / "trainer" / "elastic").exists() or not any((stage.dir / "trainer" / "elastic").iterdir())


def test_storage_keeps_the_last_n_checkpoints_and_the_best_model(uninterrupted):
    kept = uninterrupted.manifest["checkpoints"]["kept"]
    best = uninterrupted.manifest["checkpoints"]["best"]
    assert [k["step"] for k in kept] == [STEPS - SAVE, STEPS]  # the last two, complete
    run_dir = Path(kept[0]["path"]).parent
    assert len([p for p in run_dir.glob("checkpoint_*") if p.is_dir()]) == 2  # Ray pruned the rest
    assert all((Path(k["path"]) / "trainer_state.json").exists() for k in kept)
    # the best by mean training loss since the previous checkpoint, as a loadable model beside them
    assert best["step"] % SAVE == 0 and best["value"] <= min(k["value"] for k in kept)
    assert (Path(best["path"]) / "model.safetensors").exists() and not list(Path(best["path"]).glob("global_step*"))
    assert [p.name for p in (run_dir / "best").iterdir()] == [Path(best["path"]).name]


def test_more_workers_than_the_cluster_has_fails_before_anything_trains(ray_local, tmp_path):
    cfg = load_config(_micro(tmp_path, 2, "toobig"), [f"storage.path={tmp_path / 'runs'}",
                                                     "stages.sft.scaling.num_workers=16"])
    with pytest.raises(RuntimeError, match=r"stage sft asks for 16 CPU .* the cluster has 2; lower "
                                           r"stages.sft.scaling.num_workers"):
        run_curriculum(cfg)
    assert not (tmp_path / "runs" / "stages").exists()  # nothing trained, stage 1 included


def test_a_gpu_stage_on_a_cpu_cluster_names_use_gpu(ray_local, tmp_path):
    cfg = load_config(_micro(tmp_path, 1, "nogpu"), [f"storage.path={tmp_path / 'runs'}",
                                                     "stages.pretrain.scaling.use_gpu=true"])
    with pytest.raises(RuntimeError, match="asks for 2 GPU .* has 0; .* set use_gpu: false"):
        run_curriculum(cfg)
