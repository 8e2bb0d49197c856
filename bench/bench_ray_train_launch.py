"""What a stage's Ray Train launch costs before its training function does anything: no-op
`TorchTrainer` fits on a local Ray started by the platform (runtime.init_ray: no dashboard, so
no state API), Ray Train's own TorchTrainer against the platform's (train/compat.torch_trainer,
which leaves out the placement-group cleaner there), fit by fit in turn on the same Ray, so that
this machine's drift in speed (a third between runs) falls on both sides alike.

    .venv/bin/python bench/bench_ray_train_launch.py                # 3 processes x 6 pairs (~7 min)
    .venv/bin/python bench/bench_ray_train_launch.py --rounds 1     # one process

A fit is timed from TorchTrainer(...) to fit() returning, one worker of one CPU, a training
function that only imports torch (the stages' own import of TRL and DeepSpeed is not the
launch's cost). Each process starts its own Ray and first runs one fit of each side, left out of
the figures: it also starts the pool's first worker processes. Writes
bench/results/ray_train_launch.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "platform"))
OUT = ROOT / "bench" / "results" / "ray_train_launch.json"
SIDES = {"ray_train": "Ray Train's TorchTrainer, placement-group cleaner included",
         "platform": "train/compat.torch_trainer(): no cleaner where the state API is not served"}


def _noop(config):
    import torch  # noqa: F401


def fits(n: int) -> dict[str, list[float]]:
    """`n` no-op fits of each side in this process's own local Ray, in turn; seconds each."""
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")  # as the test session sets it
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from tinyreason.runtime import init_ray
    from tinyreason.train import compat

    init_ray()
    trainers = {"ray_train": TorchTrainer, "platform": compat.torch_trainer()}
    assert trainers["platform"] is not TorchTrainer, "this Ray serves the state API: nothing to compare"
    storage, times = tempfile.mkdtemp(prefix="launch-"), {side: [] for side in SIDES}
    for i in range(n + 1):
        for side in (SIDES if i % 2 else reversed(SIDES)):  # ABBA: neither side always goes first
            start = time.perf_counter()
            trainers[side](_noop, scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 1}),
                           run_config=RunConfig(name=f"noop-{side}-{i}", storage_path=storage)).fit()
            times[side].append(round(time.perf_counter() - start, 2))
    return times


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="processes, each with its own Ray")
    ap.add_argument("--fits", type=int, default=6, help="measured fits of each side per process")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # one process's fits
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(fits(args.fits)))
        return
    runs: dict[str, list] = {side: [] for side in SIDES}
    for r in range(args.rounds):
        proc = subprocess.run([sys.executable, __file__, "--child", "--fits", str(args.fits)],
                              capture_output=True, text=True, timeout=1800, cwd=ROOT)
        if proc.returncode:
            raise SystemExit(proc.stderr[-3000:])
        for side, times in json.loads(proc.stdout.strip().splitlines()[-1]).items():
            runs[side].append(times)
            print(f"process {r + 1} {side}: {times}", flush=True)
    median = {side: statistics.median(t for times in runs[side] for t in times[1:]) for side in SIDES}
    result = {"name": "ray_train_launch", "command": "python bench/bench_ray_train_launch.py "
              + " ".join(argv if argv is not None else sys.argv[1:]),
              "date": time.strftime("%Y-%m-%d"), "machine": "2 cores, CPU (shared), no GPU",
              "settings": {"fit": "one worker x 1 CPU, a training function that imports torch",
                           "ray": "runtime.init_ray(): local, no dashboard, idle workers kept",
                           "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": 0.5, "processes": args.rounds, "fits": args.fits},
              "metrics": {"fit_s_median": median["platform"]},
              "baseline": {"name": SIDES["ray_train"], "metrics": {"fit_s_median": median["ray_train"]}},
              "ratios": {"fit_time_vs_ray_train": round(median["platform"] / median["ray_train"], 3)},
              "targets": {}, "sides": SIDES, "runs": runs}
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({"median_s": median, "ratio": result["ratios"]}, indent=1))


if __name__ == "__main__":
    main()
