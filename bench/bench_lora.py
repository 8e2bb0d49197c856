"""LoRA against full fine-tuning: the SFT stage's tokens/s and its worker's peak memory.

    .venv/bin/python bench/bench_lora.py            # writes bench/results/lora.json
    .venv/bin/python bench/bench_lora.py --quick    # 1 round, 8 steps

Both variants are the platform's own SFT stage through launch.fit_stage on a real local Ray
(1 worker, DeepSpeed ZeRO-2, fp32), BFD-packed chat rows at max_length 256, 8 packed rows
per step, the same rows and steps, interleaved per round:

  full   every weight trains (AdamW state for all of them)
  lora   a `peft:` section: rank `--r` adapters on every linear layer (`all-linear`),
         the base frozen; the export merges the adapter (train/lora.py)

Peak memory is the training worker process's peak resident set (VmHWM in /proc, polled
every 0.1 s while it lives): weights, gradients, optimizer state, activations, and the
Python, torch and DeepSpeed runtime both variants share. Default preset `small` (~9M
parameters): on `tiny` the optimizer state LoRA saves is smaller than the noise.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
from benchlib import med  # noqa: E402

VARIANTS = ("full", "lora")
MAX_LENGTH, BATCH = 256, 8


class PeakMemory:
    """The largest VmHWM among this run's Ray Train worker processes."""

    def __init__(self):
        self.peak_kb, self._stop = 0, threading.Event()
        self._before = set(benchlib.train_worker_pids())
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        while not self._stop.wait(0.1):
            for pid in benchlib.train_worker_pids():
                if pid in self._before:
                    continue
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                for line in status.splitlines():
                    if line.startswith("VmHWM:"):
                        self.peak_kb = max(self.peak_kb, int(line.split()[1]))


def stage(lora: bool, steps: int, r: int):
    cfg = benchlib.stage_config("sft", max_length=MAX_LENGTH, batch=BATCH, steps=steps,
                                trainer={"learning_rate": 2e-3 if lora else 1e-3})
    if not lora:
        return cfg
    peft = {"r": r, "lora_alpha": 2 * r, "lora_dropout": 0.0, "target_modules": "all-linear"}
    return type(cfg).model_validate({**cfg.model_dump(), "peft": peft})


def run(variant: str, args, model_dir: str, tok_dir: str, rows: list[dict]) -> dict:
    cfg = stage(variant == "lora", args.steps, args.r)
    with PeakMemory() as mem:
        result = benchlib.run_platform(cfg, model_dir, tok_dir, rows, f"lora-{variant}")
    result["peak_rss_mb"] = round(mem.peak_kb / 1024, 1)
    result.pop("per_log_tokens_per_s", None)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--r", type=int, default=16)
    benchlib.add_common_args(p, ",".join(VARIANTS), "lora.json", quick="1 round of 8 steps", known=VARIANTS)
    p.set_defaults(preset="small")
    args = p.parse_args()
    if args.quick:
        args.steps, args.rounds = 8, 1
    model_dir, tok_dir = benchlib.prepare(args)
    rows = benchlib.tokenize_on_ray("sft", benchlib.chat_rows(args.steps * BATCH * 3), tok_dir,
                                    stage(False, args.steps, args.r))
    started = time.perf_counter()
    runs = benchlib.run_rounds({k: lambda rnd, k=k: run(k, args, model_dir, tok_dir, rows)
                                for k in args.variants.split(",")}, args.rounds,
                               describe=lambda r: f"peak RSS {r['peak_rss_mb']} MB")
    ratios, raw = benchlib.paired_ratios(runs, [("tokens_per_s_lora_vs_full", "lora", "full")],
                                         cpu_key=lambda k: k.replace("tokens_per_s_", "tokens_per_cpu_s_", 1))
    ratios["peak_rss_mb_lora_vs_full"], raw["peak_rss_mb_lora_vs_full"] = benchlib.per_round(runs, "lora", "full",
                                                                                             "peak_rss_mb")
    tps = {k: med(r.get("tokens_per_s") for r in v) for k, v in runs.items()}
    mem = {k: med(r.get("peak_rss_mb") for r in v) for k, v in runs.items()}
    result = {
        "name": "lora",
        "command": f"python bench/bench_lora.py --steps {args.steps} --r {args.r} --rounds {args.rounds} "
                   f"--preset {args.preset}",
        "machine": benchlib.MACHINE, "date": benchlib.DATE,
        "settings": {"preset": args.preset, "parameters": benchlib.parameters(model_dir), "max_length": MAX_LENGTH,
                     "per_device_train_batch_size": BATCH, "steps": args.steps, "r": args.r,
                     "target_modules": "all-linear", "deepspeed": "ZeRO-2", "precision": "fp32",
                     "niceness": args.niceness, "rounds": args.rounds,
                     "bench_seconds": round(time.perf_counter() - started, 1)},
        "metrics": {"tokens_per_s": tps.get("lora"), "peak_rss_mb": mem.get("lora")},
        "baseline": {"name": "full fine-tuning, the same stage without peft",
                     "metrics": {"tokens_per_s": tps.get("full"), "peak_rss_mb": mem.get("full")}},
        "ratios": ratios, "ratios_per_round": raw, "targets": {}, "runs": runs,
    }
    benchlib.write_result(result, Path(args.out))
    benchlib.print_table([(k, tps[k], mem[k], len(runs[k])) for k in runs],
                         ("variant", "tokens/s", "peak RSS MB", "runs"))
    print()
    benchlib.print_table(list(ratios.items()), ("ratio", "value"))


if __name__ == "__main__":
    main()
