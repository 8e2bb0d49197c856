"""Reproducible by construction, on a real local Ray:

- the micro curriculum run twice with different `--set` values leaves two run records, each
  with its config, git commit and dirty diff, pip freezes, versions and hardware, and a report
  footer that shows them;
- a changed library version, and separately a changed stage module, re-trains the stages it
  touches and the report names the change; with reuse_stale the old stages are kept, marked;
- seed 0 twice gives the same losses and held-out numbers, seed 1 different ones.

Slow: the two micro jobs reuse the stages of the session's micro job (tests/conftest.py:
`micro_job`, which they wait for; the same code, so the same keys; ~1 min each). The others
train 1- and 2-stage slices of micro.yaml on 1 worker with a few steps (~5 min together on 2 cores).
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tinyreason.config.loading import load_config
from tinyreason.context import RunContext
from tinyreason.curriculum import run_curriculum
from tinyreason.lineage import TrainedBy
from tinyreason.report import write_report

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


# --------------------------------------------------------------------------- two runs, two records


@pytest.fixture(scope="module")
def dirty_checkout(tmp_path_factory):
    """This checkout's files (as they are now, uncommitted work included) committed into a
    throwaway repo, then changed: a tree with a known commit and a known dirty diff. The
    package is the same code, so its stages have the same keys as this checkout's."""
    root = tmp_path_factory.mktemp("checkout")
    files = git(ROOT, "ls-files", "-co", "--exclude-standard", "-z").split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, root / name)
    git(root, "-c", "init.defaultBranch=main", "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "snapshot")
    with open(root / "configs" / "micro.yaml", "a") as f:
        f.write("# an uncommitted note\n")
    (root / "scratch.txt").write_text("untracked\n")
    return root


@pytest.fixture(scope="module")
def two_runs(dirty_checkout, micro_storage, micro_job):
    runs = []  # after the micro job (tests/conftest.py): its stages, reused
    for project in ("repro-a", "repro-b"):
        args = [sys.executable, "jobs/curriculum.py", "--config", "configs/micro.yaml", "--set",
                f"storage.path={micro_storage}", "--set", "tracking.wandb.mode=offline",
                "--set", f"tracking.wandb.project={project}"]
        job = subprocess.run(args, cwd=dirty_checkout, capture_output=True, text=True, timeout=900,
                             env={**os.environ, "GIT_CEILING_DIRECTORIES": str(dirty_checkout.parent)})
        assert job.returncode == 0, job.stdout[-4000:] + job.stderr[-4000:]
        home = micro_storage / "runs" / "micro"
        runs.append(home / (home / "LATEST").read_text().strip())
    return runs


def test_each_run_has_its_own_record_with_its_provenance(two_runs, dirty_checkout):
    first, second = two_runs
    assert first != second and first.parent == second.parent
    assert os.readlink(first.parent / "latest") == second.name
    commit = git(dirty_checkout, "rev-parse", "HEAD").strip()
    for run, project in zip(two_runs, ("repro-a", "repro-b")):
        assert json.loads((run / "config.json").read_text())["tracking"]["wandb"]["project"] == project
        record = json.loads((run / "provenance.json").read_text())
        assert record["run_id"] == run.name and record["status"] == "finished" and record["ended_at"]
        assert record["git"]["source"] == "git" and record["git"]["commit"] == commit and record["git"]["dirty"]
        assert record["git"]["untracked"] == ["scratch.txt"]
        assert "+# an uncommitted note" in (run / "git.diff").read_text()
        for who in ("driver", "worker"):
            freeze = (run / f"requirements-{who}.txt").read_text().splitlines()
            assert any(p.startswith("torch==") for p in freeze) and any(p.startswith("trl==") for p in freeze)
            assert record[who]["python"]["version"] and record[who]["cpu"]["count"] >= 1
            assert record[who]["torch"]["version"]
        assert record["worker"]["node_id"] and record["ray"]["nodes_alive"] == 1 and record["ray"]["total"]["cpus"]
        assert {"torch", "transformers", "trl", "deepspeed", "tokenizers"} <= set(record["numerics"])
        report = (run / "report.md").read_text()
        footer = report[report.index("## Provenance"):]
        for fragment in (f"commit {commit[:12]} (main), DIRTY", "scratch.txt", "git.diff", "requirements-driver.txt",
                         "requirements-worker.txt: the same", f"trl {record['numerics']['trl']}", "0 (seed)",
                         record["driver"]["hostname"], "1 node(s) alive"):
            assert fragment in footer, (fragment, footer)


def test_every_stage_manifest_says_what_trained_it(two_runs, micro_storage):
    record = json.loads((two_runs[1] / "provenance.json").read_text())
    stages = sorted((micro_storage / "stages").glob("0?-*/manifest.json"))
    trained = [json.loads(p.read_text()) for p in stages]
    trained = [m for m in trained if (m.get("provenance") or {}).get("trained_by", {}).get("versions")
               == record["numerics"]]
    assert {m["kind"] for m in trained} >= {"pretrain", "sft", "reasoning_sft", "dpo", "grpo"}
    for m in trained:
        p = m["provenance"]
        assert p["seed"] == {"seed": 0, "from": "seed"} and m["config"]["trainer"]["seed"] == 0
        assert f"train/{m['kind']}.py" in p["trained_by"]["code"]
        assert p["worker"]["torch"] and p["worker"]["packages"] > 50 and p["content_key"]


# --------------------------------------------------------------------------- slices of micro.yaml


def slice_config(tmp_path: Path, name: str, kinds: tuple[str, ...], storage: Path, *sets: str, **top):
    """micro.yaml's stages of these kinds on 1 worker for a few steps, evaluation cut down."""
    raw = yaml.safe_load((ROOT / "configs" / "micro.yaml").read_text())
    stages = [s for s in raw["stages"] if s["kind"] in kinds]
    for s in stages:
        s["scaling"] = {"num_workers": 1}
        s["trainer"].update(max_steps=6, logging_steps=1)
        s["data"].pop("tokens_per_step", None)
        s["data"].pop("tokenize_in_driver_max_rows", None)
    raw.update({"name": name, "stages": stages, "evaluation": {"heldout_problems": 8, "max_new_tokens": 16,
                                                               "batch_size": 8, "benchmarks": {"tasks": []}}, **top})
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_config(path, [f"storage.path={storage}", "tracking.wandb.mode=disabled", *sets])


def losses(outcome) -> list[float]:
    return [m["loss"] for m in outcome.metrics if "loss" in m]


def heldout(outcome) -> dict:
    ev = outcome.evaluation or {}
    return {"accuracy": ev.get("accuracy"), "outputs": [s["output"] for s in ev.get("samples", [])],
            "perplexity": (ev.get("pretrain") or {}).get("perplexity")}


def test_one_seed_means_a_run(ray_local, tmp_path, micro_tokenizer):
    """One stage (sft from a fixed tokenizer) is enough: the seed reaches the weights' init,
    the data order and NEFTune's noise, each of which moves the losses and the outputs."""
    runs = [run_curriculum(slice_config(tmp_path, "seeds", ("sft",), tmp_path / store, f"seed={seed}",
                                        tokenizer={"path": str(micro_tokenizer)}))
            for seed, store in ((0, "a"), (0, "b"), (1, "a"))]
    first, again, other = runs
    assert not any(o.cached for r in runs for o in r.stages)  # three real trainings
    for a, b, c in zip(first.stages, again.stages, other.stages):
        assert losses(a) and losses(a) == losses(b), a.stage.name
        assert heldout(a) == heldout(b) and heldout(a)["outputs"], a.stage.name
        assert losses(a) != losses(c), a.stage.name
        assert c.manifest["provenance"]["seed"] == {"seed": 1, "from": "seed"}
        assert a.manifest["config"]["trainer"]["seed"] == 0 and c.manifest["config"]["trainer"]["seed"] == 1
    assert heldout(first.stages[-1])["outputs"] != heldout(other.stages[-1])["outputs"]


def test_a_library_upgrade_or_a_module_edit_retrains_what_it_touches(ray_local, tmp_path, micro_tokenizer):
    cfg = slice_config(tmp_path, "stale", ("sft", "reasoning_sft"), tmp_path / "store",
                       evaluation={"after_each_stage": False}, tokenizer={"path": str(micro_tokenizer)})
    now = TrainedBy()
    trl = now.versions["trl"]
    upgraded = TrainedBy(versions={**now.versions, "trl": "1.17.0"})
    package = tmp_path / "tinyreason"
    shutil.copytree(now.package_dir, package, ignore=shutil.ignore_patterns("__pycache__"))
    module = package / "train" / "reasoning_sft.py"
    module.write_text(module.read_text() + "# a fix to the reasoning stage\n")
    edited = TrainedBy(package_dir=package, versions=upgraded.versions)
    reuse = cfg.model_copy(update={"reuse_stale": True})

    def run(config, trained_by):
        result = run_curriculum(config, ctx=RunContext(config, RunContext.of(config).store, trained_by=trained_by))
        return result, write_report(result).read_text()

    base, _ = run(cfg, now)
    assert [o.cached for o in base.stages] == [False, False]

    kept, report = run(reuse, upgraded)  # the upgrade, knowingly kept
    assert [o.cached for o in kept.stages] == [True, True]
    assert [o.dir for o in kept.stages] == [o.dir for o in base.stages]
    assert all(o.stale == [f"trl {trl} -> 1.17.0"] for o in kept.stages)
    assert f"stale, reused (reuse_stale): since it trained, trl {trl} -> 1.17.0" in report
    assert re.search(r"\|\s*sft\s*\|\s*stale \(reused\)\s*\|", report) and "**reasoning** is stale" in report

    retrained, report = run(cfg, upgraded)  # the upgrade: both stages train again, and say why
    assert [o.cached for o in retrained.stages] == [False, False]
    assert f"- **sft**: what trains it changed (trl {trl} -> 1.17.0)" in report
    assert retrained.stages[1].reason == f"its parent sft changed and what trains it changed (trl {trl} -> 1.17.0)"
    assert f"- **reasoning**: {retrained.stages[1].reason}" in report

    kept, report = run(reuse, edited)  # reasoning_sft.py edited, kept knowingly; sft untouched
    assert [o.cached for o in kept.stages] == [True, True] and kept.stages[0].stale == []
    assert kept.stages[1].stale == ["train/reasoning_sft.py changed"]
    assert "since it trained, train/reasoning_sft.py changed" in report

    fixed, report = run(cfg, edited)  # the edit: only the stage that runs the module trains again
    assert [o.cached for o in fixed.stages] == [True, False]
    assert "- **reasoning**: what trains it changed (train/reasoning_sft.py changed)" in report
    manifest = fixed.stages[1].manifest["provenance"]
    assert manifest["trained_by"]["code"]["train/reasoning_sft.py"] == edited.code("reasoning_sft")[
        "train/reasoning_sft.py"]
