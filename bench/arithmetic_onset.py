"""When does the tiny model learn one step of arithmetic? A plain loop on the pre-training drills.

    python bench/arithmetic_onset.py runs/base/tiny-<key> --steps 1200 --lr 1e-3

The `tiny` shape (the base model dir: its config and tokenizer) trained from scratch in one
process on nothing but `data/synthetic._drill` documents, packed into rows of 256 tokens, 4 rows
a step (the default pre-training's batch), AdamW with 5% warmup and linear decay (the stage's
schedule). At each quarter of the steps, demo_ladder's probe: greedy `a + n =`, `a - n =` and
`max(a, b) =` after three drill lines. The default demo's pre-training blend is sized from this
(configs/default.yaml): the step is learnt abruptly and late, so a mix too thin in drills never
reaches it.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
from demo_ladder import probe_facts  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "arithmetic_onset.json"
ROW_TOKENS, ROWS = 256, 4


def train(base: Path, steps: int, lr: float, seed: int = 0, threads: int = 2) -> list[dict]:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from tinyreason.data.synthetic import _drill

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(base)).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warmup = max(1, int(0.05 * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, 1 - s / steps))
    rng, stream, points, t0 = random.Random(seed), [], [], time.perf_counter()
    for step in range(1, steps + 1):
        rows = []
        for _ in range(ROWS):
            while len(stream) < ROW_TOKENS:
                stream += tok(_drill(rng) + "\n\n", add_special_tokens=False).input_ids
            rows.append(stream[:ROW_TOKENS])
            del stream[:ROW_TOKENS]
        x = torch.tensor(rows)
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        if step % max(1, steps // 4) == 0 or step == steps:
            points.append({"step": step, "loss": round(loss.item(), 4), "facts_right": probe_facts(model, tok),
                           "seconds": round(time.perf_counter() - t0, 1)})
            print(json.dumps(points[-1]), flush=True)
    return points


def main(argv=None) -> None:
    command = benchlib.command(__file__, argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base", type=Path, help="a `tiny` base model dir (runs/base/tiny-<key>): its config and tokenizer")
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--lr", type=float, nargs="+", default=[1e-3], help="one run per learning rate")
    ap.add_argument("--out", type=Path, default=OUT, help=f"where to write (default {OUT.name})")
    args = ap.parse_args(argv)
    runs = [{"lr": lr, "points": train(args.base, args.steps, lr)} for lr in args.lr]
    benchlib.write_record(args.out, {"name": args.out.stem, "command": command, "date": str(date.today()),
                                     "machine": benchlib.MACHINE,
                                     "setting": {"rows_per_step": ROWS, "row_tokens": ROW_TOKENS, "steps": args.steps},
                                     "runs": runs})


if __name__ == "__main__":
    main()
