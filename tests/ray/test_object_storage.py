"""`storage.path` on object storage, and a driver that dies: the spot-instance story.

A real S3 API (moto's server on 127.0.0.1) holds every output. The curriculum runs as a
user runs it (`jobs/curriculum.py`, its own local Ray, SIGKILLed with its whole process
group while stage 2 trains) from one mirror dir; the same command from a fresh, empty
mirror, as on a new machine, finds stage 1 complete on S3, re-trains nothing of it, and
resumes stage 2 from its latest checkpoint on S3.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from s3_server import FAKE_AWS_ENV, make_bucket, moto_s3, s3_uri

from tinyreason.storage import Storage

ROOT = Path(__file__).resolve().parents[2]
STEPS, SAVE = 40, 10


def _registered(store: Storage, run: str) -> bool:
    """Ray Train registered a checkpoint of `run` (every rank's upload done): a restart gets it."""
    try:
        snapshot = json.loads(store.read_text(f"ray/{run}/checkpoint_manager_snapshot.json"))
    except (OSError, ValueError):
        return False
    return snapshot.get("latest_checkpoint_result") is not None


@pytest.fixture(scope="module")
def s3_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("s3")
    raw = yaml.safe_load((ROOT / "configs" / "micro.yaml").read_text())
    raw["name"] = "s3micro"
    raw["stages"] = raw["stages"][:2]
    raw["evaluation"] = {"heldout_problems": 5, "max_new_tokens": 16, "batch_size": 5}
    raw["stages"][0]["trainer"].update({"max_steps": 10, "save_steps": 5})
    raw["stages"][1]["trainer"].update({"max_steps": STEPS, "save_steps": SAVE})
    config = tmp / "s3micro.yaml"
    config.write_text(yaml.safe_dump(raw))
    with moto_s3() as endpoint:
        make_bucket(endpoint, "tinyreason")
        uri = s3_uri(endpoint, "tinyreason", "runs") + "&region=us-east-1"
        store = Storage(uri)

        def start(mirror: str, **kw):
            env = {**os.environ, **FAKE_AWS_ENV, "TINYREASON_CACHE": str(tmp / mirror), "PYTHONUNBUFFERED": "1"}
            return subprocess.Popen([sys.executable, "jobs/curriculum.py", "--config", str(config),
                                     "--set", f"storage.path={uri}"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, **kw)

        first = start("machine-a", start_new_session=True)
        try:
            deadline = time.time() + 400
            while not [r for r in store.listdir("ray") if r.startswith("01-sft-") and _registered(store, r)]:
                assert time.time() < deadline and first.poll() is None, "stage 2 never checkpointed"
                time.sleep(0.2)
        finally:
            os.killpg(first.pid, signal.SIGKILL)  # the driver, its local Ray and the training workers
            first_log = first.communicate(timeout=60)[0]
        stage1 = next(s for s in store.listdir("stages") if s.startswith("00-pretrain-"))
        before = {"stage1": store.read_text(f"stages/{stage1}/manifest.json"),
                  "stage2_done": any(store.exists(f"stages/{s}/manifest.json")
                                     for s in store.listdir("stages") if s.startswith("01-sft-"))}
        second = start("machine-b")
        second_log = second.communicate(timeout=600)[0]
        yield store, before, first_log, second, second_log


def test_a_new_machine_resumes_the_killed_curriculum_from_s3(s3_runs):
    store, before, first_log, second, log = s3_runs
    assert not before["stage2_done"], first_log[-3000:]
    assert second.returncode == 0, log[-5000:]
    assert "stage 1/2 pretrain (pretrain): reused (unchanged since its last run)" in log
    assert "stage 2/2 sft (sft): resuming an interrupted attempt from its latest checkpoint" in log
    stage1 = next(s for s in store.listdir("stages") if s.startswith("00-pretrain-"))
    assert store.read_text(f"stages/{stage1}/manifest.json") == before["stage1"]  # not re-trained

    stage2 = next(s for s in store.listdir("stages") if s.startswith("01-sft-"))
    metrics = [json.loads(line) for line in store.read_text(f"stages/{stage2}/metrics.jsonl").splitlines()]
    startups = [m for m in metrics if m.get("event") == "startup"]
    assert startups[-1]["step"] - 1 >= SAVE  # the new attempt began after a checkpoint, not at step 0
    manifest = json.loads(store.read_text(f"stages/{stage2}/manifest.json"))
    assert manifest["resumed"] is True and manifest["summary"]["steps"] == STEPS
    report = store.read_text(f"runs/s3micro/{_latest(store)}/report.md")
    assert "resumed an interrupted attempt from its latest checkpoint" in report


def test_every_output_is_on_s3(s3_runs):
    store = s3_runs[0]
    for name in store.listdir("stages"):
        manifest = json.loads(store.read_text(f"stages/{name}/manifest.json"))
        assert store.exists(f"stages/{name}/model/model.safetensors")
        assert store.exists(f"stages/{name}/model/README.md")
        assert any(n.startswith("eval-") for n in store.listdir(f"stages/{name}"))
        kept = manifest["checkpoints"]["kept"]
        assert [k["step"] for k in kept][-2:] == [manifest["summary"]["steps"] - k for k in (SAVE if "sft" in name
                                                                                               else 5, 0)]
        assert all(store.exists(f"ray/{name}/{Path(k['path']).name}/trainer_state.json") for k in kept)
    run = f"runs/s3micro/{_latest(store)}"
    assert store.exists(f"{run}/report.md") and store.exists(f"{run}/results.json")
    assert store.exists(f"{run}/config.json") and store.listdir("blends") and store.listdir("base")
    assert "training on 2 worker(s)" in store.read_text(f"{run}/logs/driver.log")  # the run's full log went there too


def _latest(store: Storage) -> str:
    return store.read_text("runs/s3micro/LATEST").strip()


def test_a_sweep_on_s3_keeps_its_trials_reference_cache_and_report_in_the_bucket(tmp_path, micro_tokenizer):
    """jobs/sweep.py with storage.path on the S3 server, run from a scratch dir: every output
    of the sweep is in the bucket, and no local folder named `s3:` appears."""
    raw = yaml.safe_load((ROOT / "configs" / "micro.yaml").read_text())
    dpo = raw["stages"][3]  # from the micro base: the sweep's storage, not its parents, is under test
    dpo["trainer"].update(max_steps=3)
    dpo["scaling"] = {"num_workers": 1}
    # a from-scratch model without a pretrain stage needs a tokenizer
    raw.update(name="s3sweep", stages=[dpo], tokenizer={"path": str(micro_tokenizer)}, tracking={"wandb": {"enabled": False}},
               evaluation={"heldout_problems": 5, "max_new_tokens": 16, "batch_size": 5})
    (tmp_path / "curriculum.yaml").write_text(yaml.safe_dump(raw))
    sweep = {"name": "s3-beta", "curriculum": str(tmp_path / "curriculum.yaml"), "stage": "dpo",
             "space": {"beta": {"grid": [0.1, 0.5]}}}
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    work = tmp_path / "cwd"
    work.mkdir()
    with moto_s3() as endpoint:
        make_bucket(endpoint, "sweeps")
        uri = s3_uri(endpoint, "sweeps", "runs") + "&region=us-east-1"
        env = {**os.environ, **FAKE_AWS_ENV, "TINYREASON_CACHE": str(tmp_path / "mirror")}
        job = subprocess.run([sys.executable, str(ROOT / "jobs" / "sweep.py"), "--config", str(tmp_path / "sweep.yaml"),
                              "--set", f"storage.path={uri}"], cwd=work, env=env, capture_output=True, text=True,
                             timeout=900)
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
        store = Storage(uri)
        for name in ("report.md", "report.html", "trials.json", "best.yaml", "logs/driver.log"):
            assert store.exists(f"sweeps/s3-beta/{name}"), name
        trials = json.loads(store.read_text("sweeps/s3-beta/trials.json"))
        assert len(trials) == 2 and all(store.exists(f"{t['stage_dir']}/manifest.json") for t in trials)
        caches = store.listdir("ref-logps")
        assert len(caches) == 1 and store.exists(f"ref-logps/{caches[0]}/manifest.json")
    assert not list(work.rglob("s3:*")) and not list(tmp_path.glob("s3:*"))  # nothing written as a local path
