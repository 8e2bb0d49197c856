"""`make demo` as a new user runs it: a fresh clone of this checkout's HEAD, set-up included.

Each run clones HEAD into a new temp dir and runs `make demo` there with uv's and pip's download
caches empty (UV_CACHE_DIR, PIP_CACHE_DIR in the temp dir), timing the command end to end and
its set-up (until `make setup`'s stamp file appears). The scores are read from the run's own
results.json, nothing re-computed. Issue 17's target: under 15 minutes. Writes
bench/results/demo_fresh_clone.json. `--keep DIR` copies each run's record (results.json,
config.json, provenance.json, report, logs; no models) to DIR/run<i> before the clone is removed,
so that `bench/demo_seeds.py` can count the fresh clone's run as seed 0's.

    .venv/bin/python bench/demo_fresh_clone.py              # 1 run (~14 min)
    .venv/bin/python bench/demo_fresh_clone.py --runs 2
    .venv/bin/python bench/demo_fresh_clone.py --keep /tmp/demo/fresh   # then demo_seeds.py /tmp/demo/fresh/run0 ...
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as B  # noqa: E402
from tinyreason.outputs import Outputs  # noqa: E402
from tinyreason.storage import Storage  # noqa: E402

OUT = B.RESULTS / "demo_fresh_clone.json"
TARGET_S = 15 * 60


def one_run(keep: Path | None = None) -> dict:
    with B.fresh_clone("bench-demo-") as (clone, env):
        start = time.perf_counter()
        proc = subprocess.Popen(["make", "demo"], cwd=clone, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        setup_s = None
        for _ in proc.stdout:  # the set-up is done once its stamp file exists
            if setup_s is None and list((clone / ".venv").glob(".installed-*")):
                setup_s = time.perf_counter() - start
        rc = proc.wait()
        wall = time.perf_counter() - start
        if rc != 0:
            raise SystemExit(f"make demo failed with exit code {rc}; its logs are under {clone}/runs")
        record = Outputs(Storage(clone / "runs")).latest_run("default").path  # the clone's storage.path: runs
        results = json.loads((record / "results.json").read_text())
        if keep is not None:
            shutil.copytree(record, keep)
        stages = {s["stage"]: {"train_seconds": round(s["train_seconds"], 1),
                               **{k: s[k] for k in ("heldout_accuracy", "new_templates_accuracy", "well_formed_think")}}
                  for s in results["stages"]}
        return {"wall_s": round(wall, 1), "setup_s": None if setup_s is None else round(setup_s, 1), "stages": stages}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--keep", type=Path, help="copy each run's record to KEEP/run<i> (for bench/demo_seeds.py)")
    a = p.parse_args()
    if a.keep is not None and a.keep.exists():
        raise SystemExit(f"--keep {a.keep} exists; give a new directory")
    runs = []
    for i in range(a.runs):
        runs.append(one_run(None if a.keep is None else a.keep / f"run{i}"))
        B.log(f"run {i}: {runs[-1]['wall_s']} s (set-up {runs[-1]['setup_s']} s)")
    walls = [r["wall_s"] for r in runs]
    result = {"name": "demo_fresh_clone", "date": B.DATE, "machine": B.MACHINE, "head": B.git("rev-parse", "--short", "HEAD"),
              "command": f"python bench/demo_fresh_clone.py --runs {a.runs}",
              "target_s": TARGET_S, "median_wall_s": round(statistics.median(walls), 1),
              "range_wall_s": [min(walls), max(walls)], "met": max(walls) < TARGET_S, "runs": runs}
    B.write_result(result, OUT)


if __name__ == "__main__":
    main()
