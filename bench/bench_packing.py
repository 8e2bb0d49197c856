"""Packed (BFD, padding-free) SFT against padded SFT on chat-like lengths: real (non-pad)
tokens/s, and held-out loss after one epoch of the same rows (the same real tokens).

    .venv/bin/python bench/bench_packing.py            # writes bench/results/packing_sft.json (~5 min)
    .venv/bin/python bench/bench_packing.py --quick    # 1 round, fewer rows (~2 min)

Rows are the long-tailed multi-turn chat mix of bench_tokenize (mean ~240 tokens, p95 ~680),
cut at max_length 512. Variants, interleaved per round:

  platform_packed      the SFT stage as configured: data.packing true -> BFD bins of 512 on Ray
                       Data (train/sft.py: tokenize_steps), each bin a row of the batch with
                       per-example position ids (data.tokenize.collate_packed_rows), fit_stage,
                       1 worker; data.packed_batch: examples with per_device_train_batch_size 8,
                       so each step holds 8 chat rows' worth of tokens, as the padded baseline
  platform_packed_varlen  platform_packed with model.attn_implementation sdpa_varlen: each micro-batch
                       joined into one padding-free sequence (TRL's collator), attention per example
                       (model/varlen.py; on CPU one SDPA call per example), no pad tail, no mask
  platform_packed_bins the same with the batch in rows: as many whole bins per step as hold about
                       8 rows' tokens (4), i.e. 7% fewer, larger steps per epoch
  platform_unpacked    the same stage with data.packing false (single_batch): one chat row per
                       batch row, padded to the longest of the batch
  trl_padded           the baseline: a plain TRL SFTTrainer, unpacked rows padded to the longest
                       of each batch, attention mask (padding_free false), one process
  trl_packed           the packed rows in the same plain TRL script: packing's own effect,
                       without the Ray / DeepSpeed difference
  trl_packed_rows      diagnostic: the same packed bins kept as a [bins, 512] batch (one bin per
                       row) with per-example position ids and no attention mask, so attention
                       is block-causal inside each 512-token row; TRL's padding-free collator
                       instead concatenates the whole batch into one 1 x (bins*512) sequence,
                       and SDPA on CPU (no varlen kernel) computes its full (bins*512)^2 scores

Every variant trains one epoch over the same rows with the same learning rate and about the
same real tokens per optimizer step: 8 chat rows per step unpacked; packed, that many rows'
tokens (platform_packed) or the whole number of bins closest to it (platform_packed_bins,
trl_*). Round r trains every variant with seed r: a round's held-out losses are paired (same
seed) and the rounds show how far data order alone moves them. Loss is measured on
held-out chat rows, one row at a time. Ray workers and the baseline process run at the same
OS priority; see bench_trainer.py for how tokens/s and tokens per CPU-second are taken.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
from benchlib import log, med  # noqa: E402

MAX_LENGTH, ROWS_PER_STEP = 512, 8
VARIANTS = ("platform_packed", "platform_packed_varlen", "platform_packed_bins", "platform_unpacked", "trl_padded", "trl_packed",
            "trl_packed_rows")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=240, help="chat rows trained on (one epoch)")
    p.add_argument("--heldout", type=int, default=60)
    benchlib.add_common_args(p, ",".join(VARIANTS), "packing_sft.json", quick="1 round, 120 rows", known=VARIANTS)
    args = p.parse_args()
    if args.quick:
        args.rows, args.rounds = 120, 1

    model_dir, tok_dir = benchlib.prepare(args)
    chat = benchlib.chat_rows(args.rows, seed=0)
    probe = benchlib.stage_config("sft", max_length=MAX_LENGTH, batch=ROWS_PER_STEP, steps=-1)
    packed_rows = benchlib.tokenize_on_ray("sft", chat, tok_dir, probe)
    unpacked_rows = benchlib.tokenize_on_ray("sft", chat, tok_dir, benchlib.stage_config(
        "sft", max_length=MAX_LENGTH, batch=ROWS_PER_STEP, steps=-1, packing=False))
    heldout = benchlib.tokenize_on_ray("sft", benchlib.chat_rows(args.heldout, seed=1), tok_dir,
                                       benchlib.stage_config("sft", max_length=MAX_LENGTH, batch=1, steps=-1,
                                                             packing=False))
    real = sum(len(r["input_ids"]) for r in unpacked_rows)
    assert real == sum(len(r["input_ids"]) for r in packed_rows), "packing must keep every token"
    mean_row = real / len(unpacked_rows)
    bins_per_step = max(1, round(ROWS_PER_STEP * mean_row / (real / len(packed_rows))))
    padded_positions = padded_share(unpacked_rows, ROWS_PER_STEP)
    log(f"{len(unpacked_rows)} rows, {real:,} real tokens (mean {mean_row:.0f}); {len(packed_rows)} packed bins "
        f"({real / (len(packed_rows) * MAX_LENGTH):.1%} full); {bins_per_step} bins per step")

    variants = {k: partial(run_variant, k, model_dir, tok_dir, packed_rows, unpacked_rows, bins_per_step)
                for k in args.variants.split(",")}

    def finish(name, run):  # round r trains with seed r: data order is part of what is compared
        run["heldout_loss"], run["seed"] = benchlib.heldout_loss(run["export_dir"], heldout), run["round"]

    started = time.perf_counter()
    runs = benchlib.run_rounds(variants, args.rounds, finish, describe=lambda run: (
        f"{run['tokens']} real tokens in {run['steps']} steps, held-out loss {run['heldout_loss']}"))
    stats = {"rows": len(unpacked_rows), "real_tokens": real, "mean_row_tokens": round(mean_row, 1),
             "packed_bins": len(packed_rows), "packed_real_share": round(real / (len(packed_rows) * MAX_LENGTH), 4),
             "padded_real_share_batch_of_8": round(padded_positions, 4), "bins_per_step": bins_per_step}
    report(args, runs, stats, model_dir, time.perf_counter() - started)


def run_variant(name: str, model_dir: str, tok_dir: str, packed_rows: list, unpacked_rows: list, bins_per_step: int,
                seed: int) -> dict:
    sft = partial(benchlib.stage_config, "sft", max_length=MAX_LENGTH, steps=-1, trainer={"seed": seed})
    # the padded recipe's batch, packed: 8 chat rows' worth of tokens per step (data/batching.py)
    by_examples = sft(batch=ROWS_PER_STEP, data={"packed_batch": "examples"})
    packed, unpacked = sft(batch=bins_per_step), sft(batch=ROWS_PER_STEP, packing=False)
    export = str(benchlib.WORK / "packing-exports" / name)
    if name == "platform_packed":
        return benchlib.run_platform(by_examples, model_dir, tok_dir, packed_rows, "packing-packed")
    if name == "platform_packed_varlen":
        return benchlib.run_platform(by_examples, model_dir, tok_dir, packed_rows, "packing-packed-varlen",
                                     attn="sdpa_varlen")
    if name == "platform_packed_bins":
        return benchlib.run_platform(packed, model_dir, tok_dir, packed_rows, "packing-packed-bins")
    if name == "platform_unpacked":
        return benchlib.run_platform(unpacked, model_dir, tok_dir, unpacked_rows, "packing-unpacked")
    if name == "trl_padded":
        rows = [{k: r[k] for k in ("input_ids", "labels")} for r in unpacked_rows]
        return benchlib.run_plain_trl_sft(unpacked, model_dir, tok_dir, rows, "packing-trl-padded", 1, export=export,
                                          padding_free=False)
    if name == "trl_packed":
        return benchlib.run_plain_trl_sft(packed, model_dir, tok_dir, packed_rows, "packing-trl-packed", 1,
                                          export=export)
    return benchlib.run_plain_trl_sft(packed, model_dir, tok_dir, packed_rows, "packing-trl-packed-rows", 1,
                                      export=export, platform_collator=True)


def padded_share(rows: list[dict], batch: int) -> float:
    """Real tokens / computed positions when batches of `batch` rows (in order) pad to their longest."""
    lengths = [len(r["input_ids"]) for r in rows]
    computed = sum(max(lengths[i:i + batch]) * len(lengths[i:i + batch]) for i in range(0, len(lengths), batch))
    return sum(lengths) / computed


def report(args, runs, stats, model_dir, seconds) -> None:
    tps = {k: med(r["tokens_per_s"] for r in v) for k, v in runs.items()}
    cps = {k: med(r.get("tokens_per_cpu_s") for r in v) for k, v in runs.items()}
    loss = {k: round(statistics.mean(r["heldout_loss"] for r in v), 4) for k, v in runs.items()}  # over seeds
    common = min(len(r["loss"]) for v in runs.values() for r in v)  # steps every variant took
    train_loss = {k: round(statistics.median(statistics.mean(r["loss"][common - 8:common]) for r in v), 4)
                  for k, v in runs.items()}
    ratios, raw = benchlib.paired_ratios(runs, (
                      ("real_tokens_per_s_vs_padded", "platform_packed", "trl_padded"),
                      ("trl_packed_vs_trl_padded", "trl_packed", "trl_padded"),
                      ("platform_unpacked_vs_trl_padded", "platform_unpacked", "trl_padded"),
                      ("platform_packed_vs_platform_unpacked", "platform_packed", "platform_unpacked"),
                      ("platform_packed_bins_vs_trl_padded", "platform_packed_bins", "trl_padded"),
                      ("platform_packed_vs_trl_packed", "platform_packed", "trl_packed"),
                      ("varlen_vs_packed_rows", "platform_packed_varlen", "platform_packed"),
                      ("varlen_vs_trl_padded", "platform_packed_varlen", "trl_padded"),
                      ("trl_packed_rows_vs_trl_padded", "trl_packed_rows", "trl_padded"),
                      ("trl_packed_rows_vs_trl_packed", "trl_packed_rows", "trl_packed")),
                                         cpu_key=lambda k: k + "_per_cpu_s")
    for key, a in (("heldout_loss_vs_padded", "platform_packed"),
                   ("heldout_loss_bins_vs_padded", "platform_packed_bins")):
        if a in loss and "trl_padded" in loss:
            ratios[key] = round(loss[a] / loss["trl_padded"], 4)
            raw[key] = [round(x["heldout_loss"] / y["heldout_loss"], 4) for x, y in zip(runs[a], runs["trl_padded"])]
    result = {
        "name": "packing_sft",
        "command": f"python bench/bench_packing.py --rows {args.rows} --heldout {args.heldout} --rounds {args.rounds} "
                   f"--preset {args.preset} --variants {args.variants} --niceness {args.niceness}",
        "machine": benchlib.MACHINE,
        "date": benchlib.DATE,
        "settings": {"preset": args.preset, "parameters": benchlib.parameters(model_dir), "max_length": MAX_LENGTH,
                     "rows_per_step_unpacked": ROWS_PER_STEP, "epochs": 1, "precision": "fp32",
                     "learning_rate": 1e-3, "lr_scheduler_type": "constant", "niceness": args.niceness,
                     "rounds": args.rounds, "bench_seconds": round(seconds, 1), **stats},
        "metrics": {"real_tokens_per_s": tps.get("platform_packed"),
                    "real_tokens_per_cpu_s": cps.get("platform_packed"),
                    "heldout_loss": loss.get("platform_packed")},
        "baseline": {"name": "TRL SFTTrainer plain script, unpacked rows padded to the longest per batch of 8",
                     "metrics": {"real_tokens_per_s": tps.get("trl_padded"),
                                 "real_tokens_per_cpu_s": cps.get("trl_padded"),
                                 "heldout_loss": loss.get("trl_padded")}},
        "baselines": {k: {"metrics": {"real_tokens_per_s": tps[k], "real_tokens_per_cpu_s": cps[k],
                                      "heldout_loss": loss[k],
                                      f"train_loss_mean_steps_{common - 7}_{common}": train_loss[k]}} for k in runs},
        "ratios": ratios,
        "ratios_per_round": raw,
        "targets": {"real_tokens_per_s_vs_padded": 1.5, "heldout_loss_vs_padded": 1.0},
        "runs": runs,
    }
    benchlib.write_result(result, Path(args.out))
    benchlib.print_table([(k, tps[k], cps[k], loss[k], train_loss[k], runs[k][0]["steps"], runs[k][0]["tokens"],
                           len(runs[k])) for k in runs],
                         ("variant", "real tokens/s", "real tokens/CPU-s", "held-out loss",
                          f"train loss steps {common - 7}-{common}", "steps", "tokens", "runs"))
    print()
    benchlib.print_table([(k, v, result["targets"].get(k, "")) for k, v in ratios.items()],
                         ("ratio", "value", "target"))


if __name__ == "__main__":
    main()
