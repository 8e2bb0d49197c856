"""The default demo's ladder: what the pre-training mix and the SFT learning rates do to the steps.

    python jobs/curriculum.py --set storage.path=/tmp/ladder --stages pretrain,sft,reasoning [--set ...]
    ...  (one run per variant; stages already trained are reused)
    python bench/demo_ladder.py "1 drill in 5, 8k rows=/tmp/ladder/stages/02-reasoning-<key>" ... \\
        --out bench/results/demo_ladder.json

For each labelled leaf stage, its whole lineage (the parents named in each manifest.json) back to
pre-training, each stage as bench/grpo_variants.py reads it (held-out accuracy in both wordings,
per task family, the share of written steps that are true per kind of step, train seconds) with
its learning rate and blend size. The pre-trained model is also probed directly: greedy
completion of `a + n =`, `a - n =` and `max(a, b) =` after three drill lines, 150 facts each,
the form the pre-training drills write them in (data/synthetic.py). A chain of 2-4 steps
breaks at its weakest kind of step, so this says where a reasoning stage's errors come from.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
from grpo_variants import stage_figures  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "demo_ladder.json"
FACTS = 150  # per kind: +-4 points at 50%


def _fact(rng: random.Random, kind: str) -> tuple[str, str]:
    """A drill line cut at its `=`: (prompt, the right continuation). Sums up to 61, as the tasks'."""
    if kind == "add":
        a, n = rng.randint(0, 52), rng.randint(1, 9)
        return f"{a} + {n} =", str(a + n)
    if kind == "take":
        a = rng.randint(1, 52)
        n = rng.randint(1, min(9, a))
        return f"{a} - {n} =", str(a - n)
    a, b, op = rng.randint(1, 30), rng.randint(1, 30), rng.choice((max, min))
    return f"{op.__name__}({a}, {b}) =", str(op(a, b))


def fact_probe(model_dir: Path, facts: int = FACTS, seed: int = 0) -> dict:
    """`probe_facts` on a saved model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return probe_facts(AutoModelForCausalLM.from_pretrained(model_dir), AutoTokenizer.from_pretrained(model_dir),
                       facts, seed)


def probe_facts(model, tok, facts: int = FACTS, seed: int = 0) -> dict:
    """Greedy accuracy of single drill steps, each after three other drill lines as context."""
    import torch

    was_training = model.training
    model.eval()
    rng, out = random.Random(seed), {}
    for kind in ("add", "take", "fold"):
        right = 0
        for _ in range(facts):
            context = "\n".join(" ".join(_fact(rng, rng.choice(("add", "take", "fold")))) for _ in range(3))
            prompt, answer = _fact(rng, kind)
            ids = tok(f"{context}\n{prompt}", add_special_tokens=False, return_tensors="pt").input_ids
            with torch.no_grad():
                gen = model.generate(ids, max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)
            right += tok.decode(gen[0, ids.shape[1]:], skip_special_tokens=True).split("\n")[0].strip() == answer
        out[kind] = round(right / facts, 4)
    model.train(was_training)
    return out


def lineage(leaf: Path) -> list[Path]:
    """The leaf stage and its parents, oldest first, from each manifest's parent model path."""
    chain, stage = [], leaf
    while True:
        chain.append(stage)
        parent = json.loads((stage / "manifest.json").read_text()).get("parent") or {}
        if parent.get("name") in (None, "base"):
            return chain[::-1]
        stage = Path(parent["path"]).parent  # <stage dir>/model


def stage_row(stage: Path, heldout: int) -> dict:
    manifest = json.loads((stage / "manifest.json").read_text())
    config = manifest["config"]
    row = {"stage": manifest["stage"], **stage_figures(stage, heldout)[0],
           "learning_rate": config["trainer"].get("learning_rate"),
           "entries": sum(s.get("entries") or 0 for s in config["data"]["blend"]["sources"])}
    if manifest["kind"] == "pretrain":
        row["fact_probe"] = fact_probe(stage / "model")
    return row


def main(argv=None) -> None:
    command = benchlib.command(__file__, argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("variants", nargs="+", help="LABEL=STAGE_DIR: what the variant changed, and its leaf stage dir")
    ap.add_argument("--heldout", type=int, default=200, help="held-out problems per wording of the evaluation to read")
    ap.add_argument("--out", type=Path, default=OUT, help=f"where to write (default {OUT.name})")
    ap.add_argument("--note", default=None, help="a line kept with the figures")
    args = ap.parse_args(argv)
    variants = []
    for item in args.variants:
        label, sep, path = item.rpartition("=")
        if not sep or not label:
            raise SystemExit(f"{item!r}: give LABEL=STAGE_DIR, e.g. 'sft lr 5e-4=runs/stages/02-reasoning-abc'")
        variants.append({"label": label, "stages": [stage_row(s, args.heldout) for s in lineage(Path(path))]})
    benchlib.write_record(args.out, {"name": args.out.stem, "command": command, "date": str(date.today()),
                                     "machine": benchlib.MACHINE, "variants": variants}, args.note)
    for v in variants:
        print(v["label"], " -> ".join(f"{s['stage']} {s['heldout_accuracy']:.3f}" for s in v["stages"]),
              v["stages"][0].get("fact_probe"), v["stages"][-1]["steps_true"])


if __name__ == "__main__":
    main()
