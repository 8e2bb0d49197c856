"""GPU throughput and MFU: SmolLM2-135M-shaped SFT at max_length 2048, packed, bf16.

    .venv/bin/python bench/bench_gpu.py            # on a CUDA machine: writes bench/results/gpu_sft.json
    .venv/bin/python bench/bench_gpu.py --smoke    # CPU, micro preset, a few steps: checks the script

Issue 8, item 3. The model is the `smollm2-135m-shape` preset (SmolLM2-135M's layers) with
its 49,152-row tied embedding, initialised from scratch (no hub here): 134.5M parameters,
the LM head's cost included. Rows are the long-tailed chat mix of the other benchmarks
(mean ~230 tokens), BFD-packed into 2048-token bins by the SFT stage's own tokenizer.
Attention: padding-free, one varlen sequence per micro-batch, through flash_attention_2 when
the flash-attn package imports, else `sdpa_varlen` (PyTorch's own varlen flash kernel,
model/varlen.py); platform_sft_rows keeps each bin a row with a block-causal SDPA mask.

Variants, one Ray Train worker on one GPU, DeepSpeed ZeRO-2 unless named, bf16:

  platform_sft         the SFT stage (fit_stage): tokens/s per GPU, and the MFU it logs in both
                       conventions (6N, and 6N + 12*L*d*S with attention; model/flops.py)
  trl_plain_sft        the same TRL SFTTrainer as a plain one-process script on the same GPU
  platform_sft_rows    the stage with attn_implementation sdpa: packed bins as rows, block-causal
                       mask, no varlen kernel: what padding-free attention buys
  platform_sft_zero0   the stage at ZeRO-0 / ZeRO-1: the ZeRO choice for 135M
  platform_sft_zero1
  platform_sft_checkpointing   the stage with activation checkpointing: what recomputing costs, for
                       configs that keep it on to fit 24 GB GPUs (trlm-135m.yaml)
  platform_dpo         the DPO stage (apo_zero, precompute_ref_log_probs) at the same max_length,
                       chosen + rejected tokens counted: the >= 0.65x of SFT target

Targets on an H100: SFT >= 200k tokens/s per GPU (~25% MFU), stretch 300k; DPO >= 0.65x SFT.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
from benchlib import log, med  # noqa: E402

VARIANTS = ("platform_sft", "trl_plain_sft", "platform_sft_rows", "platform_sft_zero0", "platform_sft_zero1", "platform_sft_checkpointing",
            "platform_dpo")
SMOLLM2_VOCAB = 49152


def attention() -> str:
    import importlib.util

    return "flash_attention_2" if importlib.util.find_spec("flash_attn") else "sdpa_varlen"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--bins", type=int, default=16, help="packed 2048-token bins per step (per_device_train_batch_size)")
    p.add_argument("--max-length", type=int, default=2048)
    p.add_argument("--smoke", action="store_true", help="CPU, micro preset, 256 tokens, 6 steps: the script runs")
    benchlib.add_common_args(p, ",".join(VARIANTS), "gpu_sft.json", quick="1 round, 30 steps", known=VARIANTS)
    args = p.parse_args()
    import torch

    gpu = torch.cuda.is_available()
    if args.smoke:
        args.preset, args.max_length, args.steps, args.bins, args.rounds = "micro", 256, 6, 2, 1
    elif not gpu:
        sys.exit("bench_gpu.py measures a GPU and none is visible; --smoke checks the script on CPU")
    elif args.quick:
        args.steps, args.rounds = 30, 1
    if not args.smoke and args.preset == "tiny":
        args.preset = "smollm2-135m-shape"

    benchlib.set_niceness(args.niceness)
    model_dir, tok_dir = benchlib.make_base(args.preset, model_vocab=None if args.smoke else SMOLLM2_VOCAB)
    benchlib.init_ray(num_cpus=os.cpu_count() if gpu else 2)
    args.gpu, attn = gpu, (attention() if gpu else "sdpa_varlen")  # on CPU: its per-example path
    stage = partial(benchlib.stage_config, max_length=args.max_length, steps=args.steps, logging_steps=5,
                    precision="bf16" if gpu else "fp32", use_gpu=gpu)
    sft = partial(stage, "sft", batch=args.bins)
    dpo = partial(stage, "dpo", trainer={"beta": 0.1, "loss_type": "apo_zero", "learning_rate": 1e-5,
                                         "precompute_ref_log_probs": True},
                  data={"max_prompt_length": args.max_length // 2})
    rows, pairs, dpo_batch = data(args, tok_dir, sft(), dpo(batch=1))
    dpo_stage = dpo(batch=dpo_batch)
    def platform(name, stage, data=rows, attn=attn):  # one stage run through fit_stage, in its own run dir
        return lambda: benchlib.run_platform(stage, model_dir, tok_dir, data, RUN_DIRS[name], attn)

    every = {
        "platform_sft": platform("platform_sft", sft()),
        "trl_plain_sft": lambda: benchlib.run_plain_trl_sft(sft(), model_dir, tok_dir, rows, "gpu-trl", 1, attn=attn,
                                                            **plain_collation(attn)),
        "platform_sft_rows": platform("platform_sft_rows", sft(), attn="sdpa"),
        "platform_sft_zero0": platform("platform_sft_zero0", sft(zero_stage=0)),
        "platform_sft_zero1": platform("platform_sft_zero1", sft(zero_stage=1)),
        "platform_sft_checkpointing": platform("platform_sft_checkpointing",
                                               sft(trainer={"activation_checkpointing": True})),
        "platform_dpo": platform("platform_dpo", dpo_stage, data=pairs),
    }

    def finish(name, run):  # the MFU the stage logged (model/flops.py), read before the next round
        if name in RUN_DIRS:
            from tinyreason.outputs import METRICS, read_jsonl

            run["mfu"] = mfu_of(read_jsonl(benchlib.WORK / "runs" / RUN_DIRS[name] / METRICS))

    started = time.perf_counter()
    runs = benchlib.run_rounds({k: lambda rnd, k=k: every[k]() for k in args.variants.split(",")}, args.rounds,
                               finish, describe=lambda run: f"MFU {run.get('mfu')}")
    report(args, runs, model_dir, attn, {"packed_bins": len(rows), "dpo_pairs_per_step": dpo_batch},
           time.perf_counter() - started)


RUN_DIRS = {"platform_sft": "gpu-sft", "platform_sft_rows": "gpu-rows", "platform_sft_zero0": "gpu-z0", "platform_sft_zero1": "gpu-z1",
            "platform_sft_checkpointing": "gpu-ckpt", "platform_dpo": "gpu-dpo"}


def data(args, tok_dir: str, sft_stage, dpo_probe) -> tuple[list, list, int]:
    """Packed SFT bins for every step of one epoch, and DPO pairs: as many per step as hold
    about the tokens of one SFT step, so both sides run equally full batches."""
    from tinyreason.data import synthetic

    need = args.steps * args.bins
    rows = benchlib.tokenize_on_ray("sft", benchlib.chat_rows(int(need * args.max_length / 200) + 64), tok_dir,
                                    sft_stage)[:need]
    if len(rows) < need:
        sys.exit(f"only {len(rows)} bins for {args.steps} steps of {args.bins}; lower --steps")
    step_tokens = sum(len(r["input_ids"]) for r in rows) / args.steps
    probe = benchlib.tokenize_on_ray("dpo", synthetic.preference_rows(512, 1), tok_dir, dpo_probe)
    pair_tokens = statistics.mean(2 * len(r["prompt_ids"]) + len(r["chosen_ids"]) + len(r["rejected_ids"])
                                  for r in probe)
    batch = max(1, round(step_tokens / pair_tokens))
    pairs = benchlib.tokenize_on_ray("dpo", synthetic.preference_rows(args.steps * batch + 64, 0), tok_dir,
                                     dpo_probe)[: args.steps * batch]
    log(f"{len(rows)} packed bins ({step_tokens / (args.bins * args.max_length):.1%} full), {len(pairs)} preference "
        f"pairs of {pair_tokens:.0f} tokens, {batch} per step")
    return rows, pairs, batch


def plain_collation(attn: str) -> dict:
    """The stage's batching for the plain script: padding-free with a varlen kernel, else
    the packed bins as rows (train/sft.py)."""
    from tinyreason.model.varlen import is_varlen

    return {} if is_varlen(attn) else {"platform_collator": True}


def varlen_kernel(gpu: bool) -> str:
    from tinyreason.model import varlen

    return "torch.nn.attention.varlen" if gpu and varlen._torch_varlen() else "SDPA per example"


def mfu_of(run_dir_metrics: list[dict]) -> dict:
    keys = ("mfu_6n", "mfu_6n_attn")
    logs = [m for m in run_dir_metrics if all(k in m for k in keys)][3:]
    return {k: round(statistics.median(m[k] for m in logs), 4) for k in keys} if logs else {}


def report(args, runs, model_dir, attn, stats, seconds) -> None:
    tps = {k: med(r["tokens_per_s"] for r in v) for k, v in runs.items()}
    mfu = {k: {m: med(r["mfu"].get(m) for r in v) for m in ("mfu_6n", "mfu_6n_attn")} for k, v in runs.items()
           if all("mfu" in r for r in v)}
    ratios, raw = benchlib.paired_ratios(runs, (
                      ("tokens_per_s_vs_trl_plain", "platform_sft", "trl_plain_sft"),
                      ("varlen_vs_rows", "platform_sft", "platform_sft_rows"),
                      ("dpo_vs_sft_tokens_per_s", "platform_dpo", "platform_sft"),
                      ("zero0_vs_zero2", "platform_sft_zero0", "platform_sft"),
                      ("zero1_vs_zero2", "platform_sft_zero1", "platform_sft"),
                      ("checkpointing_vs_none", "platform_sft_checkpointing", "platform_sft")))
    result = {
        "name": "gpu_sft",
        "command": f"python bench/bench_gpu.py --steps {args.steps} --bins {args.bins} --max-length {args.max_length} "
                   f"--rounds {args.rounds} --preset {args.preset} --variants {args.variants}"
                   + (" --smoke" if args.smoke else ""),
        "machine": benchlib.machine(),
        "date": benchlib.DATE,
        "settings": {"preset": args.preset, "parameters": benchlib.parameters(model_dir), "max_length": args.max_length,
                     "bins_per_step": args.bins, "steps": args.steps, "attn_implementation": attn,
                     "sdpa_varlen_kernel": varlen_kernel(args.gpu),
                     "precision": "bf16" if args.gpu else "fp32", "rounds": args.rounds,
                     "bench_seconds": round(seconds, 1), "smoke": args.smoke, **stats},
        "metrics": {"tokens_per_s_per_gpu": tps.get("platform_sft"), **mfu.get("platform_sft", {}),
                    "dpo_tokens_per_s": tps.get("platform_dpo")},
        "baseline": {"name": "TRL SFTTrainer, plain one-process script, same device and settings",
                     "metrics": {"tokens_per_s": tps.get("trl_plain_sft")}},
        "baselines": {k: {"metrics": {"tokens_per_s": tps[k], **mfu.get(k, {})}} for k in runs},
        "ratios": ratios,
        "ratios_per_round": raw,
        "targets": {"tokens_per_s_per_gpu": 200_000, "mfu_6n_attn": 0.25, "dpo_vs_sft_tokens_per_s": 0.65},
        "runs": runs,
    }
    benchlib.write_result(result, Path(args.out))
    benchlib.print_table([(k, tps[k], mfu.get(k, {}).get("mfu_6n"), mfu.get(k, {}).get("mfu_6n_attn"), len(runs[k]))
                          for k in runs], ("variant", "tokens/s", "MFU 6N", "MFU 6N+attn", "runs"))
    print()
    benchlib.print_table([(k, v, result["targets"].get(k, "")) for k, v in ratios.items()], ("ratio", "value", "target"))


if __name__ == "__main__":
    main()
