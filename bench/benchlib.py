"""Shared pieces of the trainer benchmarks: a base model, stage configs, the platform's
own stage launch (launch.fit_stage), plain-TRL and bare-PyTorch baselines, and the
JSON / table output. Nothing here re-implements the platform: the platform side goes
through StageJob -> launch.fit_stage -> train/<kind>.py on a real local Ray.

Throughput on both sides is measured the same way: the platform's RayReport
callback writes `tokens_per_s` (tokens counted by the trainer, wall time between
two logs) to metrics.jsonl, and the baselines use a callback with the same rule.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "platform"))
from tinyreason.machine import cpu as machine_cpu, cpu_id_text, last_level_cache  # noqa: E402

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

WORK = ROOT / "bench" / "work"
RESULTS = ROOT / "bench" / "results"
DATE = time.strftime("%Y-%m-%d")  # the day of the run, as recorded with its figures


def cpu_line(cpu: dict) -> str:
    """"2 cores of an AMD EPYC (family 23 model 1, avx2, L3 8192K), shared, no GPU": which CPU a
    record's times and numbers come from. The name alone said too little: "AMD EPYC" here was a
    Zen 4 with AVX-512 and, on another day, a Zen 1 at half its speed (README, Reproducibility)."""
    detail = ", ".join(x for x in (cpu_id_text(cpu.get("id")), "/".join(cpu.get("isa") or []) or None,
                                   last_level_cache(cpu)) if x)
    return (f"{cpu.get('usable')} cores of an {cpu.get('model') or 'unnamed CPU'}" + (f" ({detail})" if detail else "")
            + ", shared, no GPU")


MACHINE = cpu_line(machine_cpu())  # /proc/cpuinfo and sysfs: no torch import


def machine() -> str:
    """MACHINE, or the GPU a benchmark runs on."""
    import torch

    if not torch.cuda.is_available():
        return MACHINE
    return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}, {os.cpu_count()} CPU cores"


def command(script: str, argv: list[str] | None) -> str:
    """How a bench script was run, for its record: `python bench/<script> <its arguments>`."""
    import shlex

    return shlex.join(["python", f"bench/{Path(script).name}", *(sys.argv[1:] if argv is None else argv)])


def write_record(out: Path, record: dict, note: str | None = None) -> None:
    """A results file: the record, with the run's note when one was given."""
    out.write_text(json.dumps({**record, "note": note} if note else record, indent=1) + "\n")


def platform_fingerprint() -> str:
    """A hash of the platform's source at bench time (the tree changes under active work;
    this says which version the figures belong to without asking git)."""
    import hashlib

    h = hashlib.sha256()
    for f in sorted((ROOT / "platform" / "tinyreason").rglob("*.py")):
        h.update(f.relative_to(ROOT).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:12]


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@contextlib.contextmanager
def fresh_clone(prefix: str):
    """A clone of this checkout's HEAD in a new temp dir, and an environment whose pip and uv
    download caches are empty (inside that dir): what a new machine starts `make` from.
    Yields (clone, env); the dir is removed afterwards."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        clone = work / "clone"
        git("clone", "-q", str(ROOT), str(clone))
        env = {**os.environ, "PIP_CACHE_DIR": str(work / "pip-cache"), "UV_CACHE_DIR": str(work / "uv-cache")}
        env.pop("VIRTUAL_ENV", None)
        yield clone, env
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------------- model and data


def make_base(preset: str, vocab: int = 1024, model_vocab: int | None = None) -> tuple[str, str]:
    """A from-scratch Llama of `preset` with a BPE tokenizer trained on synthetic stories,
    as curriculum.prepare_base builds it; cached under bench/work. Returns (model_dir, tok_dir).
    `model_vocab`: embedding rows beyond the tokenizer's (49152 gives SmolLM2's LM head cost)."""
    from tinyreason.data import synthetic
    from tinyreason.model import presets
    from tinyreason.model.tokenizer import prepare_chat_tokenizer, train_bpe

    out = WORK / "base" / (f"{preset}-v{vocab}" + (f"-m{model_vocab}" if model_vocab else ""))
    if not (out / "DONE").exists():
        shutil.rmtree(out, ignore_errors=True)
        tok = prepare_chat_tokenizer(train_bpe((r["text"] for r in synthetic.pretrain_rows(4000, 1)), vocab, out))
        model = presets.init_model(preset, tok, seed=0)
        if model_vocab:
            model.resize_token_embeddings(model_vocab, mean_resizing=False)
        model.save_pretrained(out)
        tok.save_pretrained(out)
        (out / "DONE").write_text(json.dumps({"parameters": presets.count_parameters(model)}))
    return str(out), str(out)


def parameters(model_dir: str) -> int:
    return json.loads((Path(model_dir) / "DONE").read_text())["parameters"]


def chat_rows(n: int, seed: int = 0) -> list[dict]:
    """Chat rows of varied length: the long-tailed multi-turn mix bench_tokenize uses."""
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_tokenize import chat_rows as varied

    return varied(n, seed)


def stage_config(kind: str, *, max_length: int, batch: int | None, steps: int, packing: bool = True, workers: int = 1,
                 cpus_per_worker: float = 1.0, logging_steps: int = 1, deepspeed: bool = True,
                 trainer: dict | None = None, data: dict | None = None, precision: str = "fp32",
                 zero_stage: int = 2, use_gpu: bool = False, sections: dict | None = None):
    """A stage of `kind` on its synthetic source. `sections`: more of the stage's own sections
    (a grpo stage's `rewards`)."""
    from tinyreason.config.experiment import StageConfig

    source = {"sft": "chat", "reasoning_sft": "reasoning", "dpo": "preference", "grpo": "prompts"}[kind]
    return StageConfig.model_validate({
        "name": kind, "kind": kind,
        "data": {"blend": {"sources": [{"synthetic": source}]}, "max_length": max_length, "packing": packing,
                 **(data or {})},
        "trainer": {"learning_rate": 1e-3, "max_steps": steps, "per_device_train_batch_size": batch,  # None: tokens
                    "logging_steps": logging_steps, "save_steps": 10_000, "lr_scheduler_type": "constant",
                    "seed": 0, **(trainer or {})},
        "deepspeed": {"enabled": deepspeed, "precision": precision, "zero_stage": zero_stage},
        "scaling": {"num_workers": workers, "cpus_per_worker": cpus_per_worker, "use_gpu": use_gpu},
        **(sections or {}),
    })


def set_niceness(n: int) -> int:
    """Run Ray's workers and this process (where the baselines train) at the same OS priority.

    Ray starts its workers at nice 15 (its `worker_niceness` default); a plain script runs
    at 0. On a shared, loaded machine that alone shifts CPU share between the two sides,
    so every benchmark puts both at `n` (0 by default) and records it.
    """
    os.environ["RAY_worker_niceness"] = str(n)
    os.setpriority(os.PRIO_PROCESS, 0, n)
    return os.getpriority(os.PRIO_PROCESS, 0)


def init_ray(num_cpus: int = 2) -> None:
    """A local Ray whose workers import the platform from this checkout (ROOT/platform, first
    on PYTHONPATH), as this process does: in a git worktree the installed package may be
    another checkout's, and the figures must belong to the code the fingerprint names. It is
    started as the platform starts one (runtime.init_ray): Ray Train's health poll and the idle
    workers kept decide how long a stage's fit() takes to return, so a benchmark run with Ray's
    defaults timed a slower platform than users run."""
    import ray

    from tinyreason.runtime import local_environment, local_system_config

    if not ray.is_initialized():
        local_environment()
        # in this process's environment, not a runtime_env: the raylet passes it on to every
        # worker, and a runtime_env starts each through a second interpreter (runtime.init_ray)
        paths = dict.fromkeys([str(ROOT / "platform"), *os.environ.get("PYTHONPATH", "").split(os.pathsep)])
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        os.environ.update(TOKENIZERS_PARALLELISM="false", WANDB_MODE="disabled")
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                 _system_config=local_system_config())
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False


def tokenize_on_ray(kind: str, rows: list[dict], tok_dir: str, stage) -> list[dict]:
    """The stage's own Ray Data tokenizer (train/<kind>.py: tokenize_steps), materialized to rows."""
    import ray.data

    from tinyreason.data.tokenize import on_ray
    from tinyreason.train import registry

    ds = on_ray(ray.data.from_items(rows), registry.get(kind).tokenize_steps(tok_dir, stage))
    out = []
    for r in ds.take_all():
        out.append({k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in r.items()})
    return out


# --------------------------------------------------------------------------- the platform side


def run_platform(stage, model_dir: str, tok_dir: str, rows: list[dict], name: str, attn: str = "sdpa") -> dict:
    """One stage through the platform: StageJob -> launch.fit_stage (Ray Train TorchTrainer,
    DeepSpeed inside the worker) -> metrics.jsonl. Returns the measured run."""
    import ray.data

    from tinyreason.outputs import METRICS, StageOutput
    from tinyreason.storage import Storage
    from tinyreason.train import launch
    from tinyreason.train.job import StageJob

    output = StageOutput(Storage(str(WORK)), f"runs/{name}")
    out = output.path
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    shutil.rmtree(WORK / "ray" / name, ignore_errors=True)  # Ray Train's checkpoints of an earlier run
    job = StageJob(stage=stage, parent_model=model_dir, tokenizer_dir=tok_dir, output=output, run_name=name, env={},
                   attn_implementation=attn)
    ds = ray.data.from_items(rows)
    watcher = CpuWatcher(out / METRICS)
    watcher.start()
    t0 = time.perf_counter()
    try:
        launch.fit_stage(job, ds)
    finally:
        watcher.stop()
    wall = time.perf_counter() - t0
    metrics = output.metrics()
    run = summarize(metrics)
    run.update(cpu_efficiency(watcher.samples))
    run["wall_s"] = round(wall, 2)
    run["export_dir"] = job.export_dir
    startup = next((m for m in metrics if m.get("event") == "startup"), None)
    if startup:
        run["startup"] = startup
    shutil.rmtree(out / "trainer", ignore_errors=True)  # checkpoints are not needed for the figures
    return run


class CpuWatcher:
    """CPU seconds of this run's Ray Train worker processes at each new metrics.jsonl line.

    On a shared machine wall-clock tokens/s mixes the trainer's own cost with how much
    CPU the scheduler hands it; tokens per CPU-second of the training processes (every
    thread of them, Ray's included) is the part the trainer owns. Polled every 0.1 s, so
    each sample lags its log line by < 0.1 s; figures use whole spans of many steps.
    """

    def __init__(self, metrics_file: Path, poll_s: float = 0.1):
        import threading

        self.file, self.poll_s, self.samples = metrics_file, poll_s, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._before = set(_train_worker_pids())

    def start(self):
        self._thread.start()

    def stop(self):
        self._stop.set()
        self._thread.join()

    def _run(self):
        seen, pids = 0, []
        while not self._stop.wait(self.poll_s):
            if not self.file.exists():
                continue
            lines = self.file.read_text().splitlines()
            if len(lines) == seen:
                continue
            if not pids:
                pids = [p for p in _train_worker_pids() if p not in self._before]
            cpu = sum(_cpu_seconds(p) for p in pids)
            for line in lines[seen:]:
                rec = json.loads(line)
                if "num_input_tokens_seen" in rec:
                    self.samples.append({"step": rec.get("step"), "tokens": rec["num_input_tokens_seen"],
                                         "cpu_s": cpu, "wall": time.perf_counter(), "workers": len(pids)})
            seen = len(lines)


def train_worker_pids() -> list[int]:
    """This process's Ray Train worker processes (bench_lora reads their peak memory)."""
    return _train_worker_pids()


def _train_worker_pids() -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "cmdline").read_bytes().startswith(b"ray::RayTrainWorker") and _ancestor(int(d.name)):
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


def _ancestor(pid: int) -> bool:
    """Is this process a descendant of ours (our local Ray), not another user's Ray?"""
    me = os.getpid()
    for _ in range(8):
        try:
            pid = int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            return False
        if pid == me:
            return True
        if pid <= 1:
            return False
    return False


def _cpu_seconds(pid: int) -> float:
    try:
        fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_efficiency(samples: list[dict], warmup_logs: int = 3) -> dict:
    """Tokens per CPU-second and per wall-second over the span after warm-up."""
    span = samples[warmup_logs:] if len(samples) > warmup_logs + 1 else samples
    if len(span) < 2:
        return {}
    a, b = span[0], span[-1]
    tokens, cpu, wall = b["tokens"] - a["tokens"], b["cpu_s"] - a["cpu_s"], b["wall"] - a["wall"]
    return {"tokens_per_cpu_s": round(tokens / cpu, 1) if cpu > 0 else None,
            "span_tokens_per_s": round(tokens / wall, 1) if wall > 0 else None,
            "cpu_share": round(cpu / wall / max(1, a.get("workers", 1)), 3) if wall > 0 else None}


def summarize(logs: list[dict], warmup_logs: int = 3) -> dict:
    """Median tokens/s over logged intervals after the first `warmup_logs`, plus the loss curve."""
    steps = [m for m in logs if "loss" in m and "tokens_per_s" in m]
    tps = [m["tokens_per_s"] for m in steps]
    measured = tps[warmup_logs:] if len(tps) > warmup_logs else tps
    return {
        "tokens_per_s": round(statistics.median(measured), 1) if measured else None,
        "per_log_tokens_per_s": [round(t, 1) for t in tps],
        "loss": [round(m["loss"], 4) for m in steps],
        "tokens": steps[-1].get("num_input_tokens_seen") if steps else None,
        "steps": steps[-1].get("step") if steps else None,
    }


# --------------------------------------------------------------------------- baselines


def throughput_callback(sink: list):
    """The platform's tokens_per_s rule (train/reporting.py), for a plain process."""
    from transformers import TrainerCallback

    from tinyreason.train.reporting import TokenRate

    class Throughput(TrainerCallback):
        def __init__(self):
            self.rate = TokenRate()

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = self.rate.annotate(state, logs)
            now = time.perf_counter()
            tokens = getattr(state, "num_input_tokens_seen", 0) or logs.get("num_tokens", 0)
            sink.append({k: v for k, v in logs.items() if isinstance(v, (int, float))})
            sink[-1].update(cpu_s=time.process_time(), wall=now, workers=1,
                            tokens=logs.get("num_input_tokens_seen", tokens))

    return Throughput()


def plain_sft_args(stage, out_dir: str, **extra):
    """SFTConfig as a plain TRL script writes it: the stage's TRL settings and precision
    (TRL's own default is bf16 autocast even on CPU, so it is set, not left to TRL),
    no DeepSpeed, no Ray."""
    import torch
    from trl import SFTConfig

    precision = stage.deepspeed.precision if stage.deepspeed.precision != "auto" else "fp32"
    return SFTConfig(output_dir=out_dir, use_cpu=not torch.cuda.is_available(), report_to=[], save_strategy="no",
                     remove_unused_columns=False, dataloader_drop_last=True, disable_tqdm=True,
                     bf16=precision == "bf16", fp16=precision == "fp16",
                     include_num_input_tokens_seen="non_padding", **{**stage.trainer.to_trl(), **extra})


def load_model(model_dir: str, attn: str = "sdpa"):
    from tinyreason.model.presets import load_model as platform_load

    return platform_load(model_dir, attn_implementation=attn)


def run_plain_trl_sft(stage, model_dir: str, tok_dir: str, rows: list[dict], name: str, threads: int,
                      export: str | None = None, platform_collator: bool = False, attn: str = "sdpa",
                      **extra) -> dict:
    """The same SFT as a plain one-process TRL script. `platform_collator`: batch the packed
    rows as the SFT stage does without a varlen kernel (data.tokenize.collate_packed_rows),
    for comparisons of the trainer alone at equal settings."""
    import datasets
    import torch
    from transformers import AutoTokenizer
    from trl import SFTTrainer

    torch.set_num_threads(threads)
    out = WORK / "runs" / name
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(tok_dir)
    model = load_model(model_dir, attn)
    columns = {k: [r[k] for r in rows] for k in rows[0]}
    collator = extra.pop("data_collator", None)
    if platform_collator:
        from functools import partial

        from tinyreason.data.tokenize import collate_packed_rows

        collator = partial(collate_packed_rows, pad_token_id=tok.pad_token_id)
        extra["padding_free"] = False  # the stage's setting without a varlen kernel (train/sft.py)
    args = plain_sft_args(stage, str(out), **{"max_length": None, "packing": False, "padding_free": True,
                                               "dataset_kwargs": {"skip_prepare_dataset": True}, **extra})
    logs: list = []
    trainer = SFTTrainer(model=model, args=args, train_dataset=datasets.Dataset.from_dict(columns),
                         processing_class=tok, callbacks=[throughput_callback(logs)], data_collator=collator)
    quiet(trainer)
    trainer.train()
    run = summarize(logs)
    run.update(cpu_efficiency(logs))
    run["wall_s"] = round(time.perf_counter() - t0, 2)
    run["torch_threads"] = torch.get_num_threads()
    if export:
        trainer.save_model(export)
        run["export_dir"] = export
    shutil.rmtree(out, ignore_errors=True)
    return run


def heldout_loss(model_dir: str, rows: list[dict]) -> float:
    """Mean next-token loss over the assistant tokens of held-out rows, one row at a time
    (no padding, no packing): the same yardstick for models trained either way."""
    import torch

    model = load_model(model_dir).eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for r in rows:
            ids = torch.tensor(r["input_ids"])[None]
            labels = torch.tensor(r["labels"])[None]
            logits = model(input_ids=ids).logits[:, :-1].float()
            target = labels[:, 1:]
            keep = target != -100
            nll = torch.nn.functional.cross_entropy(logits[keep], target[keep], reduction="sum")
            total, count = total + float(nll), count + int(keep.sum())
    return round(total / count, 4)


def quiet(trainer) -> None:
    """No per-log dict printing in the baselines (the platform's rank 0 shows a progress bar)."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)


def run_rounds(variants: dict, rounds: int, finish=None, describe=None) -> dict[str, list]:
    """Every variant once per round, A B C then C B A: the box is shared, so neighbours trade
    places. A variant is called with its round; `finish(name, run)` adds to a run before it
    is kept, `describe(run)` says more about it in the log line."""
    runs: dict[str, list] = {k: [] for k in variants}
    for rnd in range(rounds):
        for name in (list(variants) if rnd % 2 == 0 else list(reversed(variants))):
            run = variants[name](rnd)
            run["round"], run["loadavg_1m"] = rnd, round(os.getloadavg()[0], 2)
            if finish:
                finish(name, run)
            runs[name].append(run)
            said = [f"{run['tokens_per_s']} tokens/s" if "tokens_per_s" in run else "",
                    describe(run) if describe else "", f"wall {run['wall_s']} s" if "wall_s" in run else ""]
            log(f"round {rnd}: {name}: {', '.join(x for x in said if x)}")
    return runs


def per_round(runs: dict, a: str, b: str, metric: str = "tokens_per_s") -> tuple:
    """Ratio a/b within each round (both measured minutes apart under the same load), then the
    median; returns (median, per-round ratios)."""
    rs = [ratio(x.get(metric), y.get(metric)) for x, y in zip(runs.get(a, []), runs.get(b, []))]
    rs = [r for r in rs if r is not None]
    return (round(statistics.median(rs), 3) if rs else None), rs


def paired_ratios(runs: dict, pairs, cpu_key=None) -> tuple[dict, dict]:
    """For each (key, a, b) whose variants both ran: the median per-round tokens/s ratio a/b
    under `key`, and the tokens-per-CPU-second ratio under `cpu_key(key)` when given.
    Returns (ratios, the per-round lists)."""
    ratios, raw = {}, {}
    for key, a, b in pairs:
        if a in runs and b in runs:
            ratios[key], raw[key] = per_round(runs, a, b)
            if cpu_key:
                ratios[cpu_key(key)], raw[cpu_key(key)] = per_round(runs, a, b, "tokens_per_cpu_s")
    return ratios, raw


def add_common_args(p, variants: str, out: str, quick: str, known: tuple[str, ...]) -> None:
    """The flags every side-by-side benchmark takes."""
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--variants", default=variants, help=f"comma-separated, from: {', '.join(known)}")
    p.add_argument("--niceness", type=int, default=0, help="OS priority of Ray workers and baselines alike")
    p.add_argument("--quick", action="store_true", help=quick)
    p.add_argument("--out", default=str(RESULTS / out))


def prepare(args) -> tuple[str, str]:
    """Equal OS priority on both sides, the preset's base model and tokenizer, a local Ray."""
    set_niceness(args.niceness)
    model_dir, tok_dir = make_base(args.preset)
    init_ray()
    return model_dir, tok_dir


def ratio(a, b):
    return round(a / b, 3) if a and b else None


def med(xs):
    xs = [x for x in xs if x is not None]
    return round(statistics.median(xs), 1) if xs else None


def write_result(result: dict, path: Path) -> None:
    result.setdefault("settings", {})["platform_source_sha256_12"] = platform_fingerprint()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    log(f"wrote {path}")


def print_table(rows: list[tuple], header: tuple) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = " | ".join(str(h).ljust(w) for h, w in zip(header, widths))
    print(line)
    print("-+-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(str(x).ljust(w) for x, w in zip(r, widths)))
