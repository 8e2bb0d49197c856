"""`ray job submit` end to end on a private two-node Ray cluster (see conftest.py).

The head and a second node (its own `node2` resource) each offer 1 CPU, so a
stage's 2 Ray Train workers (1 CPU each) must spread over both nodes. The nodes'
PYTHONPATH carries a `tinyreason` that refuses to import, so the curriculum only
succeeds when the job ships the package to every worker itself.

The micro curriculum goes through jobs/submit.py, the way docs/cluster.md gives it: its run's
provenance.json on the head node carries this checkout's commit. Two probe jobs submitted from
a dirty throwaway checkout show a dirty tree recorded (not refused) through the wrapper, and
plain `ray job submit` recording why git is unknown.

Slow: 5 min 50 s measured on 2 shared cores (load 9-15): cluster start ~25 s,
the micro curriculum job ~4.5 min, probe, failing and stopped jobs ~10-15 s each,
teardown ~6 s. The curriculum job dominates; it is shorter on an idle machine.
"""

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tinyreason.provenance import git_state

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow

MICRO_ID = "tr-e2e-micro"
CKPT_STAGE = "pretrain"  # the stage whose Ray Train checkpoints are forced with save_steps
STAGES = ("pretrain", "sft")  # micro.yaml's first two stages


def submit(cluster, submission_id: str, *entrypoint: str, timeout: float):
    """`ray job submit --working-dir .` exactly as docs/cluster.md gives it; blocks, streams the logs.
    A job that outlives the timeout fails the test with the end of its own log, which says
    where it stopped (a hang at exit shows as a log that ends after the last print)."""
    try:
        return cluster.ray("job", "submit", "--address", cluster.dashboard_url, "--submission-id", submission_id,
                           "--working-dir", ".", "--", *entrypoint, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        logs = cluster.ray("job", "logs", "--address", cluster.dashboard_url, submission_id, check=False).stdout
        raise AssertionError(f"job {submission_id} still running after {timeout:.0f} s; its log ends:\n"
                             f"{logs[-4000:]}") from None


def job_info(cluster, submission_id: str) -> dict:
    jobs = cluster.list_state("jobs", f"submission_id={submission_id}")
    assert len(jobs) == 1, jobs
    return jobs[0]


def submit_recorded(cluster, submission_id: str, *entrypoint: str, cwd: Path = ROOT, timeout: float):
    """`python jobs/submit.py` (ray job submit + the checkout's git state), from `cwd`."""
    return subprocess.run([sys.executable, str(cwd / "jobs" / "submit.py"), "--address", cluster.dashboard_url,
                           "--submission-id", submission_id, "--", *entrypoint], cwd=cwd, env=cluster.env,
                          text=True, capture_output=True, timeout=timeout)


@pytest.fixture(scope="module")
def micro_job(two_node_cluster):
    c = two_node_cluster
    here = git_state(ROOT)  # what the record must say, read before the wrapper writes it
    # The two-node job is about placement, shared storage and provenance: two stages show a
    # stage starting from another's export on both nodes (the micro curriculum test runs every
    # kind and checks each stage's evaluation), and only the last is scored.
    p = submit_recorded(c, MICRO_ID, "python", "jobs/curriculum.py", "--config", "configs/micro.yaml",
                        "--stages", ",".join(STAGES), "--set", f"storage.path={c.storage}",
                        "--set", f"stages.{CKPT_STAGE}.trainer.save_steps=5",
                        "--set", "evaluation.after_each_stage=last", timeout=480)
    return c, p, here


def test_micro_curriculum_job_succeeds(micro_job):
    c, p, _ = micro_job
    assert p.returncode == 0, f"job failed:\n{p.stdout[-6000:]}\n{p.stderr[-3000:]}"
    info = job_info(c, MICRO_ID)
    assert info["status"] == "SUCCEEDED" and info["driver_exit_code"] == 0, info
    assert "not from the job" not in p.stdout  # the nodes' decoy package was never imported
    assert "Found multiple active Ray instances" not in p.stdout  # workers know their cluster (RAY_ADDRESS)
    assert "succeeded" in c.ray("job", "status", "--address", c.dashboard_url, MICRO_ID).stdout.lower()


def test_every_stage_trained_on_both_nodes(micro_job):
    c, _, _ = micro_job
    nodes = {n["node_id"]: n["resources_total"] for n in c.list_state("nodes")}
    head = next(i for i, r in nodes.items() if "head" in r)
    node2 = next(i for i, r in nodes.items() if "node2" in r)
    job_id = job_info(c, MICRO_ID)["job_id"]
    workers = [a for a in c.list_state("actors", "class_name=RayTrainWorker") if a["job_id"] == job_id]
    by_group: dict[str, set] = {}
    for a in workers:  # one placement group per stage's worker group
        by_group.setdefault(a["placement_group_id"], set()).add(a["node_id"])
    assert len(by_group) >= len(STAGES), workers
    for group, where in by_group.items():
        assert where == {head, node2}, f"worker group {group} ran on {where}, expected both nodes"


def test_outputs_and_checkpoints_are_complete_on_shared_storage(micro_job):
    c, _, _ = micro_job
    stages = sorted(d.name for d in (c.storage / "stages").iterdir() if d.is_dir())
    assert [re.sub(r"-[0-9a-f]{12}$", "", s) for s in stages] == [f"{i:02d}-{n}" for i, n in enumerate(STAGES)]
    for name in stages:
        d = c.storage / "stages" / name
        manifest = json.loads((d / "manifest.json").read_text())
        loss = manifest["summary"]["loss_last"]
        assert math.isfinite(loss) and loss > 0, manifest["summary"]
        assert (d / "model" / "model.safetensors").stat().st_size > 0
        assert (d / "metrics.jsonl").read_text().strip()
    runs = c.storage / "runs" / "micro"
    assert (runs / (runs / "LATEST").read_text().strip() / "report.md").exists()

    pretrain = next(s for s in stages if s.startswith("00-"))
    ckpts = sorted(d for d in (c.storage / "ray" / pretrain).glob("checkpoint_*") if d.is_dir())
    assert ckpts, f"no Ray Train checkpoint under {c.storage / 'ray' / pretrain}"
    state = json.loads((ckpts[-1] / "trainer_state.json").read_text())
    assert state["global_step"] > 0 and (state["global_step"] % 5 == 0 or state["global_step"] == state["max_steps"])
    assert list(ckpts[-1].glob("global_step*/*optim_states.pt")), "DeepSpeed optimizer shards missing"


def test_the_run_on_the_head_node_knows_the_submitted_commit(micro_job):
    c, _, here = micro_job
    runs = c.storage / "runs" / "micro"
    record = json.loads((runs / (runs / "LATEST").read_text().strip() / "provenance.json").read_text())
    git = record["git"]
    if not here["available"]:
        assert git["available"] is False and "submit record says" in git["why"], git
        return
    assert git["source"] == "client record", git  # the head node's upload has no .git
    assert git["commit"] == here["commit"] and git["dirty"] == here["dirty"] and git["recorded_on"]
    assert record["submit"]["command"].startswith("python jobs/curriculum.py --config configs/micro.yaml")
    assert record["ray"]["nodes_alive"] == 2 and record["worker"]["packages"]
    assert not (ROOT / ".tinyreason" / "submit.json").exists()  # the checkout is left as it was


GIT_PROBE = """
import json, sys; sys.path.insert(0, "platform")
from tinyreason.provenance import resolve_git_state
print("STATE", json.dumps(resolve_git_state(".", package_dir="platform/tinyreason")))
"""


@pytest.fixture(scope="module")
def dirty_checkout(tmp_path_factory):
    """A throwaway checkout of this code, committed, then changed and not committed."""
    root = tmp_path_factory.mktemp("dirty")
    for name in filter(None, subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                                            capture_output=True, text=True, check=True).stdout.split("\0")):
        if (ROOT / name).is_file() and not name.startswith(("tests/", "bench/")):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, root / name)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@e"}
    for args in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "snapshot"]):
        subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True)
    with open(root / "README.md", "a") as f:
        f.write("an uncommitted line\n")
    return root


def _state(p) -> dict:
    assert p.returncode == 0, f"{p.stdout[-3000:]}\n{p.stderr[-2000:]}"
    return json.loads(re.search(r"STATE (.+)", p.stdout).group(1))


def test_a_dirty_tree_is_recorded_not_refused(two_node_cluster, dirty_checkout):
    p = submit_recorded(two_node_cluster, "tr-e2e-dirty", "python", "-c", GIT_PROBE, cwd=dirty_checkout,
                        timeout=180)
    state = _state(p)
    assert state["source"] == "client record" and state["dirty"] is True, state
    assert "+an uncommitted line" in state["diff"] and state["changed_since_record"] == []
    assert "DIRTY" in p.stderr and not (dirty_checkout / ".tinyreason").exists()


def test_plain_ray_job_submit_records_why_git_is_unknown(two_node_cluster, dirty_checkout):
    c = two_node_cluster
    p = subprocess.run([str(Path(sys.executable).parent / "ray"), "job", "submit", "--address", c.dashboard_url,
                        "--submission-id", "tr-e2e-plain", "--working-dir", ".", "--", "python", "-c", GIT_PROBE],
                       cwd=dirty_checkout, env=c.env, text=True, capture_output=True, timeout=180)
    state = _state(p)
    assert state["available"] is False and "submitted without the wrapper" in state["why"], state


PROBE = """
import sys; sys.path.insert(0, "platform")
import ray
from tinyreason.runtime import init_ray

@ray.remote(num_cpus=0, resources={"node2": 1})
def where():
    import tinyreason
    return tinyreason.__file__ + " " + ray.get_runtime_context().get_node_id()

ray.init(address="auto")  # the job's runtime env only: working_dir, no package
try:
    print("PLAIN", ray.get(where.remote()))
except Exception as e:
    print("PLAIN failed:", "not from the job" in str(e))
ray.shutdown()
init_ray()
print("SHIPPED", ray.get(where.remote()))
"""


def test_package_ships_to_the_second_node(two_node_cluster):
    """init_ray ships platform/tinyreason as a py_module; without it node2 finds only the decoy."""
    c = two_node_cluster
    p = submit(c, "tr-e2e-probe", "python", "-c", PROBE, timeout=180)
    assert p.returncode == 0, f"{p.stdout[-4000:]}\n{p.stderr[-2000:]}"
    assert "PLAIN failed: True" in p.stdout, p.stdout[-3000:]
    path, node = re.search(r"SHIPPED (\S+) (\S+)", p.stdout).groups()
    node2 = next(n["node_id"] for n in c.list_state("nodes") if "node2" in n["resources_total"])
    assert node == node2
    assert path.startswith(str(c.root / "node2")) and "py_modules_files" in path, path
    assert not path.startswith(str(ROOT))


def test_bad_config_job_fails_with_one_clear_line(two_node_cluster):
    c = two_node_cluster
    sid = "tr-e2e-bad-config"
    p = submit(c, sid, "python", "jobs/curriculum.py", "--config", "configs/micro.yaml",
               "--set", f"storage.path={c.storage}-bad", "--set", "stages.dpo.trainer.learning_rate=-1", timeout=180)
    assert p.returncode != 0
    info = job_info(c, sid)
    assert info["status"] == "FAILED" and info["driver_exit_code"] == 1, info
    logs = c.ray("job", "logs", "--address", c.dashboard_url, sid).stdout
    errors = [line for line in logs.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "stages.3.trainer.learning_rate" in errors[0] and "-1" in errors[0], logs
    assert "Traceback" not in logs
    assert not (c.storage.parent / "storage-bad").exists()  # validated before any work


def test_a_running_job_can_be_stopped(two_node_cluster):
    c = two_node_cluster
    sid = "tr-e2e-stop"
    c.ray("job", "submit", "--address", c.dashboard_url, "--submission-id", sid, "--no-wait", "--working-dir", ".",
          "--", "python", "-c", "import time; time.sleep(300)", timeout=120)
    c.ray("job", "stop", "--address", c.dashboard_url, sid, timeout=120)  # waits until the job has exited
    assert job_info(c, sid)["status"] == "STOPPED"


@pytest.mark.parametrize("address, message", [
    ("127.0.0.1:{free}", "cannot reach the Ray cluster at RAY_ADDRESS=127.0.0.1:"),  # ~10 s of retries
    ("http://127.0.0.1:{free}", "is a dashboard / job-submission address"),
])
def test_driver_fails_in_one_line_when_the_cluster_is_not_there(address, message):
    """ray.init would retry an unreachable GCS for ever (still waiting after 5 min)."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "RAY_ADDRESS": address.format(free=port)}
    env.pop("RAY_JOB_CONFIG_JSON_ENV_VAR", None)
    p = subprocess.run([sys.executable, "jobs/curriculum.py", "--config", "configs/micro.yaml",
                        "--set", "storage.path=/nonexistent/never-written"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=90)
    assert p.returncode == 1
    errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], p.stderr[-2000:]
