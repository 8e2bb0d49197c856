"""jobs/submit.py: the git state of a dirty tree travels with a `ray job submit` upload, and is
recorded, not refused. `ray` here is a stand-in on PATH that does what matters of Ray's upload:
it copies the working dir without `.git` (the e2e tier submits to a real cluster)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tinyreason.provenance import RECORD_PATH, resolve_git_state

ROOT = Path(__file__).resolve().parents[2]


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


FAKE_RAY = """\
#!{python}
# What `ray job submit --working-dir .` does with the files: upload them without .git.
import json, shutil, sys
from pathlib import Path
args = sys.argv[1:]
Path({calls!r}).write_text(json.dumps(args))
src = Path(args[args.index("--working-dir") + 1])
shutil.copytree(src, {upload!r}, ignore=shutil.ignore_patterns(".git"))
sys.exit(0)
"""


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    root = tmp_path / "checkout"
    (root / "platform" / "tinyreason").mkdir(parents=True)
    (root / "platform" / "tinyreason" / "__init__.py").write_text("WIDTH = 64\n")
    git(root, "-c", "init.defaultBranch=main", "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "first")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ray = bin_dir / "ray"
    ray.write_text(textwrap.dedent(FAKE_RAY.format(python=sys.executable, calls=str(tmp_path / "calls.json"),
                                                   upload=str(tmp_path / "upload"))))
    ray.chmod(0o755)
    return root, tmp_path


def submit(root: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{tmp / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run([sys.executable, str(ROOT / "jobs" / "submit.py"), *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)


def test_a_dirty_tree_is_recorded_not_refused(checkout):
    root, tmp = checkout
    (root / "platform" / "tinyreason" / "__init__.py").write_text("WIDTH = 128\n")  # uncommitted
    (root / "scratch.py").write_text("print('new')\n")  # untracked
    status_before = git(root, "status", "--porcelain")
    p = submit(root, tmp, "--address", "http://127.0.0.1:8265", "--", "python", "jobs/curriculum.py", "--set", "x=1")
    assert p.returncode == 0, p.stderr
    assert "DIRTY" in p.stderr and "recorded, not refused" in p.stderr
    assert json.loads((tmp / "calls.json").read_text()) == [
        "job", "submit", "--working-dir", ".", "--address", "http://127.0.0.1:8265", "--",
        "python", "jobs/curriculum.py", "--set", "x=1"]
    # the head node's view: the upload has the record and no .git
    upload = tmp / "upload"
    assert not (upload / ".git").exists() and (upload / RECORD_PATH).is_file()
    state = resolve_git_state(upload, package_dir=upload / "platform" / "tinyreason")
    assert state["source"] == "client record" and state["dirty"] is True
    assert state["commit"] == git(root, "rev-parse", "HEAD").strip() and state["branch"] == "main"
    assert "+WIDTH = 128" in state["diff"] and state["untracked"] == ["scratch.py"]
    assert state["changed_since_record"] == []  # the upload is the code the record describes
    record = json.loads((upload / RECORD_PATH).read_text())
    assert record["command"] == "python jobs/curriculum.py --set x=1"
    # the checkout is left as it was
    assert not (root / RECORD_PATH).exists() and not (root / RECORD_PATH.parent).exists()
    assert git(root, "status", "--porcelain") == status_before


def test_a_failed_submission_still_cleans_up_and_passes_its_exit_code(checkout):
    root, tmp = checkout
    (tmp / "bin" / "ray").write_text(f"#!{sys.executable}\nimport sys; sys.exit(3)\n")
    p = submit(root, tmp, "--", "python", "-c", "pass")
    assert p.returncode == 3 and "clean" in p.stderr
    assert not (root / RECORD_PATH).exists()


def test_the_entrypoint_must_follow_a_double_dash(checkout):
    root, tmp = checkout
    p = submit(root, tmp, "python", "jobs/curriculum.py")
    assert p.returncode != 0 and "usage: python jobs/submit.py [ray job submit options] -- <entrypoint>" in p.stderr
    assert not (tmp / "calls.json").exists()
