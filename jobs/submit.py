"""`ray job submit --working-dir .` with the code's git state recorded for the run.

    python jobs/submit.py -- python jobs/curriculum.py --config configs/trlm-135m.yaml
    python jobs/submit.py --address http://127.0.0.1:8265 --no-wait -- python jobs/curriculum.py

Ray uploads the working dir without `.git`, so the driver on the head node cannot ask git
which code it runs. This asks git here (commit, branch, dirty flag, the diff and untracked
files), writes `.tinyreason/submit.json` into the working dir, and runs `ray job submit`
with every option given before `--` (and `--working-dir .` unless one is given); the driver
reads the record back (provenance.resolve_git_state) into the run's provenance.json. A dirty
tree is recorded, never refused. The record is deleted once Ray has uploaded it, leaving
the checkout as it was. Plain `ray job submit` still works: its run records why its git
state is unknown.
"""

import json
import logging
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))  # this checkout's code

from tinyreason.provenance import RECORD_PATH, write_client_record  # noqa: E402

log = logging.getLogger("tinyreason.submit")


def split(argv: list[str]) -> tuple[list[str], list[str]]:
    """(options for `ray job submit`, the entrypoint), with `--working-dir .` unless given."""
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        raise SystemExit("usage: python jobs/submit.py [ray job submit options] -- <entrypoint>, e.g.\n"
                         "  python jobs/submit.py -- python jobs/curriculum.py --config configs/micro.yaml")
    cut = argv.index("--")
    options, entrypoint = argv[:cut], argv[cut + 1:]
    if not any(o == "--working-dir" or o.startswith("--working-dir=") for o in options):
        options = ["--working-dir", ".", *options]
    return options, entrypoint


def working_dir(options: list[str]) -> Path:
    for i, o in enumerate(options):
        if o.startswith("--working-dir="):
            return Path(o.split("=", 1)[1])
        if o == "--working-dir" and i + 1 < len(options):
            return Path(options[i + 1])
    return Path(".")


def ray_cli() -> str:
    """`ray` on PATH, else the one beside this interpreter (a venv's, not activated)."""
    beside = Path(sys.executable).parent / "ray"
    return shutil.which("ray") or (str(beside) if beside.exists() else "ray")


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    options, entrypoint = split(list(sys.argv[1:] if argv is None else argv))
    root = working_dir(options).resolve()
    package = root / "platform" / "tinyreason"
    record = write_client_record(root, package_dir=package if package.is_dir() else None,
                                 extra={"command": shlex.join(entrypoint)})
    git = json.loads(record.read_text())["git"]
    if git.get("available"):
        dirty = f"DIRTY ({len(git.get('untracked', []))} untracked file(s), diff of {git.get('diff_bytes', 0)} " \
                "bytes: recorded, not refused)" if git.get("dirty") else "clean"
        log.info("code: commit %s on %s, %s", str(git.get("commit"))[:12], git.get("branch"), dirty)
    else:
        log.warning("git state unknown here (%s): the run will record that", git.get("why"))
    try:
        return subprocess.call([ray_cli(), "job", "submit", *options, "--", *entrypoint])
    finally:
        record.unlink(missing_ok=True)  # uploaded (or failed): the checkout stays as it was
        if record.parent.name == RECORD_PATH.parent.name and not any(record.parent.iterdir()):
            record.parent.rmdir()


if __name__ == "__main__":
    sys.exit(main())
