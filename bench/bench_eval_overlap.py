"""What running a model's evaluation parts side by side saves: the demo's six evaluations, one
part after another (a checkout of the commit before, evaluation.py's old loop) against the parts
submitted together (this checkout), alternating, on the same storage and trained stages.

    git worktree add /tmp/old_eval 8506172
    python bench/bench_eval_overlap.py --storage /tmp/demo/s0 --baseline /tmp/old_eval --rounds 2

Every stage is cached in the storage (train it once with `python jobs/curriculum.py --set
storage.path=...`), so a run only evaluates: each round sets evaluation.heldout_problems to a
number not used before (--first-heldout, then one less each run), which gives the evaluations a new cache key and leaves
every stage's training key alone. The seconds of each evaluation are the console's own
timestamps: from the line before it (the stage's "reused" line, or "base model") to its
"evaluated" line. Writes bench/results/eval_overlap.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from datetime import date, datetime
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "eval_overlap.json"
LINE = re.compile(r"^\[(\d\d:\d\d:\d\d)\] (.*)$")


def eval_seconds(console: str) -> dict[str, float]:
    """Per model, the seconds from the console line before its "evaluated" line to that line."""
    out, last = {}, None
    for line in console.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        t = datetime.strptime(m[1], "%H:%M:%S")
        if ": evaluated:" in m[2] and last is not None:
            name = m[2].split(": evaluated:")[0]
            name = name.split(" (")[0].split(" ", 2)[-1] if name.startswith("stage ") else name
            out[name] = (t - last).total_seconds() % 86400
        last = t
    return out


def run(checkout: Path, storage: str, heldout: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(checkout / "platform")}  # the driver imports that checkout's package
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "jobs/curriculum.py", "--set", f"storage.path={storage}",
                           "--set", f"evaluation.heldout_problems={heldout}"], cwd=checkout, env=env,
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode:
        raise SystemExit(f"{checkout}: the curriculum failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    if "trained because" in proc.stdout:
        raise SystemExit(f"{checkout}: a stage trained, so this run measures more than evaluation; train every "
                         f"stage into {storage} with that checkout first")
    per_model = eval_seconds(proc.stdout)
    return {"heldout_problems": heldout, "wall_s": round(time.perf_counter() - start, 1),
            "eval_s": per_model, "eval_total_s": sum(per_model.values()), "loadavg_1m": os.getloadavg()[0]}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--storage", required=True, help="a storage whose stages are all trained (cached)")
    ap.add_argument("--baseline", type=Path, required=True, help="a checkout whose evaluation runs parts in turn")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--first-heldout", type=int, default=197,
                    help="heldout_problems of the first run, counting down; pick numbers this storage has not seen")
    args = ap.parse_args(argv)
    runs: dict[str, list] = {"sequential": [], "overlapped": []}
    heldout = args.first_heldout
    for _ in range(args.rounds):
        for side, checkout in (("sequential", args.baseline), ("overlapped", ROOT)):
            runs[side].append(run(checkout, args.storage, heldout))
            heldout -= 1
    base = median(r["eval_total_s"] for r in runs["sequential"])
    new = median(r["eval_total_s"] for r in runs["overlapped"])
    result = {"name": "eval_overlap", "command": "python bench/bench_eval_overlap.py " + " ".join(argv or sys.argv[1:]),
              "date": str(date.today()), "machine": f"{platform.machine()}, 2 cores, CPU, no GPU",
              "metrics": {"eval_total_s": new}, "baseline": {"name": "evaluation parts one after another",
                                                             "metrics": {"eval_total_s": base}},
              "ratios": {"eval_time_overlapped_vs_sequential": round(new / base, 3)},
              "targets": {},  # none set: the figure says what overlapping buys on 2 cores
              "runs": runs}
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({"sequential_s": base, "overlapped_s": new, "ratio": result["ratios"]}, indent=1))


if __name__ == "__main__":
    main()
