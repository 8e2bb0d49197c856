"""How much of a stage's held-out accuracy is its sampling's luck: greedy beside sampled.

    python bench/sharpening.py /tmp/demo/s1/stages/03-dpo-* /tmp/demo/s1/stages/04-grpo-* --samples 8

The demo scores one answer per problem at the evaluation's decoding (temperature 0.6, top-p
0.95). A policy made fully confident in its own first choice would score its greedy accuracy.
That is what RL with a verifiable reward mostly does to a model it cannot teach new skills in a
few steps: it sharpens pass@1 towards what the model already does best (Yue et al. 2025, "Does
reinforcement learning really incentivize reasoning capacity?"). So greedy minus sampled, on a
GRPO stage's parent, bounds the gain that sharpening alone can give it, and a child whose greedy
accuracy is the parent's has learnt nothing but confidence.

For each stage: the sampled accuracy of its stored evaluation with `--samples` draws per problem
(eval-*.json, as bench/grpo_variants.py reads it), and the greedy accuracy on the same held-out
problems in both wordings, evaluated here with the probe the curriculum runs (the config's
evaluation section, decoding greedy). Writes bench/results/sharpening.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
from grpo_variants import stage_eval  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "sharpening.json"
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"


def figures(stage: str, kind: str, sampled: dict, greedy: dict) -> dict:
    """A stage's row: sampled and greedy accuracy, overall and per family, in the training and
    the held-out wordings, and greedy's lead over sampled (the sharpening headroom)."""
    row = {"stage_dir": stage, "kind": kind}
    for wording, s, g in (("heldout", sampled, greedy), ("new_templates", sampled["new_templates"],
                                                          greedy["new_templates"])):
        row[wording] = {"sampled": s["accuracy"], "greedy": g["accuracy"],
                        "greedy_over_sampled": round(g["accuracy"] - s["accuracy"], 4),
                        "per_task": {t: {"sampled": s["per_task"][t], "greedy": g["per_task"][t]}
                                     for t in sorted(s["per_task"]) if t in g["per_task"]}}
    row["draws"] = sampled.get("draws", 1)
    return row


def greedy_probe(config: Path, heldout: int):
    """The curriculum's held-out probe on the config's evaluation settings, decoding greedy: a
    function of a model dir (imported here: torch and transformers are not needed to read a record)."""
    from tinyreason.config.loading import load_config
    from tinyreason.eval.heldout import evaluate_heldout

    cfg = load_config(str(config), ["evaluation.decoding.decoding=greedy", f"evaluation.heldout_problems={heldout}",
                                    "evaluation.heldout_samples=1"])
    return lambda model_dir: evaluate_heldout(str(model_dir), cfg.evaluation, cfg.model.trust_remote_code)


def main(argv=None) -> None:
    command = benchlib.command(__file__, argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stages", nargs="+", type=Path, help="stage dirs, each with model/ and a sampled eval-*.json")
    ap.add_argument("--samples", type=int, default=8, help="draws per problem of the sampled evaluation to read")
    ap.add_argument("--heldout", type=int, default=200, help="held-out problems per wording")
    ap.add_argument("--config", type=Path, default=CONFIG, help="the experiment whose evaluation section to use")
    ap.add_argument("--out", type=Path, default=OUT, help=f"where to write (default {OUT.name})")
    ap.add_argument("--note", default=None, help="a line kept with the figures")
    args = ap.parse_args(argv)
    rows, greedy = [], greedy_probe(args.config, args.heldout)  # the config validated once, not per stage
    for stage in args.stages:
        sampled = stage_eval(stage, args.heldout, args.samples)
        kind = json.loads((stage / "manifest.json").read_text())["kind"]
        rows.append(figures(stage.name, kind, sampled, greedy(stage / "model")))
        h = rows[-1]["heldout"]
        print(f"{stage.name}: sampled {h['sampled']:.3f}, greedy {h['greedy']:.3f} "
              f"({h['greedy_over_sampled']:+.3f})", flush=True)
    benchlib.write_record(args.out, {"name": args.out.stem, "command": command, "date": str(date.today()),
                                     "machine": benchlib.MACHINE, "stages": rows}, args.note)


if __name__ == "__main__":
    main()
