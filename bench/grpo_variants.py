"""GRPO variants from one DPO parent: what each changed, and what it did to held-out accuracy.

    python jobs/curriculum.py --set storage.path=/tmp/demo/s0 --set stages.grpo.trainer.max_steps=300
    ...  (one run per variant: the pretrain..dpo stages are reused, only the grpo stage trains)
    python bench/grpo_variants.py /tmp/demo/s0/stages/03-dpo-* /tmp/demo/s0/stages/04-grpo-*
    python bench/grpo_variants.py --kind dpo /tmp/demo/s0/stages/02-reasoning-* /tmp/demo/s0/stages/03-dpo-*

Reads each stage's own record (manifest.json: its settings, rewards and train time;
eval-*.json: held-out accuracy in the training and the held-out wordings, per task family, and
with `--samples K` the evaluation that drew K answers per problem, its pass@K and standard error,
and each variant's gain over its parent with the standard error of that paired difference;
metrics.jsonl: the correctness reward and the policy's entropy over the first and last fifth of
its steps) and writes bench/results/grpo_variants.json, each variant beside its parent, with
its data sources and LoRA section. `--kind dpo` reads DPO variants beside their <think> SFT parent.
The figures are the runs' own; the one derived figure is the share of the evaluation's written
steps that are true (`claims.arithmetic_claims` on the samples' <think> blocks), per kind of step.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path
from statistics import mean

from tinyreason.answers import split_thinking
from tinyreason import rewards
from tinyreason.claims import arithmetic_claims
from tinyreason.stats import mean_se

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "grpo_variants.json"
KNOBS = {"grpo": ("learning_rate", "max_steps", "per_device_train_batch_size", "num_generations", "temperature",
                  "top_p", "beta", "scale_rewards", "num_iterations", "top_entropy_quantile", "optim", "adam_epsilon"),
         "dpo": ("learning_rate", "num_train_epochs", "per_device_train_batch_size", "beta", "loss_type",
                 "loss_weights")}
TARGETS = {"grpo": "GRPO over its DPO parent >= +0.05 held-out accuracy",
           "dpo": "DPO adds held-out accuracy over its <think> SFT parent"}


def stage_eval(stage: Path, heldout: int, samples: int = 1) -> dict:
    """The stage's evaluation on `heldout` problems per wording, `samples` draws each (a stage dir
    can hold several evaluations: each setting of the evaluation is its own eval-*.json). Only a
    sampled one: every figure of these records is the demo's sampled score, and a greedy
    evaluation of the same stage (bench/sharpening.py's kind) would otherwise match."""
    for path in sorted(stage.glob("eval-*.json")):
        result = json.loads(path.read_text())
        greedy = result.get("settings", {}).get("decoding", {}).get("do_sample") is False
        if result.get("n") == heldout and result.get("draws", 1) == samples and not greedy:
            return result
    raise SystemExit(f"{stage}: no evaluation on {heldout} held-out problems with {samples} draws each "
                     f"(eval-*.json); run the curriculum again with evaluation.heldout_problems={heldout} and "
                     f"evaluation.heldout_samples={samples} (the stage is reused), or pass --heldout / --samples")


def paired_se(parent: dict, variant: dict, samples: int) -> float | None:
    """The standard error of a variant's gain over its parent on the same problems, from each
    problem's share of right draws in both (`right_of_k`): the problems' own difficulty cancels,
    so it is far below either accuracy's error. None for one draw per problem (no shares)."""
    if samples < 2:
        return None
    before = {s["id"]: s["right_of_k"] for s in parent["samples"]}
    gains = [(s["right_of_k"] - before[s["id"]]) / samples for s in variant["samples"] if s["id"] in before]
    return round(mean_se(gains), 4) if len(gains) > 1 else None


def _fifths(stage: Path, answer_reward: str = "correctness") -> dict:
    """The answer reward's mean and the entropy over the first and last fifth of the logged steps.
    The answer reward is the stage's first (a screen may replace `correctness` with its own, by
    another name); the fields keep the name `correctness_*` so that every record reads alike."""
    key = f"rewards/{answer_reward}/mean"
    logs = [json.loads(line) for line in (stage / "metrics.jsonl").read_text().splitlines() if line.strip()]
    logs = [d for d in logs if key in d]
    k = max(1, len(logs) // 5)
    first, last = logs[:k], logs[-k:]
    return {f"{name}_{part}": round(mean(d[logged] for d in rows), 4)
            for name, logged in (("correctness", key), ("entropy", "entropy"))
            for part, rows in (("first_fifth", first), ("last_fifth", last))}


def step_truth(samples: list[dict]) -> dict:
    """The share of the steps written in the samples' <think> blocks that are true, per kind:
    `a + n = b` (add/take), `max(a, b) = c` (fold), `a > b` (compare). A chain breaks at its
    weakest kind of step; None where no sample wrote one."""
    counts = {"add_take": [0, 0], "fold": [0, 0], "compare": [0, 0]}
    for s in samples:
        for claim, true, _ in arithmetic_claims(split_thinking(s["output"]).thinking or ""):
            kind = "fold" if claim.startswith(("max", "min")) else "add_take" if "=" in claim else "compare"
            counts[kind][0] += true
            counts[kind][1] += 1
    return {k: round(t / n, 4) if n else None for k, (t, n) in counts.items()}


def stage_figures(stage: Path, heldout: int, samples: int = 1) -> tuple[dict, dict]:
    """The stage's row of the record, and the evaluation it was read from."""
    manifest = json.loads((stage / "manifest.json").read_text())
    config, result = manifest["config"], stage_eval(stage, heldout, samples)
    row = {"stage_dir": stage.name, "kind": manifest["kind"],
           "heldout_accuracy": result["accuracy"], "new_templates_accuracy": result["new_templates"]["accuracy"],
           **({"samples_per_problem": samples, "heldout_accuracy_se": round(result["accuracy_se"], 4),
               "heldout_pass_at_k": result["pass_at_k"], "new_templates_pass_at_k": result["new_templates"]["pass_at_k"]}
              if samples > 1 else {}),
           "per_task": result["per_task"], "well_formed_think": result["format"]["well_formed"],
           "steps_true": step_truth(result["samples"] + result["new_templates"]["samples"]),
           "train_seconds": round(manifest["train_seconds"], 1)}
    if manifest["kind"] in KNOBS:
        row["trainer"] = {k: config["trainer"].get(k) for k in KNOBS[manifest["kind"]]}
        row["sources"] = config.get("data", {}).get("blend", {}).get("sources")  # a variant may change its data
        row["max_prompt_length"] = config.get("data", {}).get("max_prompt_length")  # longer prompts are dropped
        row["peft"] = config.get("peft")  # LoRA, when the variant trains an adapter
    if manifest["kind"] == "grpo":
        row["rewards"] = config["rewards"]
        first = config["rewards"][0]  # named as the stage logged it
        row.update(_fifths(stage, first.get("name") or rewards.default_name(first["path"])))
    return row, result


def main(argv=None) -> None:
    command = benchlib.command(__file__, argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("parent", type=Path, help="the stage dir every variant starts from (GRPO's: its DPO stage)")
    ap.add_argument("variants", nargs="+", type=Path, help="grpo stage dirs (stages/04-grpo-<key>)")
    ap.add_argument("--kind", choices=sorted(KNOBS), default="grpo", help="the variants' stage kind")
    ap.add_argument("--heldout", type=int, default=200, help="held-out problems per wording of the evaluation to read")
    ap.add_argument("--samples", type=int, default=1,
                    help="draws per problem of the evaluation to read (evaluation.heldout_samples)")
    ap.add_argument("--out", type=Path, default=OUT, help=f"where to write (default {OUT.name})")
    ap.add_argument("--note", default=None, help="a line kept with the figures")
    args = ap.parse_args(argv)
    parent, before = stage_figures(args.parent, args.heldout, args.samples)
    variants = []
    for stage in args.variants:
        row, after = stage_figures(stage, args.heldout, args.samples)
        if row["kind"] != args.kind:
            raise SystemExit(f"{stage} is a {row['kind']} stage; give {args.kind} stage dirs after the parent"
                             + ("" if args.kind != "grpo" else ", or --kind for another kind's variants"))
        row["over_parent"] = round(row["heldout_accuracy"] - parent["heldout_accuracy"], 4)
        row["over_parent_new_templates"] = round(row["new_templates_accuracy"] - parent["new_templates_accuracy"], 4)
        if args.samples > 1:
            row["over_parent_se"] = paired_se(before, after, args.samples)
            row["over_parent_new_templates_se"] = paired_se(before["new_templates"], after["new_templates"],
                                                            args.samples)
        variants.append(row)
    variants.sort(key=lambda r: r["train_seconds"])
    benchlib.write_record(args.out, {"name": args.out.stem, "command": command, "date": str(date.today()),
                                     "machine": benchlib.MACHINE,
                                     "target": TARGETS[args.kind],
                                     "parent": parent, "variants": variants}, args.note)
    for r in variants:
        print(f"{r['stage_dir']}: {r['trainer']} {[s.get('name') for s in r.get('rewards', [])]} -> "
              f"{r['heldout_accuracy']:.3f} ({r['over_parent']:+.3f}"
              + (f" ± {r['over_parent_se']:.3f}" if r.get("over_parent_se") else "")
              + f"), new templates {r['new_templates_accuracy']:.3f} "
              f"({r['over_parent_new_templates']:+.3f}), {r['train_seconds']} s")


if __name__ == "__main__":
    main()
