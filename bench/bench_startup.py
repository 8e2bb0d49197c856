"""Start-up: from a fresh command to the first optimizer step, broken down by phase,
for the platform (jobs/curriculum.py on a one-stage config) and a plain TRL script.

    .venv/bin/python bench/bench_startup.py            # writes bench/results/startup.json (3 + 3 runs, 4-6 min)
    .venv/bin/python bench/bench_startup.py --quick    # 1 + 1 run

Platform side: a fresh Python process runs jobs/curriculum.py's own `main` on a config
derived from configs/default.yaml, keeping its `sft` stage as configured (2,500 synthetic
chat rows, max_length 256, batch 8, 2 workers, DeepSpeed ZeRO-2, the `tiny` preset),
starting from a prebuilt tiny base (the pretrain stage's place) with evaluation off and a
fresh storage dir each run, so the blend, tokenizer and Ray are all cold. Ray starts as
the command starts it (runtime.init_ray: local Ray, Ray's default worker priority).
The phases come from timestamps taken around the platform's own functions (wrapped, not
changed) and from the worker's "startup" event in metrics.jsonl (train/worker.py Timeline):

  python_start     command start -> first line of the script (interpreter start)
  imports_config   imports of jobs/curriculum.py, tinyreason, ray; YAML load + validation
  ray_start        runtime.init_ray
  blend            RunContext.blend (Ray Data: synthetic rows -> parquet, decontamination)
  tokenize         tokenizer prep + curriculum.training_rows (template, masks, BFD packing; in the
                   driver for blends <= data.tokenize_in_driver_max_rows, else on Ray Data)
  worker_group     launch.fit_stage called -> train_loop_per_worker starts (TorchTrainer,
                   placement group, worker processes, process group, dataset split)
  worker phases    setup, imports, model_load, data_shard, trainer_setup, first_step

Baseline: a fresh Python process that imports torch/transformers/TRL, tokenizes and packs
the same rows with the same functions, loads the model and runs SFTTrainer to step 1.
Platform and baseline runs alternate. JIT: ~/.cache/torch_extensions is listed before and
after each run and the output is searched for extension builds.
"""

from __future__ import annotations

import time

T_FIRST_LINE = time.time()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "work" / "startup"
TARGET_S = 30.0
JIT_DIR = Path.home() / ".cache" / "torch_extensions"
MARK = "STARTUP_RESULT "


# --------------------------------------------------------------------------- children


def child_platform(config: str, t_cmd: float) -> None:
    """Run jobs/curriculum.py's main with timestamps around the platform's own functions."""
    marks: dict[str, float] = {"t_cmd": t_cmd, "first_line": T_FIRST_LINE}
    sys.path.insert(0, str(ROOT / "platform"))
    sys.path.insert(0, str(ROOT / "jobs"))
    import tinyreason.runtime as runtime

    def timed(fn, name):
        def wrapper(*a, **k):
            marks.setdefault(f"{name}_start", time.time())
            try:
                return fn(*a, **k)
            finally:
                marks.setdefault(f"{name}_end", time.time())
        return wrapper

    runtime.init_ray = timed(runtime.init_ray, "init_ray")
    import curriculum as job  # jobs/curriculum.py: binds the wrapped init_ray at import

    from tinyreason.context import RunContext
    from tinyreason.train import launch

    RunContext.blend = timed(RunContext.blend, "blend")
    launch.fit_stage = timed(launch.fit_stage, "fit_stage")
    marks["imports_end"] = time.time()
    storage = Path(_storage_of(config))
    startup: dict = {}

    def watch():  # the worker writes its startup event at the end of step 1
        while not startup:
            for f in storage.glob("stages/*/metrics.jsonl"):
                for line in f.read_text().splitlines():
                    rec = json.loads(line)
                    if rec.get("event") == "startup":
                        startup.update(rec, seen_at=time.time())
            time.sleep(0.05)

    threading.Thread(target=watch, daemon=True).start()
    # the driver's console sends fd 1 to its log file (console.setup): keep the real stdout for the result
    result_out = os.fdopen(os.dup(1), "w")
    code = job.main(["--config", config])
    deadline = time.time() + 10
    while not startup and time.time() < deadline:
        time.sleep(0.1)
    print(MARK + json.dumps({"marks": marks, "startup": startup, "exit_code": code}), file=result_out, flush=True)


def _storage_of(config: str) -> str:
    import yaml

    return yaml.safe_load(Path(config).read_text())["storage"]["path"]


def child_plain(model_dir: str, rows_n: int, t_cmd: float) -> None:
    """The same stage as a plain TRL script, timed to its first optimizer step."""
    marks = {"t_cmd": t_cmd, "first_line": T_FIRST_LINE}
    sys.path.insert(0, str(ROOT / "platform"))
    import datasets
    from transformers import AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from tinyreason.data import synthetic
    from tinyreason.data.tokenize import pack_bfd, tokenize_chat_batch
    from tinyreason.model.presets import load_model
    from tinyreason.model.tokenizer import prepare_chat_tokenizer

    marks["imports_end"] = time.time()
    tok = prepare_chat_tokenizer(AutoTokenizer.from_pretrained(model_dir))
    rows = synthetic.chat_rows(rows_n, 0)
    examples = tokenize_chat_batch({"messages": [r["messages"] for r in rows]}, tok, 256)
    packed = pack_bfd([{"input_ids": i, "labels": lab} for i, lab in zip(examples["input_ids"], examples["labels"])],
                      256)
    train = datasets.Dataset.from_dict({k: [p[k] for p in packed] for k in ("input_ids", "labels", "seq_lengths")})
    marks["data_end"] = time.time()
    model = load_model(model_dir)
    marks["model_end"] = time.time()

    class FirstStep(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            marks["trainer_init_end"] = time.time()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 1:
                marks["first_step_end"] = time.time()
                control.should_training_stop = True

    args = SFTConfig(output_dir=str(WORK / "plain-out"), use_cpu=True, report_to=[], save_strategy="no",
                     per_device_train_batch_size=8, learning_rate=1e-3, max_steps=3, logging_steps=1,
                     max_length=None, packing=False, padding_free=True, remove_unused_columns=False,
                     dataset_kwargs={"skip_prepare_dataset": True}, disable_tqdm=True,
                     bf16=False)  # the stage's fp32 on CPU, not TRL's default bf16 autocast
    SFTTrainer(model=model, args=args, train_dataset=train, processing_class=tok, callbacks=[FirstStep()]).train()
    print(MARK + json.dumps({"marks": marks}), flush=True)


# --------------------------------------------------------------------------- parent


def make_config(model_dir: str, storage: Path, workers: int) -> Path:
    """configs/default.yaml's sft stage alone, from a prebuilt tiny base, evaluation off."""
    import yaml

    cfg = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    sft = next(s for s in cfg["stages"] if s["kind"] == "sft")
    sft["trainer"].update(max_steps=3, logging_steps=1, save_steps=1000)
    sft["scaling"] = {"num_workers": workers}
    cfg.update(name="startup-bench", stages=[sft], storage={"path": str(storage)},
               model={"preset": None, "name_or_path": model_dir}, tokenizer={"path": model_dir},
               tracking={"wandb": {"enabled": False}})
    cfg["evaluation"]["after_each_stage"] = False
    path = WORK / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def jit_snapshot() -> dict:
    if not JIT_DIR.exists():
        return {}
    return {str(p): p.stat().st_mtime for p in JIT_DIR.rglob("*") if p.is_file()}


def run_child(argv: list[str], log_path: Path) -> tuple[dict, float, str]:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.pop("RAY_worker_niceness", None)  # the command as users run it: Ray's own defaults
    t_cmd = time.time()
    proc = subprocess.run([sys.executable, __file__, *argv, "--t-cmd", repr(t_cmd)], capture_output=True, text=True,
                          env=env, cwd=str(ROOT), timeout=420)
    out = proc.stdout + proc.stderr
    log_path.write_text(out)
    line = next((x for x in proc.stdout.splitlines() if x.startswith(MARK)), None)
    if line is None:
        raise RuntimeError(f"child failed (exit {proc.returncode}); output in {log_path}")
    return json.loads(line[len(MARK):]), time.time() - t_cmd, out


def platform_phases(res: dict) -> dict:
    m, s = res["marks"], res["startup"]
    first_step = s["seen_at"]
    worker_start = first_step - s["to_first_step"]
    p = {
        "python_start": m["first_line"] - m["t_cmd"],
        "imports_config": m["init_ray_start"] - m["first_line"],
        "ray_start": m["init_ray_end"] - m["init_ray_start"],
        "blend": m["blend_end"] - m["blend_start"],
        "tokenize": m["fit_stage_start"] - m["blend_end"],
        "worker_group": worker_start - m["fit_stage_start"],
        **{f"worker_{k}": s[k]
           for k in ("setup", "imports", "model_load", "data_shard", "trainer_setup", "first_step")},
    }
    p = {k: round(v, 2) for k, v in p.items()}
    p["other"] = round(first_step - m["t_cmd"] - sum(p.values()), 2)  # e.g. run dirs, config.json, the gaps
    p["total_to_first_step"] = round(first_step - m["t_cmd"], 2)
    return p


def plain_phases(res: dict) -> dict:
    m = res["marks"]
    p = {"python_start": m["first_line"] - m["t_cmd"], "imports": m["imports_end"] - m["first_line"],
         "tokenize": m["data_end"] - m["imports_end"], "model_load": m["model_end"] - m["data_end"],
         "trainer_setup": m["trainer_init_end"] - m["model_end"],
         "first_step": m["first_step_end"] - m["trainer_init_end"]}
    p = {k: round(v, 2) for k, v in p.items()}
    p["total_to_first_step"] = round(m["first_step_end"] - m["t_cmd"], 2)
    return p


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--workers", type=int, default=2, help="the sft stage's num_workers (default.yaml: 2)")
    p.add_argument("--quick", action="store_true", help="1 run each")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "startup.json"))
    p.add_argument("--child", choices=["platform", "plain"], help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--t-cmd", type=float, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child == "platform":
        return child_platform(args.config, args.t_cmd)
    if args.child == "plain":
        return child_plain(args.model, 2500, args.t_cmd)
    if args.quick:
        args.runs = 1

    sys.path.insert(0, str(ROOT / "bench"))
    import benchlib

    model_dir, _ = benchlib.make_base("tiny")
    runs: dict[str, list] = {"platform": [], "plain_trl": []}
    jit_events = []
    for i in range(args.runs):
        for side in ("platform", "plain_trl"):
            storage = WORK / f"storage-{i}"
            shutil.rmtree(storage, ignore_errors=True)
            before = jit_snapshot()
            load = os.getloadavg()[0]
            if side == "platform":
                config = make_config(model_dir, storage, args.workers)
                res, wall, out = run_child(["--child", "platform", "--config", str(config)], WORK / f"platform-{i}.log")
                phases = platform_phases(res)
            else:
                res, wall, out = run_child(["--child", "plain", "--model", model_dir], WORK / f"plain-{i}.log")
                phases = plain_phases(res)
            after = jit_snapshot()
            built = sorted(k for k in after if before.get(k) != after[k])
            jit_lines = [x for x in out.splitlines() if re.search(r"Building extension|ninja|Emitting ninja", x)]
            jit_events += built + jit_lines
            runs[side].append({"phases": phases, "command_wall_s": round(wall, 2), "loadavg_1m": round(load, 2),
                               "jit_files_written": built, "jit_log_lines": jit_lines[:5]})
            benchlib.log(f"run {i} {side}: first step at {phases['total_to_first_step']} s "
                         f"(load {load:.1f}); command {wall:.1f} s")
            shutil.rmtree(storage, ignore_errors=True)
    report(args, runs, jit_events, benchlib)


def report(args, runs, jit_events, benchlib) -> None:
    def median_phases(rs):
        keys = rs[0]["phases"].keys()
        return {k: round(statistics.median(r["phases"][k] for r in rs), 2) for k in keys}

    plat, plain = median_phases(runs["platform"]), median_phases(runs["plain_trl"])
    total, base = plat["total_to_first_step"], plain["total_to_first_step"]
    result = {
        "name": "startup",
        "command": f"python bench/bench_startup.py --runs {args.runs} --workers {args.workers}",
        "machine": benchlib.MACHINE,
        "date": benchlib.DATE,
        "settings": {"config": "configs/default.yaml sft stage alone (2,500 synthetic chat rows, max_length 256, "
                               f"batch 8, {args.workers} workers, DeepSpeed ZeRO-2), tiny preset base, eval off, "
                               "fresh storage (cold blend + tokenize) each run",
                     "runs": args.runs, "jit_dir": str(JIT_DIR)},
        "metrics": {"to_first_step_s": total, "phases_median_s": plat,
                    "jit_compiled": bool(jit_events)},
        "baseline": {"name": "plain TRL SFTTrainer script, same rows and model, one process",
                     "metrics": {"to_first_step_s": base, "phases_median_s": plain}},
        "ratios": {"to_first_step_vs_plain_trl": round(total / base, 3)},
        "targets": {"to_first_step_s": TARGET_S, "jit_compiled": False},
        "runs": runs,
    }
    benchlib.write_result(result, Path(args.out))
    keys = list(plat)
    benchlib.print_table([(k, plat[k], plain.get(k, "")) for k in keys] +
                         [(k, "", plain[k]) for k in plain if k not in plat],
                         ("phase (median s)", "platform", "plain TRL"))
    print(f"\nto first step: platform {total} s (target <= {TARGET_S} s), plain TRL {base} s; "
          f"JIT compiled: {bool(jit_events)}")


if __name__ == "__main__":
    main()
