"""Provenance: git state in throwaway repos, the submit record's round trip, code fingerprints
on a throwaway package, and the machine description on this machine."""

import json
import os
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from tinyreason import machine, provenance
from tinyreason.imports import ImportGraphError
from tinyreason.machine import environment, numerics_versions, nvidia_gpus, ray_cluster_shape
from tinyreason.provenance import (
    RECORD_PATH,
    code_fingerprint,
    diff_fingerprints,
    git_state,
    read_client_record,
    resolve_git_state,
    write_client_record,
)

ROOT = Path(__file__).resolve().parents[2]
needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


@pytest.fixture(autouse=True)
def no_parent_repo(tmp_path, monkeypatch):
    # git must not find a checkout above tmp_path, whatever machine the tests run on.
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "repo"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "model.py").write_text("WIDTH = 64\n")
    (root / ".gitignore").write_text("/runs/\n")
    git(root, "-c", "init.defaultBranch=main", "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "first")
    return root


@needs_git
def test_clean_checkout(repo):
    state = git_state(repo)
    assert state["available"] and not state["dirty"]
    assert re.fullmatch(r"[0-9a-f]{40}", state["commit"]) and state["branch"] == "main"
    assert state["diff"] == "" and state["untracked"] == [] and state["notes"] == []
    assert git_state(repo / "pkg")["commit"] == state["commit"]  # a subdirectory describes the same checkout


@needs_git
def test_dirty_checkout_diff_and_untracked_files(repo):
    (repo / "pkg" / "model.py").write_text("WIDTH = 128\n")
    (repo / "pkg" / "new.py").write_text("x = 1\n")
    (repo / "runs").mkdir()
    (repo / "runs" / "log.txt").write_text("ignored\n")
    state = git_state(repo)
    assert state["dirty"]
    assert "-WIDTH = 64" in state["diff"] and "+WIDTH = 128" in state["diff"]
    assert state["untracked"] == ["pkg/new.py"]  # runs/ is .gitignore'd
    git(repo, "add", "pkg/model.py")
    assert "+WIDTH = 128" in git_state(repo)["diff"]  # staged changes count too


@needs_git
def test_an_untracked_file_alone_makes_the_tree_dirty(repo):
    (repo / "notes.py").write_text("")
    assert git_state(repo)["dirty"] and git_state(repo)["diff"] == ""


@needs_git
def test_a_secret_of_the_environment_in_the_uncommitted_diff_is_recorded_as_stars(repo, monkeypatch):
    """Found by the suite: a tracked file holding the value of WANDB_API_KEY, not yet committed,
    put the key into provenance.json and git.diff."""
    key = "0f3e9c1d2bfake7f3e9c1d2bfake"
    monkeypatch.setenv("WANDB_API_KEY", key)
    (repo / "pkg" / "model.py").write_text(f"WIDTH = 64\nKEY = '{key}'\n")
    state = git_state(repo)
    assert key not in state["diff"] and "+KEY = '***'" in state["diff"] and "+WIDTH" not in state["diff"]
    assert state["notes"] == ["the value of a secret in the environment (tracking.SECRET_ENV) was replaced "
                              "with *** in the diff"]
    monkeypatch.delenv("WANDB_API_KEY")
    assert key in git_state(repo)["diff"] and git_state(repo)["notes"] == []  # not a secret here


@needs_git
def test_a_huge_diff_is_cut_with_a_note(repo, monkeypatch):
    monkeypatch.setattr(provenance, "DIFF_CAP_BYTES", 200)
    (repo / "pkg" / "model.py").write_text("WIDTH = 128\n" * 100)
    state = git_state(repo)
    assert len(state["diff"].encode()) <= 200 and state["diff_bytes"] > 200
    assert state["notes"] == [f"diff cut at 200 of {state['diff_bytes']} bytes"]


@needs_git
def test_before_the_first_commit(tmp_path):
    git(tmp_path, "init", "-q")
    (tmp_path / "a.py").write_text("A = 1\n")
    git(tmp_path, "add", "a.py")
    state = git_state(tmp_path)
    assert state["available"] and state["commit"] is None and "+A = 1" in state["diff"]


@needs_git
def test_a_checkout_that_does_not_track_the_directory_is_not_its_state(repo):
    (repo / "runs" / "unpacked").mkdir(parents=True)  # inside the checkout, but ignored
    (repo / "runs" / "unpacked" / "a.py").write_text("")
    state = git_state(repo / "runs" / "unpacked")
    assert state["available"] is False and "no files tracked" in state["why"]


def test_not_a_checkout_and_no_git(tmp_path, monkeypatch):
    state = git_state(tmp_path)
    assert state["available"] is False and "not a git repository" in state["why"]
    assert "is not a directory" in git_state(tmp_path / "missing")["why"]
    monkeypatch.setenv("PATH", str(tmp_path))
    assert git_state(tmp_path) == {"available": False, "why": "git is not on PATH"}


@needs_git
def test_client_record_round_trip_and_the_head_node_view(repo, tmp_path):
    written = write_client_record(repo, package_dir=repo / "pkg", extra={"command": "jobs/curriculum.py"})
    assert written == repo / RECORD_PATH
    assert git_state(repo)["dirty"] is False  # the record itself never makes the tree dirty
    record = read_client_record(repo, package_dir=repo / "pkg")
    assert record["git"]["commit"] == git_state(repo)["commit"]
    assert record["hostname"] and record["written_at"] and record["command"] == "jobs/curriculum.py"
    assert record["changed_since_record"] == []
    # The head node: Ray uploads the working dir without .git.
    upload = tmp_path / "upload"
    shutil.copytree(repo, upload, ignore=shutil.ignore_patterns(".git"))
    state = resolve_git_state(upload, package_dir=upload / "pkg")
    assert state["source"] == "client record" and state["commit"] == record["git"]["commit"]
    (upload / "pkg" / "model.py").write_text("WIDTH = 1\n")  # an upload that is not what was recorded
    assert resolve_git_state(upload, package_dir=upload / "pkg")["changed_since_record"] == ["model.py changed"]
    assert resolve_git_state(repo)["source"] == "git"  # live git wins over a leftover record


def test_no_record_and_a_broken_record(tmp_path):
    assert read_client_record(tmp_path) is None
    assert "submitted without the wrapper" in resolve_git_state(tmp_path)["why"]
    write_client_record(tmp_path)  # submitted from a machine without a checkout
    assert "the submit record says: " in resolve_git_state(tmp_path)["why"]
    (tmp_path / RECORD_PATH).write_text("{not json")
    assert "re-submit" in read_client_record(tmp_path)["why"]


@needs_git
def test_the_record_travels_with_rays_working_dir_upload():
    # Ray's upload skips what .gitignore files and a .rayignore name (gitwildmatch, as git):
    # git check-ignore with the .rayignore as an extra exclude file asks both at once.
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    rayignore = ROOT / ".rayignore"
    extra = ["-c", f"core.excludesFile={rayignore}"] if rayignore.exists() else []
    # A file under an ignored directory counts as ignored here, as it does for Ray.
    done = subprocess.run(["git", *extra, "check-ignore", "--no-index", "-q", str(RECORD_PATH)], cwd=ROOT)
    assert done.returncode == 1, f"{RECORD_PATH} is ignored: Ray would not upload it"


def write_package(root: Path, files: dict[str, str]) -> Path:
    for rel, source in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(source))
    return root


@pytest.fixture
def package(tmp_path):
    return write_package(tmp_path / "demo", {
        "__init__.py": "",
        "train/__init__.py": "",
        "train/sft.py": "from demo.data.tokenize import tokenize\n",
        "data/__init__.py": "",
        "data/tokenize.py": "def tokenize(x):\n    return x\n",
        "report.py": "import json\n",
    })


def test_code_fingerprint_follows_imports(package):
    before = code_fingerprint(package, ["train.sft"], package="demo")
    assert sorted(before) == ["__init__.py", "data/__init__.py", "data/tokenize.py", "train/__init__.py", "train/sft.py"]
    assert code_fingerprint(package, ["demo.train.sft"], package="demo") == before
    assert code_fingerprint(package, ["train/sft.py"], package="demo") == before

    (package / "report.py").write_text("import csv\n")  # not imported by the stage
    assert code_fingerprint(package, ["train.sft"], package="demo") == before

    (package / "data" / "tokenize.py").write_text("def tokenize(x):\n    return x[::-1]\n")
    (package / "data" / "vocab.py").write_text("")
    (package / "train" / "sft.py").write_text("from demo.data.tokenize import tokenize\nfrom demo.data import vocab\n")
    after = code_fingerprint(package, ["train.sft"], package="demo")
    assert diff_fingerprints(before, after) == ["data/tokenize.py changed", "data/vocab.py added", "train/sft.py changed"]

    with pytest.raises(ImportGraphError, match="demo.train.sft"):
        code_fingerprint(package, ["train.stf"], package="demo")


def test_diff_phrasing():
    old = {"a.py": "1", "b.py": "2", "c.py": "3"}
    new = {"a.py": "1", "b.py": "9", "d.py": "4"}
    assert diff_fingerprints(old, new) == ["b.py changed", "c.py removed", "d.py added"]
    assert diff_fingerprints(old, old) == []


def test_environment_describes_this_machine():
    env = environment()
    assert set(env) == {"python", "os", "hostname", "cpu", "memory", "packages", "torch", "nvidia"}
    assert env["python"]["version"] and env["os"]["system"] and env["hostname"]
    assert env["cpu"]["count"] >= 1 and env["memory"]["total_bytes"] > 0
    assert any(p.startswith("torch==") for p in env["packages"])
    assert env["packages"] == sorted(env["packages"], key=str.lower)
    assert env["torch"]["version"] and isinstance(env["torch"]["cuda_available"], bool)
    json.dumps(env)  # the record is JSON as it stands
    versions = numerics_versions()
    assert {"torch", "transformers", "trl", "numpy"} <= set(versions)


def test_the_cpu_record_names_what_decides_its_kernels(tmp_path):
    """Same model name, same packages, different numbers: what tells two CPUs apart is in the
    record (the first processor's id and vector extensions, the cache sizes, ATen's kernels), and
    the report's machine line shows the kernels and the last-level cache."""
    from tinyreason.provenance_report import machine_line
    from tinyreason.run_provenance import machine_summary

    block = ("processor\t: {n}\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 143\n"
             "model name\t: Intel(R) Xeon(R) Processor\nstepping\t: 8\nflags\t\t: fpu sse2 avx2 avx512f amx_bf16\n\n")
    (tmp_path / "cpuinfo").write_text(block.format(n=0) + block.format(n=1).replace("stepping\t: 8", "stepping\t: 9"))
    for i, (level, kind, size) in enumerate([(1, "Data", "48K"), (1, "Instruction", "32K"), (2, "Unified", "2048K"),
                                             (3, "Unified", "107520K")]):
        d = tmp_path / "cache" / f"index{i}"
        d.mkdir(parents=True)
        for name, value in (("level", level), ("type", kind), ("size", size)):
            (d / name).write_text(f"{value}\n")
    cpu = machine.cpu(tmp_path / "cpuinfo", tmp_path / "cache")
    assert cpu["model"] == "Intel(R) Xeon(R) Processor"
    assert cpu["id"] == {"vendor_id": "GenuineIntel", "cpu_family": "6", "model": "143", "stepping": "8"}
    assert cpu["isa"] == ["avx2", "avx512f", "amx_bf16"]
    assert cpu["cache"] == {"L1d": "48K", "L1i": "32K", "L2": "2048K", "L3": "107520K"}
    env = {**environment(), "cpu": cpu}
    assert env["torch"]["cpu_capability"] in ("DEFAULT", "AVX2", "AVX512", "ZVECTOR", "NO AVX", "SVE256", "VSX")
    summary = machine_summary(env)
    assert (summary["cpu_id"], summary["cpu_cache"]) == (cpu["id"], cpu["cache"])
    assert summary["cpu_capability"] == env["torch"]["cpu_capability"]
    assert f"Processor (family 6 model 143, {env['torch']['cpu_capability']} kernels, L3 107520K), " in machine_line(env)
    assert machine.cpu_id_text({"CPU_implementer": "0x41", "CPU_part": "0xd0c"}) == "implementer 0x41 part 0xd0c"
    bare = machine.cpu(tmp_path / "missing", tmp_path / "missing")  # no /proc, no sysfs: nothing invented
    assert bare["id"] is None and bare["isa"] is None and bare["cache"] is None


def test_bench_records_name_the_cpu_not_only_its_model_name(bench_script):
    """Two "AMD EPYC" machines of this project, a Zen 4 and a Zen 1, differed 2x in speed and in
    float rounding: a benchmark's machine line tells them apart."""
    benchlib = bench_script("benchlib")
    zen1 = {"model": "AMD EPYC", "usable": 2, "id": {"vendor_id": "AuthenticAMD", "cpu_family": "23", "model": "1",
                                                     "stepping": "2"},
            "isa": ["avx2"], "cache": {"L1d": "32K", "L1i": "64K", "L2": "512K", "L3": "8192K"}}
    zen4 = {**zen1, "id": {**zen1["id"], "cpu_family": "25", "model": "17"}, "isa": ["avx2", "avx512f", "avx512_bf16"],
            "cache": {"L2": "1024K", "L3": "32768K"}}
    assert benchlib.cpu_line(zen1) == "2 cores of an AMD EPYC (family 23 model 1, avx2, L3 8192K), shared, no GPU"
    assert benchlib.cpu_line(zen4) == ("2 cores of an AMD EPYC (family 25 model 17, avx2/avx512f/avx512_bf16, "
                                       "L3 32768K), shared, no GPU")
    assert benchlib.cpu_line({"usable": 4}) == "4 cores of an unnamed CPU, shared, no GPU"  # nothing invented
    assert benchlib.MACHINE.startswith(f"{machine.cpu()['usable']} cores of an ")  # this machine's, read at import


def fake_tool(bin_dir: Path, name: str, script: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / name).write_text(f"#!/bin/sh\n{script}\n")
    (bin_dir / name).chmod(0o755)


def test_nvidia_smi_parsed_missing_and_hung(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    sleep = shutil.which("sleep")
    monkeypatch.setenv("PATH", str(bin_dir))
    assert nvidia_gpus() == {"available": False, "why": "nvidia-smi is not on PATH"}
    fake_tool(bin_dir, "nvidia-smi", "echo '550.54.15, NVIDIA H200, 143771 MiB'\necho '550.54.15, NVIDIA H200, 143771 MiB'")
    gpus = nvidia_gpus()
    assert gpus["driver"] == "550.54.15" and gpus["count"] == 2
    assert gpus["gpus"][0] == {"name": "NVIDIA H200", "memory": "143771 MiB"}
    fake_tool(bin_dir, "nvidia-smi", f"exec {sleep} 30")
    monkeypatch.setattr(machine, "COMMAND_TIMEOUT_S", 0.5)
    assert "took more than" in nvidia_gpus()["why"]


class FakeRay:
    """Stand-in for the two public calls, shaped as Ray 2.60 returns them."""

    def nodes(self):
        return [
            {"NodeID": "b", "Alive": True, "NodeManagerHostname": "gpu-1", "NodeManagerAddress": "10.0.0.2",
             "Resources": {"CPU": 16.0, "GPU": 1.0, "memory": 1.0e11, "accelerator_type:H200": 1.0}},
            {"NodeID": "a", "Alive": True, "NodeManagerHostname": "head", "NodeManagerAddress": "10.0.0.1",
             "Resources": {"CPU": 2.0, "memory": 8.0e9}},
            {"NodeID": "c", "Alive": False, "NodeManagerHostname": "gone", "Resources": {}},
        ]

    def cluster_resources(self):
        return {"CPU": 18.0, "GPU": 1.0, "memory": 1.08e11}


def test_ray_cluster_shape():
    shape = ray_cluster_shape(FakeRay())
    assert shape["nodes_alive"] == 2 and shape["nodes_dead"] == 1
    assert [n["hostname"] for n in shape["nodes"]] == ["gpu-1", "head"]
    assert shape["nodes"][0]["accelerators"] == ["H200"] and shape["nodes"][1]["gpus"] == 0
    assert shape["total"] == {"cpus": 18.0, "gpus": 1.0, "memory_bytes": 1.08e11}

    class NotStarted:
        def nodes(self):
            raise RuntimeError("Ray has not been started yet")

    assert ray_cluster_shape(NotStarted()) == {"available": False, "why": "RuntimeError: Ray has not been started yet"}
