"""GRPO stage throughput on the platform against a plain one-process TRL GRPOTrainer script
at equal settings: completions/s and optimizer steps/s, platform / plain.

    PYTHONPATH=platform .venv/bin/python bench/bench_grpo.py            # 3 rounds of 40 steps (~5 min)
    PYTHONPATH=platform .venv/bin/python bench/bench_grpo.py --quick    # 1 round of 20 steps (~2 min)
    PYTHONPATH=platform python bench/bench_grpo.py --quick --out bench/results/grpo_gpu.json  # on a GPU

On a CUDA machine both sides run on the GPU with the GPU settings below (`GPU`); else the CPU's.

Both write bench/results/grpo.json (a quick run says so in it). Under `nice -n N`, pass
`--niceness N` too (an unprivileged process cannot raise its own priority back to 0).

Both sides train the same model on the same prompts with the same rewards and the same TRL
settings: the `tiny` preset (benchlib.make_base) with <think> and </think> added as single
tokens and the embedding grown to hold them, as a reasoning_sft stage leaves its model;
prompts from the synthetic world's training split (`synthetic.prompt_rows`, 2 per step, one
epoch of `--steps` optimizer steps); rewards [{name: correctness}, {name: think_format,
weight: 0.2}] (tinyreason.rewards built-ins, guarded and weighted as the stage wires them);
num_generations 4, per_device_train_batch_size 8 (2 prompts x 4 completions a step),
max_completion_length 32, temperature 1.0, beta 0.0 (no reference model), learning rate
5e-5 constant, seed 0, fp32, `model.generate` (no vLLM). On a GPU: the `smollm2-135m-shape`
preset with SmolLM2's 49,152-row embedding (generation pays for the LM head), num_generations 8,
per_device_train_batch_size 64 (8 prompts x 8 completions), max_completion_length 128, bf16 on
both sides (the stage: DeepSpeed bf16; the plain script: the model loaded in bf16 and TRL's
bf16 flag, as TRL's docs write it), `model.generate` on both (vLLM is not installed there).
Variants, interleaved per round:

  platform    the grpo stage itself (train/grpo.py) through StageJob -> launch.fit_stage on a
              real local Ray: 1 Ray Train worker x 1 CPU, DeepSpeed ZeRO-2, its report and
              samples callbacks, rank 0's progress bar
  plain_trl   TRL's GRPOTrainer in this process: the same model dir, rows, reward functions
              and GRPOConfig knobs, no Ray, no DeepSpeed; torch threads = the worker's (1)

A GRPO step generates 8 completions (prompt + up to 32 new tokens, sampled), scores them and
takes one optimizer step on them. steps/s is the median over
logged steps after the first 3 (logging_steps 1, wall time between two log lines, the rule
the other benches use for tokens/s); completions/s is steps/s x 8. tokens/s counts prompt
and completion tokens (TRL's num_input_tokens_seen) and says whether both sides generated
as much: a sampled completion may stop early at the end-of-turn token, so completion
lengths are recorded too. Ratios are taken within each round, then the median.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
from benchlib import log, med  # noqa: E402

TEMPERATURE, BETA, LR = 1.0, 0.0, 5e-5


@dataclass(frozen=True)
class Setting:
    """The sizes both sides run at: the CPU record's, or a GPU's (a 135M-shaped model)."""

    num_generations: int
    batch: int  # per_device_train_batch_size: completions per optimizer step
    max_completion: int
    precision: str
    gpu: bool
    model_vocab: int | None = None  # embedding rows beyond the tokenizer's (benchlib.make_base)

    @property
    def prompts_per_step(self) -> int:
        return self.batch // self.num_generations


CPU = Setting(num_generations=4, batch=8, max_completion=32, precision="fp32", gpu=False)
GPU = Setting(num_generations=8, batch=64, max_completion=128, precision="bf16", gpu=True, model_vocab=49152)
REWARDS = [{"name": "correctness"}, {"name": "think_format", "weight": 0.2}]
WARMUP_LOGS = 3
VARIANTS = ("platform", "plain_trl")


def grpo_stage(steps: int, setting: Setting):
    return benchlib.stage_config(
        "grpo", max_length=256, batch=setting.batch, steps=steps, packing=False,
        trainer={"learning_rate": LR, "num_generations": setting.num_generations,
                 "max_completion_length": setting.max_completion, "temperature": TEMPERATURE, "beta": BETA},
        precision=setting.precision, use_gpu=setting.gpu, sections={"rewards": REWARDS})


def make_think_base(preset: str, model_vocab: int | None = None) -> str:
    """benchlib.make_base's model with <think> and </think> added (add_think_tokens, as a
    reasoning_sft stage prepares its tokenizer), the embedding grown to hold them and
    generation stopping at the end of turn (shards.load_tokenizer_and_model's steps), saved
    once so both sides load the same directory."""
    model_dir, tok_dir = benchlib.make_base(preset, model_vocab=model_vocab)
    out = Path(model_dir + "-think")
    if not (out / "DONE").exists():
        from transformers import AutoTokenizer

        from tinyreason.model import presets
        from tinyreason.model.templates import align_generation
        from tinyreason.model.tokenizer import add_think_tokens, prepare_chat_tokenizer

        shutil.rmtree(out, ignore_errors=True)
        tok = prepare_chat_tokenizer(AutoTokenizer.from_pretrained(tok_dir))
        add_think_tokens(tok)
        model = benchlib.load_model(model_dir)
        presets.fit_embeddings(model, tok)
        align_generation(model, tok)
        model.save_pretrained(out)
        tok.save_pretrained(out)
        (out / "DONE").write_text(json.dumps({"parameters": presets.count_parameters(model),
                                              "vocab": len(tok)}))
    return str(out)


def worker_platform() -> str:
    """Where a Ray worker of this run imports tinyreason from (benchlib.init_ray puts this
    checkout first on its PYTHONPATH)."""
    import ray

    def where():
        import tinyreason

        return list(tinyreason.__path__)[0]

    return ray.get(ray.remote(num_cpus=0)(where).remote())


def step_rates(logs: list[dict], time_key: str, batch: int) -> dict:
    """Optimizer steps/s between consecutive log lines after the first WARMUP_LOGS (median),
    over the whole span after them, and what the steps generated."""
    steps = [m for m in logs if "loss" in m and time_key in m]
    rates = [(b["step"] - a["step"]) / (b[time_key] - a[time_key]) for a, b in zip(steps, steps[1:])
             if b[time_key] > a[time_key]]
    measured = rates[WARMUP_LOGS - 1:] if len(rates) > WARMUP_LOGS else rates  # intervals ending after log 3
    span = steps[WARMUP_LOGS - 1:] if len(steps) > WARMUP_LOGS else steps
    lengths = [m["completions/mean_length"] for m in steps if "completions/mean_length" in m]
    out = {
        "steps_per_s": round(statistics.median(measured), 3) if measured else None,
        "span_steps_per_s": (round((span[-1]["step"] - span[0]["step"]) / (span[-1][time_key] - span[0][time_key]), 3)
                             if len(span) > 1 and span[-1][time_key] > span[0][time_key] else None),
        "per_log_steps_per_s": [round(r, 3) for r in rates],
        "completion_mean_length": round(statistics.mean(lengths), 2) if lengths else None,
        "completion_length_per_step": [round(x, 1) for x in lengths],
        "reward_per_step": [round(m["reward"], 4) for m in steps if "reward" in m],
        "clipped_ratio": med(m.get("completions/clipped_ratio") for m in steps),
    }
    out["completions_per_s"] = round(out["steps_per_s"] * batch, 2) if out["steps_per_s"] else None
    return out


def run_platform(stage, model_dir: str, rows: list[dict]) -> dict:
    """The grpo stage through benchlib.run_platform (StageJob -> launch.fit_stage)."""
    from tinyreason.outputs import StageOutput
    from tinyreason.storage import Storage

    run = benchlib.run_platform(stage, model_dir, model_dir, rows, "grpo-platform")
    metrics = StageOutput(Storage(str(benchlib.WORK)), "runs/grpo-platform").metrics()
    run.update(step_rates(metrics, "time", stage.trainer.per_device_train_batch_size))
    return run


def run_plain_trl(stage, model_dir: str, rows: list[dict], threads: int) -> dict:
    """TRL's GRPOTrainer in this process, as a plain script writes it: the stage's TRL settings,
    device and precision (bf16: weights loaded in bf16 and TRL's autocast flag), the same reward
    functions and weights, no DeepSpeed, no Ray."""
    import datasets
    import torch
    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from tinyreason import rewards
    from tinyreason.model.presets import fit_embeddings
    from tinyreason.model.templates import align_generation

    torch.set_num_threads(threads)
    out = benchlib.WORK / "runs" / "grpo-plain"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(model_dir)
    bf16 = stage.deepspeed.precision == "bf16"
    model = benchlib.load_model(model_dir)
    if bf16:
        model = model.to(torch.bfloat16)
    fit_embeddings(model, tok)  # no-ops on this base: the steps the stage's worker takes
    align_generation(model, tok)
    funcs, weights, _ = rewards.reward_components(stage.rewards, columns=["prompt", "answer"])
    args = GRPOConfig(output_dir=str(out), use_cpu=not stage.scaling.use_gpu, report_to=[], save_strategy="no",
                      remove_unused_columns=False, dataloader_drop_last=True, disable_tqdm=True,
                      bf16=bf16, fp16=False,  # set: TRL's default is bf16 autocast even on CPU
                      include_num_input_tokens_seen="non_padding", reward_weights=weights,
                      **stage.trainer.to_trl())
    logs: list = []
    trainer = GRPOTrainer(model=model, reward_funcs=funcs, args=args, train_dataset=datasets.Dataset.from_list(rows),
                          processing_class=tok, callbacks=[benchlib.throughput_callback(logs)])
    benchlib.quiet(trainer)
    trainer.train()
    run = benchlib.summarize(logs)
    run.update(benchlib.cpu_efficiency(logs))
    run.update(step_rates(logs, "wall", stage.trainer.per_device_train_batch_size))
    run["wall_s"] = round(time.perf_counter() - t0, 2)
    run["torch_threads"] = torch.get_num_threads()
    shutil.rmtree(out, ignore_errors=True)
    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=40)
    benchlib.add_common_args(p, ",".join(VARIANTS), "grpo.json", quick="1 round of 20 steps", known=VARIANTS)
    p.set_defaults(rounds=3)
    args = p.parse_args()
    if args.quick:
        args.steps, args.rounds = 20, 1

    import torch

    setting = GPU if torch.cuda.is_available() else CPU
    if setting.gpu and args.preset == "tiny":
        args.preset = "smollm2-135m-shape"
    benchlib.set_niceness(args.niceness)
    model_dir = make_think_base(args.preset, setting.model_vocab)
    benchlib.init_ray(num_cpus=os.cpu_count() if setting.gpu else 2)
    where = worker_platform()
    log(f"Ray workers import tinyreason from {where}")

    from tinyreason.data import synthetic

    stage = grpo_stage(args.steps, setting)
    threads = int(stage.scaling.cpus_per_worker)  # a 1-CPU Ray worker runs OMP_NUM_THREADS=1
    rows = synthetic.prompt_rows(args.steps * setting.prompts_per_step, 0)  # one epoch is exactly `steps` steps
    every = {
        "platform": lambda: run_platform(stage, model_dir, rows),
        "plain_trl": lambda: run_plain_trl(stage, model_dir, rows, threads),
    }
    started = time.perf_counter()
    runs = benchlib.run_rounds(
        {k: lambda rnd, k=k: every[k]() for k in args.variants.split(",")}, args.rounds,
        describe=lambda run: (f"{run.get('completions_per_s')} completions/s, {run.get('steps_per_s')} steps/s, "
                              f"completion length {run.get('completion_mean_length')}"))
    report(args, runs, model_dir, where, threads, time.perf_counter() - started, setting)


def report(args, runs, model_dir, where, threads, seconds, setting: Setting) -> None:
    keys = ("completions_per_s", "steps_per_s", "span_steps_per_s", "tokens_per_s", "tokens_per_cpu_s",
            "completion_mean_length", "wall_s")
    figures = {k: {m: med(r.get(m) for r in v) for m in keys} for k, v in runs.items()}
    for k, v in runs.items():
        figures[k]["trainer_setup_s"] = med(r.get("startup", {}).get("trainer_setup") for r in v)
    ratios, raw = {}, {}
    if "platform" in runs and "plain_trl" in runs:
        for m in ("completions_per_s", "steps_per_s", "span_steps_per_s", "tokens_per_s", "tokens_per_cpu_s"):
            key = f"{m}_platform_vs_plain_trl"
            ratios[key], raw[key] = benchlib.per_round(runs, "platform", "plain_trl", m)
    base = json.loads((Path(model_dir) / "DONE").read_text())
    result = {
        "name": "grpo",
        "command": benchlib.command(__file__, None),
        "quick": args.quick,
        "machine": benchlib.machine(),
        "date": time.strftime("%Y-%m-%d"),
        "settings": {"preset": args.preset, "parameters": base["parameters"], "vocab": base["vocab"],
                     "think_tokens": True, "num_generations": setting.num_generations,
                     "per_device_train_batch_size": setting.batch, "prompts_per_step": setting.prompts_per_step,
                     "max_completion_length": setting.max_completion, "temperature": TEMPERATURE, "beta": BETA,
                     "learning_rate": LR, "rewards": REWARDS, "steps": args.steps, "warmup_logs": WARMUP_LOGS,
                     "deepspeed": "ZeRO-2", "precision": setting.precision, "device": "gpu" if setting.gpu else "cpu",
                     "model_vocab": setting.model_vocab, "workers": 1, "torch_threads": threads,
                     "niceness": args.niceness, "rounds": args.rounds, "worker_tinyreason_path": where,
                     "bench_seconds": round(seconds, 1)},
        "metrics": figures.get("platform", {}),
        "baseline": {"name": "TRL GRPOTrainer, plain one-process script, same model, prompts, rewards and settings",
                     "metrics": figures.get("plain_trl", {})},
        "ratios": ratios,
        "ratios_per_round": raw,
        "targets": {"completions_per_s_platform_vs_plain_trl": 0.95},
        "runs": runs,
    }
    benchlib.write_result(result, Path(args.out))
    benchlib.print_table([(k, *(f[m] for m in keys), f["trainer_setup_s"], len(runs[k])) for k, f in figures.items()],
                         ("variant", *keys, "trainer_setup_s", "runs"))
    print()
    benchlib.print_table([(k, v, raw.get(k)) for k, v in ratios.items()], ("ratio", "median", "per round"))


if __name__ == "__main__":
    main()
