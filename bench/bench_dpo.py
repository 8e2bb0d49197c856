"""DPO stage throughput against SFT at the same max_length, with and without precomputed
reference log-probs, and what a DPO sweep saves by computing them once for all trials.

    .venv/bin/python bench/bench_dpo.py            # writes bench/results/dpo.json (~6 min)
    .venv/bin/python bench/bench_dpo.py --quick    # 1 round, 10 steps (~3 min)

Every variant is the platform's own stage through launch.fit_stage on a real local Ray
(1 worker, DeepSpeed ZeRO-2, fp32), `tiny` preset, max_length 256, 8 rows (DPO: 8 pairs)
per step, one epoch of `--steps` steps, interleaved per round:

  sft                  SFT on BFD-packed chat rows (train/sft.py), the reference throughput
  dpo_ref_model        train/dpo.py with a frozen reference model: one extra forward per step
  dpo_precompute       precompute_ref_log_probs: TRL runs the reference pass over the shard
                       inside the trial, before step 1 (DPOTrainer.__init__)
  dpo_shared_cache     rows arrive with ref_chosen_logps / ref_rejected_logps, as a sweep's
                       reference cache hands them to every trial (tune/sweep.py:
                       reference_cache); PretokenizedDPOTrainer skips TRL's pass
  ref_pass             the cache's own reference pass: dpo.reference_logps as a 1-CPU Ray task,
                       as reference_cache launches it

DPO tokens are the trainer's non-padding count: prompt+chosen and prompt+rejected, both
sequences the model runs. The sweep saving is computed from the measured costs: a sweep
of K trials without the cache runs K x dpo_precompute; with it, one ref_pass plus
K x dpo_shared_cache (tokenizing, writing and reading the cache's parquet and evaluating
trials are the same on both sides and left out).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
from benchlib import log, med, ratio  # noqa: E402

MAX_LENGTH, MAX_PROMPT, BATCH = 256, 128, 8
VARIANTS = ("sft", "dpo_ref_model", "dpo_precompute", "dpo_shared_cache", "ref_pass")


def dpo_stage(steps: int, precompute: bool):
    trainer = {"beta": 0.1, "loss_type": "apo_zero", "max_grad_norm": 0.2, "learning_rate": 1e-5}
    if precompute:
        trainer["precompute_ref_log_probs"] = True
    return benchlib.stage_config("dpo", max_length=MAX_LENGTH, batch=BATCH, steps=steps, trainer=trainer,
                                 data={"max_prompt_length": MAX_PROMPT})


def ref_pass(model_dir: str, pad: int, rows: list[dict]) -> tuple[dict, list]:
    """The sweep cache's reference pass, launched as reference_cache launches it."""
    import ray

    from tinyreason.train import dpo

    t0 = time.perf_counter()
    # max_calls=1: a fresh worker process each time, so the pass pays its imports and
    # model load as a sweep's first reference pass does (the conservative side)
    task = ray.remote(num_cpus=1, max_calls=1)(dpo.reference_logps)
    logps = ray.get(task.remote(model_dir, rows, pad, MAX_LENGTH, 16, False))
    return {"wall_s": round(time.perf_counter() - t0, 2), "pairs": len(rows)}, logps


def check_against_trl(model_dir: str, tok_dir: str, rows: list[dict], logps: list, stage) -> float:
    """Max |shared cache - TRL's own precompute| over the first 32 pairs: the cache must
    hand trials the numbers TRL would have computed."""
    import datasets
    from transformers import AutoTokenizer
    from trl import DPOConfig

    from tinyreason.train import dpo

    sample = rows[:32]
    args = DPOConfig(output_dir=str(benchlib.WORK / "runs" / "dpo-check"), use_cpu=True, report_to=[],
                     precompute_ref_log_probs=True, per_device_train_batch_size=BATCH, max_length=MAX_LENGTH,
                     beta=0.1, loss_type="apo_zero", remove_unused_columns=False, disable_tqdm=True,
                     bf16=False)  # TRL defaults to bf16 autocast even on CPU; the cache is computed in fp32
    ds = datasets.Dataset.from_dict({k: [r[k] for r in sample] for k in ("prompt_ids", "chosen_ids", "rejected_ids")})
    trainer = dpo.trainer_class()(model=benchlib.load_model(model_dir), args=args, train_dataset=ds,
                                  processing_class=AutoTokenizer.from_pretrained(tok_dir))
    ours = [c for pair in logps[:32] for c in pair]
    theirs = [c for pair in zip(trainer.train_dataset["ref_chosen_logps"], trainer.train_dataset["ref_rejected_logps"])
              for c in pair]
    return round(max(abs(a - b) for a, b in zip(ours, theirs)), 5)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=16)
    benchlib.add_common_args(p, ",".join(VARIANTS), "dpo.json", quick="1 round of 10 steps", known=VARIANTS)
    args = p.parse_args()
    if args.quick:
        args.steps, args.rounds = 10, 1

    model_dir, tok_dir = benchlib.prepare(args)
    from transformers import AutoTokenizer

    from tinyreason.data import synthetic

    pad = AutoTokenizer.from_pretrained(tok_dir).pad_token_id
    sft = benchlib.stage_config("sft", max_length=MAX_LENGTH, batch=BATCH, steps=args.steps)
    sft_rows = benchlib.tokenize_on_ray("sft", benchlib.chat_rows(1200), tok_dir, sft)
    with_ref, no_ref = dpo_stage(args.steps, False), dpo_stage(args.steps, True)
    # one epoch is exactly `steps` steps, so TRL's in-trial pass covers what the trial trains on
    pairs = benchlib.tokenize_on_ray("dpo", synthetic.preference_rows(args.steps * BATCH + 8, 0), tok_dir,
                                     with_ref)[: args.steps * BATCH]
    pairs = [{k: r[k] for k in ("prompt_ids", "chosen_ids", "rejected_ids")} for r in pairs]
    lengths = [2 * len(r["prompt_ids"]) + len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in pairs]
    log(f"{len(pairs)} pairs, mean {statistics.mean(lengths):.0f} tokens per pair (both sequences); "
        f"{len(sft_rows)} packed SFT rows")
    _, cache = ref_pass(model_dir, pad, pairs)
    cached = [{**r, "ref_chosen_logps": c, "ref_rejected_logps": j} for r, (c, j) in zip(pairs, cache)]
    check = check_against_trl(model_dir, tok_dir, pairs, cache, no_ref)
    log(f"shared cache vs TRL's own precompute: max |diff| {check}")

    every = {
        "sft": lambda: benchlib.run_platform(sft, model_dir, tok_dir, sft_rows, "dpo-sft"),
        "dpo_ref_model": lambda: benchlib.run_platform(with_ref, model_dir, tok_dir, pairs, "dpo-ref"),
        "dpo_precompute": lambda: benchlib.run_platform(no_ref, model_dir, tok_dir, pairs, "dpo-pre"),
        "dpo_shared_cache": lambda: benchlib.run_platform(no_ref, model_dir, tok_dir, cached, "dpo-cache"),
        "ref_pass": lambda: ref_pass(model_dir, pad, pairs)[0],
    }
    started = time.perf_counter()
    runs = benchlib.run_rounds({k: lambda rnd, k=k: every[k]() for k in args.variants.split(",")}, args.rounds,
                               describe=lambda run: f"trainer_setup {run.get('startup', {}).get('trainer_setup')} s")
    report(args, runs, check, statistics.mean(lengths), model_dir, time.perf_counter() - started)


def sweep_saving(runs, k: int) -> dict:
    trial_pre = med(r["wall_s"] for r in runs["dpo_precompute"])
    trial_cached = med(r["wall_s"] for r in runs["dpo_shared_cache"])
    ref = med(r["wall_s"] for r in runs["ref_pass"])
    without, with_cache = k * trial_pre, ref + k * trial_cached
    return {"trials": k, "without_cache_s": round(without, 1), "with_cache_s": round(with_cache, 1),
            "saved_s": round(without - with_cache, 1), "saved_fraction": round((without - with_cache) / without, 3)}


def report(args, runs, check, pair_tokens, model_dir, seconds) -> None:
    tps = {k: med(r.get("tokens_per_s") for r in v) for k, v in runs.items()}
    cps = {k: med(r.get("tokens_per_cpu_s") for r in v) for k, v in runs.items()}
    setup = {k: med(r.get("startup", {}).get("trainer_setup") for r in v) for k, v in runs.items()}
    wall = {k: med(r["wall_s"] for r in v) for k, v in runs.items()}
    pairs = (("dpo_ref_model_vs_sft", "dpo_ref_model", "sft"),
             ("dpo_precompute_vs_sft", "dpo_precompute", "sft"),
             ("dpo_shared_cache_vs_sft", "dpo_shared_cache", "sft"),
             ("dpo_precompute_vs_dpo_ref_model", "dpo_precompute", "dpo_ref_model"),
             ("dpo_shared_cache_vs_dpo_precompute", "dpo_shared_cache", "dpo_precompute"))
    ratios, raw = benchlib.paired_ratios(runs, [(f"tokens_per_s_{key}", a, b) for key, a, b in pairs],
                                         cpu_key=lambda k: k.replace("tokens_per_s_", "tokens_per_cpu_s_", 1))
    sweep = {}
    if all(k in runs for k in ("dpo_precompute", "dpo_shared_cache", "ref_pass")):
        sweep = {f"k{k}": sweep_saving(runs, k) for k in (3, 8)}
        in_trial = [x["startup"]["trainer_setup"] - y["startup"]["trainer_setup"]
                    for x, y in zip(runs["dpo_precompute"], runs["dpo_shared_cache"])
                    if "startup" in x and "startup" in y]
        sweep["in_trial_reference_pass_s"] = med(in_trial)
        sweep["ref_pass_s"] = wall["ref_pass"]
        sweep["trial_s"] = {"dpo_precompute": wall["dpo_precompute"], "dpo_shared_cache": wall["dpo_shared_cache"],
                            "dpo_ref_model": wall.get("dpo_ref_model")}
        ratios["sweep_saved_fraction_k3"] = sweep["k3"]["saved_fraction"]
        ratios["sweep_saved_fraction_k8"] = sweep["k8"]["saved_fraction"]
    result = {
        "name": "dpo",
        "command": f"python bench/bench_dpo.py --steps {args.steps} --rounds {args.rounds} --preset {args.preset} "
                   f"--variants {args.variants} --niceness {args.niceness}",
        "machine": benchlib.MACHINE,
        "date": benchlib.DATE,
        "settings": {"preset": args.preset, "parameters": benchlib.parameters(model_dir), "max_length": MAX_LENGTH,
                     "max_prompt_length": MAX_PROMPT, "per_device_train_batch_size": BATCH, "steps": args.steps,
                     "pairs": args.steps * BATCH, "mean_tokens_per_pair": round(pair_tokens, 1),
                     "loss_type": "apo_zero", "beta": 0.1, "deepspeed": "ZeRO-2", "precision": "fp32",
                     "niceness": args.niceness, "rounds": args.rounds, "bench_seconds": round(seconds, 1)},
        "metrics": {"tokens_per_s": tps.get("dpo_ref_model"), "tokens_per_s_precompute": tps.get("dpo_precompute"),
                    "tokens_per_s_shared_cache": tps.get("dpo_shared_cache"),
                    "tokens_per_cpu_s": cps.get("dpo_ref_model"), "trainer_setup_s": setup,
                    "shared_cache_max_abs_diff_vs_trl_precompute": check},
        "baseline": {"name": "the platform's SFT stage, BFD-packed chat rows, same max_length and batch",
                     "metrics": {"tokens_per_s": tps.get("sft"), "tokens_per_cpu_s": cps.get("sft")}},
        "ratios": ratios,
        "ratios_per_round": raw,
        "sweep": sweep,
        "targets": {},
        "runs": runs,
    }
    benchlib.write_result(result, Path(args.out))
    benchlib.print_table([(k, tps[k], ratio(tps[k], tps.get("sft")), cps[k], setup[k], wall[k], len(runs[k]))
                          for k in runs],
                         ("variant", "tokens/s", "vs sft", "tokens/CPU-s", "trainer_setup s", "wall s", "runs"))
    print()
    benchlib.print_table([(k, v) for k, v in ratios.items()], ("ratio", "value"))
    for k in ("k3", "k8"):
        if k in sweep:
            s = sweep[k]
            print(f"sweep of {s['trials']} trials: {s['without_cache_s']} s without the shared cache, "
                  f"{s['with_cache_s']} s with it: {s['saved_s']} s ({s['saved_fraction']:.1%}) saved")


if __name__ == "__main__":
    main()
