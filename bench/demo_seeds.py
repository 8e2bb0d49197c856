"""The embedded default over seeds: each run's held-out figures, and what issue 17 measures.

    for s in 0 1 2; do /usr/bin/time -f "%e" python jobs/curriculum.py --set seed=$s \\
        --set storage.path=/tmp/demo/s$s 2> /tmp/demo/s$s.time; done
    python bench/demo_seeds.py /tmp/demo/s0 /tmp/demo/s1 /tmp/demo/s2 --wall 873.2 842.7 904.5

Reads each storage's runs/default/latest/results.json (the run's own record, nothing
re-computed) and writes bench/results/demo_seeds.json: per seed and stage the held-out accuracy
in the training and the held-out wordings, and the well-formed share in both (the target reads the
training wordings'; the held-out wordings' is kept beside it where the run's benchmark table has
it); then the mean and range over seeds of the final accuracy, `<think>` SFT over chat SFT, and
each of DPO and GRPO over its parent, beside the targets. Runs that end at DPO (a DPO variant screened with
`--stages pretrain,sft,reasoning,dpo`) are summed the same way, without the GRPO figure.

A seed given as `A+B` is run A's stages continued by run B's: B an experiment whose base model is
the export of one of A's stages (`model.name_or_path: <A's storage>/stages/02-reasoning-*/model`,
then only the later stages), so a change to those stages is measured without re-training A's.
The seam is checked: B's evaluation of its base must equal A's of that stage, figure by figure.
"""

from __future__ import annotations

import argparse
import json
import platform
from datetime import date
from pathlib import Path

from tinyreason.stats.compare import seed_summary

OUT = Path(__file__).resolve().parent / "results" / "demo_seeds.json"
FIELDS = ("heldout_accuracy", "new_templates_accuracy", "well_formed_think")
REASONING = ("reasoning", "dpo", "grpo")  # the stages that think: the well-formed target's
TARGETS = {"final_accuracy": 0.50, "think_over_chat": 0.15, "grpo_over_dpo": 0.05, "well_formed": 0.95,
           "wall_s": 15 * 60}
# each floor target: the summary figure it reads, and which statistic over seeds must reach it
FLOORS = {"final_accuracy": ("final_accuracy", "mean"), "think_over_chat": ("think_over_chat", "mean"),
          "grpo_over_dpo": ("grpo_over_dpo", "mean"), "well_formed": ("well_formed_min", "min")}


def read_run(path: Path) -> tuple[Path, dict, dict]:
    """(record dir, results.json, config.json) of a run's record dir or a storage's latest run."""
    run = path if (path / "results.json").is_file() else path / "runs" / "default" / "latest"
    return run, json.loads((run / "results.json").read_text()), json.loads((run / "config.json").read_text())


def continued(first: Path, then: Path) -> tuple[Path, dict, dict]:
    """Run `first`'s results up to the stage whose export `then` started from, then `then`'s."""
    run, results, config = read_run(first)
    _, later, later_config = read_run(then)
    base = Path(later_config["model"]["name_or_path"])  # <storage>/stages/<nn>-<stage>-<key>/model
    name = base.parent.name.split("-", 1)[-1].rsplit("-", 1)[0]
    at = next((i for i, r in enumerate(results["stages"]) if r["stage"] == name), None)
    if at is None or later_config["seed"] != config["seed"]:
        raise SystemExit(f"{then}: its base {base} is no stage of {first} (seed {config['seed']})")
    seam = later["benchmarks"]["base"]
    mine = results["benchmarks"][results["stages"][at]["stage"]]
    if any(round(seam[k]["value"], 6) != round(mine[k]["value"], 6) for k in seam if k in mine):
        raise SystemExit(f"{then}: its evaluation of its base differs from {first}'s of that stage; not a continuation")
    # B's benchmark table holds its own stages (and its base, which is A's stage at the seam)
    benchmarks = {**results["benchmarks"], **{k: v for k, v in later["benchmarks"].items() if k != "base"}}
    return run, {**results, "stages": results["stages"][:at + 1] + later["stages"], "benchmarks": benchmarks}, config


def _new_templates_well_formed(results: dict, stage: str) -> float | None:
    """The stage's well-formed share in the held-out wordings, from the run's benchmark table."""
    figure = (results.get("benchmarks") or {}).get(stage, {}).get("heldout_new/well_formed")
    return figure["value"] if figure else None


def seed_figures(path: Path) -> dict:
    """`path`: a run's record dir (holding results.json), a storage whose latest run is read, or
    `A+B`: run A continued by run B (the module's docstring)."""
    first, _, then = str(path).partition("+")
    run, results, config = continued(Path(first), Path(then)) if then else read_run(path)
    stages = {r["stage"]: {**{f: r[f] for f in FIELDS},
                           "new_templates_well_formed": _new_templates_well_formed(results, r["stage"])}
              for r in results["stages"]}
    # which CPU trained it: the same seed gives other numbers on another CPU (README: provenance.json)
    record = json.loads((run / "provenance.json").read_text()) if (run / "provenance.json").is_file() else {}
    cpu = {k: v for k, v in ((record.get("driver") or {}).get("cpu") or {}).items() if k in ("model", "id", "isa", "cache")}
    acc = {name: s["heldout_accuracy"] for name, s in stages.items()}
    figures = {"seed": config["seed"], "stages": stages, "cpu": cpu or None,
               "final_accuracy": acc[results["stages"][-1]["stage"]],
               "think_over_chat": acc["reasoning"] - acc["sft"],
               "think_over_chat_new_templates": (stages["reasoning"]["new_templates_accuracy"]
                                                 - stages["sft"]["new_templates_accuracy"]),
               "dpo_over_think": acc["dpo"] - acc["reasoning"],
               "well_formed_min": min(stages[s]["well_formed_think"] for s in REASONING if s in stages)}
    held_out = [stages[s]["new_templates_well_formed"] for s in REASONING if s in stages]
    if None not in held_out:
        figures["well_formed_new_templates_min"] = min(held_out)
    if "grpo" in acc:  # a run of `--stages ...,dpo` (a DPO variant) has none
        figures["grpo_over_dpo"] = acc["grpo"] - acc["dpo"]
    return figures


def spread(values: list[float]) -> dict:
    s = seed_summary(values)
    return {"mean": round(s.mean, 4), "min": round(s.min, 4), "max": round(s.max, 4)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("storages", nargs="+", type=Path, help="one storage.path (or run record dir) per seed")
    # Given, not read from provenance.json: its started_at comes after the driver's imports and
    # Ray's start (~17 s here), and the target is from command to exit.
    ap.add_argument("--wall", nargs="*", type=float, default=[], help="each run's wall-clock seconds")
    ap.add_argument("--out", type=Path, default=OUT, help=f"where to write (default {OUT.name})")
    ap.add_argument("--note", default="wall_s: the curriculum with the set-up done; a fresh clone's make setup adds "
                                      "1-1.5 min", help="a line kept with the figures")
    args = ap.parse_args(argv)
    if args.wall and len(args.wall) != len(args.storages):
        raise SystemExit(f"--wall: {len(args.wall)} figures for {len(args.storages)} runs; give one per run")
    seeds = [seed_figures(p) for p in args.storages]
    for s, w in zip(seeds, args.wall):
        s["wall_s"] = w
    keys = ("final_accuracy", "think_over_chat", "think_over_chat_new_templates", "dpo_over_think", "grpo_over_dpo",
            "well_formed_min", "well_formed_new_templates_min") + (("wall_s",) if args.wall else ())
    summary = {k: spread([s[k] for s in seeds]) for k in keys if all(k in s for s in seeds)}
    met = {target: summary[key][stat] >= TARGETS[target]
           for target, (key, stat) in FLOORS.items() if key in summary}  # a run ending at DPO: no GRPO figure
    if args.wall:
        met["wall_s"] = summary["wall_s"]["max"] < TARGETS["wall_s"]
    cpus = []  # one entry when every seed ran on the same CPU
    for s in seeds:
        if (cpu := s.pop("cpu")) not in cpus:
            cpus.append(cpu)
    args.out.write_text(json.dumps({"name": "demo_seeds", "config": "configs/default.yaml", "date": str(date.today()),
                                    "machine": f"{platform.machine()}, 2 cores, CPU, no GPU",
                                    "cpu": cpus[0] if len(cpus) == 1 else cpus, "note": args.note,
                                    "targets": TARGETS, "met": met, "summary": summary, "seeds": seeds},
                                   indent=1) + "\n")
    print(json.dumps({"summary": summary, "met": met}, indent=1))


if __name__ == "__main__":
    main()
