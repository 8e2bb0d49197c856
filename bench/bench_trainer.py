"""Stage trainer throughput: the platform's SFT stage (Ray Train + DeepSpeed ZeRO-2, TRL
SFTTrainer inside the worker) against the same TRL SFTTrainer as a plain one-process
script, and against a bare PyTorch loop (AdamW) on the same batches.

    .venv/bin/python bench/bench_trainer.py            # writes bench/results/trainer_sft.json (~6 min)
    .venv/bin/python bench/bench_trainer.py --quick    # 1 round, fewer steps (~2 min)

Equal settings on every side: the `tiny` preset (1.8M parameters, 1k vocab), the same
BFD-packed rows from the SFT stage's own Ray Data tokenizer (train/sft.py: tokenize),
max_length 256, 8 sequences per step per worker, fp32, constant lr 1e-3, grad clip 1.0,
the stage's own batches on every side (8 packed rows with per-example position ids,
data.tokenize.collate_packed_rows), logging every step. Ray gives a
1-CPU worker OMP_NUM_THREADS=1, so the one-process baselines run with 1 torch thread:
equal compute, and the pair that the >= 0.95x target is about. The 2-worker platform
run (2 x 1 thread) is compared with the plain script at 1 and at 2 threads.

tokens/s is the trainer's own non-padding token count over wall time between two
logs (the platform's RayReport rule; the baselines use a callback with the same rule),
median over logged steps after the first 3. Variants run interleaved (A B C A B C ...)
because the machine is shared; ratios are taken within each round, then the median.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
from benchlib import log, med, ratio  # noqa: E402

MAX_LENGTH, BATCH = 256, 8
VARIANTS = ("platform_1w", "trl_plain_1t", "bare_torch_1t", "platform_2w", "trl_plain_2t", "platform_1w_deepspeed_off",
            "trl_in_ray_train_worker", "platform_1w_bf16", "trl_plain_1t_bf16", "platform_2w_zero0", "platform_2w_zero1",
            "platform_1w_adamw_foreach", "platform_1w_compile")


def bare_torch(model_dir: str, tok_dir: str, rows: list[dict], steps: int, threads: int) -> dict:
    """A bare PyTorch loop: same model, same packed rows in batches of 8 rows with
    per-example position ids (the stage's collator), AdamW, clip 1.0; no Trainer."""
    import torch
    from transformers import AutoTokenizer

    from tinyreason.data.tokenize import collate_packed_rows

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    pad = AutoTokenizer.from_pretrained(tok_dir).pad_token_id
    model = benchlib.load_model(model_dir).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    order = list(range(len(rows)))
    random.Random(0).shuffle(order)
    logs, t_last, tokens = [], time.perf_counter(), 0
    for step in range(steps):
        batch = collate_packed_rows([rows[order[(step * BATCH + i) % len(rows)]] for i in range(BATCH)], pad)
        ids = batch["input_ids"]
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens += int((ids != pad).sum())
        now = time.perf_counter()
        logs.append({"loss": loss.item(), "tokens_per_s": tokens_since(logs, tokens) / (now - t_last),
                     "num_input_tokens_seen": tokens, "step": step + 1, "tokens": tokens,
                     "cpu_s": time.process_time(), "wall": now, "workers": 1})
        t_last = now
    run = benchlib.summarize(logs)
    run.update(benchlib.cpu_efficiency(logs))
    run["wall_s"] = round(time.perf_counter() - t0, 2)
    run["torch_threads"] = torch.get_num_threads()
    return run


def trl_in_ray_train_worker(stage, model_dir: str, tok_dir: str, rows: list[dict]) -> dict:
    """Diagnostic: the plain TRL script, unchanged, run as a Ray Train worker's loop (1 CPU,
    gloo process group, training thread): what the Ray Train worker itself costs, apart
    from what the platform's stage adds (DeepSpeed, its TRL arguments, its callback)."""
    import json

    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    result = benchlib.WORK / "runs" / "trl-in-worker.json"
    result.unlink(missing_ok=True)

    def loop(cfg):
        import json
        import sys

        sys.path.insert(0, cfg["bench"])
        import benchlib

        r = benchlib.run_plain_trl_sft(cfg["stage"], cfg["model"], cfg["tok"], cfg["rows"], "trl-in-worker", 1,
                                       platform_collator=True)
        open(cfg["out"], "w").write(json.dumps(r))

    t0 = time.perf_counter()
    TorchTrainer(loop, train_loop_config={"stage": stage, "model": model_dir, "tok": tok_dir, "rows": rows,
                                          "out": str(result), "bench": str(Path(__file__).resolve().parent)},
                 scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 1}),
                 run_config=RunConfig(name="trl-in-worker", storage_path=str(benchlib.WORK / "ray-storage"))).fit()
    run = json.loads(result.read_text())
    run["wall_s"] = round(time.perf_counter() - t0, 2)
    return run


def tokens_since(logs, tokens):
    return tokens - (logs[-1]["num_input_tokens_seen"] if logs else 0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rows", type=int, default=2000, help="chat rows before packing")
    p.add_argument("--name", default="trainer_sft")
    benchlib.add_common_args(p, "platform_1w,trl_plain_1t,bare_torch_1t,platform_2w", "trainer_sft.json",
                             quick="1 round of 15 steps", known=VARIANTS)
    args = p.parse_args()
    if args.quick:
        args.steps, args.rounds = 15, 1

    model_dir, tok_dir = benchlib.prepare(args)
    sft = partial(benchlib.stage_config, "sft", max_length=MAX_LENGTH, batch=BATCH, steps=args.steps)
    one, two, no_ds, bf16 = sft(), sft(workers=2), sft(deepspeed=False), sft(precision="bf16")
    zero = {z: sft(workers=2, zero_stage=z) for z in (0, 1)}
    # transformers' default optimizer on torch >= 2.8 is the fused AdamW; foreach is the one it replaced
    foreach, compiled = sft(trainer={"optim": "adamw_torch"}), sft(trainer={"torch_compile": True})
    rows = benchlib.tokenize_on_ray("sft", benchlib.chat_rows(args.rows), tok_dir, one)
    log(f"{len(rows)} packed rows of <= {MAX_LENGTH} tokens, {benchlib.parameters(model_dir):,} parameters")

    every = {
        "platform_1w": lambda: benchlib.run_platform(one, model_dir, tok_dir, rows, "trainer-1w"),
        "trl_plain_1t": lambda: benchlib.run_plain_trl_sft(one, model_dir, tok_dir, rows, "trainer-trl", 1,
                                                           platform_collator=True),
        "bare_torch_1t": lambda: bare_torch(model_dir, tok_dir, rows, args.steps, 1),
        "platform_2w": lambda: benchlib.run_platform(two, model_dir, tok_dir, rows, "trainer-2w"),
        "trl_plain_2t": lambda: benchlib.run_plain_trl_sft(one, model_dir, tok_dir, rows, "trainer-trl2", 2,
                                                           platform_collator=True),
        "platform_1w_deepspeed_off": lambda: benchlib.run_platform(no_ds, model_dir, tok_dir, rows, "trainer-1w-nods"),
        "trl_in_ray_train_worker": lambda: trl_in_ray_train_worker(one, model_dir, tok_dir, rows),
        "platform_1w_bf16": lambda: benchlib.run_platform(bf16, model_dir, tok_dir, rows, "trainer-1w-bf16"),
        "platform_2w_zero0": lambda: benchlib.run_platform(zero[0], model_dir, tok_dir, rows, "trainer-2w-z0"),
        "platform_2w_zero1": lambda: benchlib.run_platform(zero[1], model_dir, tok_dir, rows, "trainer-2w-z1"),
        "trl_plain_1t_bf16": lambda: benchlib.run_plain_trl_sft(bf16, model_dir, tok_dir, rows, "trainer-trl-bf16", 1,
                                                                platform_collator=True),
        "platform_1w_adamw_foreach": lambda: benchlib.run_platform(foreach, model_dir, tok_dir, rows,
                                                                   "trainer-1w-foreach"),
        "platform_1w_compile": lambda: benchlib.run_platform(compiled, model_dir, tok_dir, rows, "trainer-1w-compile"),
    }
    started = time.perf_counter()
    runs = benchlib.run_rounds({k: lambda rnd, k=k: every[k]() for k in args.variants.split(",")}, args.rounds)
    report(args, runs, model_dir, len(rows), time.perf_counter() - started)


def report(args, runs, model_dir, n_rows, seconds) -> None:
    tps = {k: med(r["tokens_per_s"] for r in v) for k, v in runs.items()}
    cps = {k: med(r.get("tokens_per_cpu_s") for r in v) for k, v in runs.items()}
    ratios, per_round_ratios = benchlib.paired_ratios(runs, (("tokens_per_s_vs_trl_plain", "platform_1w", "trl_plain_1t"),
                      ("tokens_per_s_vs_bare_torch", "platform_1w", "bare_torch_1t"),
                      ("trl_plain_vs_bare_torch", "trl_plain_1t", "bare_torch_1t"),
                      ("platform_2w_vs_trl_plain_1t", "platform_2w", "trl_plain_1t"),
                      ("platform_2w_vs_trl_plain_2t", "platform_2w", "trl_plain_2t"),
                      ("platform_2w_vs_platform_1w", "platform_2w", "platform_1w"),
                      ("platform_deepspeed_off_vs_trl_plain", "platform_1w_deepspeed_off", "trl_plain_1t"),
                      ("platform_deepspeed_on_vs_off", "platform_1w", "platform_1w_deepspeed_off"),
                      ("trl_in_ray_train_worker_vs_trl_plain", "trl_in_ray_train_worker", "trl_plain_1t"),
                      ("platform_bf16_vs_fp32", "platform_1w_bf16", "platform_1w"),
                      ("platform_2w_zero0_vs_zero2", "platform_2w_zero0", "platform_2w"),
                      ("platform_2w_zero1_vs_zero2", "platform_2w_zero1", "platform_2w"),
                      ("platform_bf16_vs_trl_plain_bf16", "platform_1w_bf16", "trl_plain_1t_bf16"),
                      ("trl_plain_bf16_vs_fp32", "trl_plain_1t_bf16", "trl_plain_1t"),
                      ("platform_vs_trl_in_ray_train_worker", "platform_1w", "trl_in_ray_train_worker"),
                      ("platform_fused_adamw_vs_foreach", "platform_1w", "platform_1w_adamw_foreach"),
                      ("platform_compile_vs_eager", "platform_1w_compile", "platform_1w")),
        cpu_key=lambda k: k.replace("tokens_per_s", "tokens_per_cpu_s") if "tokens_per_s" in k else k + "_per_cpu_s")
    startup = [r["startup"].get("to_first_step") for r in runs.get("platform_1w", []) if "startup" in r]
    result = {
        "name": args.name,
        "command": f"python bench/bench_trainer.py --steps {args.steps} --rounds {args.rounds} --rows {args.rows} "
                   f"--preset {args.preset} --variants {args.variants} --name {args.name} --niceness {args.niceness}",
        "machine": benchlib.MACHINE,
        "date": benchlib.DATE,
        "settings": {"preset": args.preset, "parameters": benchlib.parameters(model_dir), "max_length": MAX_LENGTH,
                     "per_device_train_batch_size": BATCH, "steps": args.steps, "precision": "fp32",
                     "packing": "bfd (platform Ray Data tokenizer), collate_packed_rows on every side", "packed_rows": n_rows,
                     "deepspeed": "ZeRO-2, torch AdamW (no DeepSpeed optimizer section)",
                     "niceness": args.niceness, "warmup_logs_dropped": 3, "logging_steps": 1, "rounds": args.rounds,
                     "bench_seconds": round(seconds, 1)},
        "metrics": {"tokens_per_s": tps.get("platform_1w"), "tokens_per_s_2_workers": tps.get("platform_2w"),
                    "tokens_per_cpu_s": cps.get("platform_1w"), "tokens_per_cpu_s_2_workers": cps.get("platform_2w"),
                    "worker_to_first_step_s": med(startup), "mfu": "not measured (no GPU)"},
        "baseline": {"name": "TRL SFTTrainer, plain one-process script, same settings, 1 torch thread",
                     "metrics": {"tokens_per_s": tps.get("trl_plain_1t"), "tokens_per_cpu_s": cps.get("trl_plain_1t")}},
        "baselines": {"bare_torch_1t": {"name": "bare PyTorch loop, AdamW, same batches, 1 torch thread",
                                        "metrics": {"tokens_per_s": tps.get("bare_torch_1t"),
                                                    "tokens_per_cpu_s": cps.get("bare_torch_1t")}},
                      "trl_plain_2t": {"name": "TRL SFTTrainer plain script, 2 torch threads",
                                       "metrics": {"tokens_per_s": tps.get("trl_plain_2t"),
                                                   "tokens_per_cpu_s": cps.get("trl_plain_2t")}}},
        "ratios": ratios,
        "ratios_per_round": per_round_ratios,
        "targets": {"tokens_per_s_vs_trl_plain": 0.95},
        "runs": runs,
    }
    benchlib.write_result(result, Path(args.out))
    rows = [(k, tps[k], ratio(tps[k], tps.get("trl_plain_1t")), cps[k], ratio(cps[k], cps.get("trl_plain_1t")),
             len(runs[k])) for k in runs]
    benchlib.print_table(rows, ("variant", "tokens/s (median)", "vs trl_plain_1t", "tokens/CPU-s", "vs trl_plain_1t",
                                "runs"))
    print()
    benchlib.print_table([(k, v, result["targets"].get(k, "")) for k, v in ratios.items()],
                         ("ratio (median of per-round)", "value", "target"))


if __name__ == "__main__":
    main()
