"""What a stage's trainer costs from its construction to its first optimizer step, with and
without the platform's two start-up adapters (train/compat.py):

- `muon_compiles_on_first_use`: DeepSpeed 0.19's ZeRO code imports its Muon optimizer, whose
  module wraps its functions in `torch.compile` on import, which imports torch's inductor;
- `wandb_init_skips_unstaged_launch_inputs`: wandb 0.31 imports wandb Launch at every run's start
  to apply inputs that only a Launch job stages.

Each measurement is a fresh process, as a stage's Ray Train worker is: it imports torch,
transformers, TRL, DeepSpeed and wandb (not timed: both sides pay them), then times a TRL
SFTTrainer on the micro model, DeepSpeed ZeRO-2 on one rank over gloo and wandb offline (a
stage's settings), from `SFTTrainer(...)` to the end of step 1. Sides alternate ABBA, so this
machine's drift in speed falls on both alike. Writes bench/results/trainer_start.json.

    .venv/bin/python bench/bench_trainer_start.py               # 8 pairs (~4 min)
    .venv/bin/python bench/bench_trainer_start.py --pairs 2
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as B  # noqa: E402

OUT = B.RESULTS / "trainer_start.json"
SIDES = {"libraries": "DeepSpeed 0.19 and wandb 0.31 as installed",
         "platform": "with compat.muon_compiles_on_first_use and compat.wandb_init_skips_unstaged_launch_inputs"}


def one_start(side: str, model_dir: str) -> dict:
    """In this fresh process: seconds from SFTTrainer(...) to the end of step 1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    work = tempfile.mkdtemp(prefix="trainer-start-")
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                      WANDB_MODE="offline", WANDB_DIR=work, WANDB_SILENT="true", WANDB_PROJECT="bench")
    import datasets
    import torch
    import wandb  # imported by both sides before the clock starts
    from transformers import AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from tinyreason.config.sections import DeepSpeedConfig
    from tinyreason.model.presets import load_model
    from tinyreason.train import compat
    from tinyreason.train.args import deepspeed_config

    compat.skip_deepspeed_shm_comm()  # both sides: a stage on CPU always has it
    if side == "platform":
        compat.muon_compiles_on_first_use()
        compat.wandb_init_skips_unstaged_launch_inputs()
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = load_model(model_dir)
    g = torch.Generator().manual_seed(0)
    rows = datasets.Dataset.from_dict({"input_ids": torch.randint(3, len(tok), (64, 64), generator=g).tolist()})
    marks: dict[str, float] = {}

    class FirstStep(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            marks.setdefault("train_begin", time.perf_counter())

        def on_step_end(self, args, state, control, **kw):
            marks.setdefault("first_step", time.perf_counter())
            control.should_training_stop = True

    cfg = SFTConfig(output_dir=work, use_cpu=True, bf16=False, report_to=["wandb"], run_name=f"start-{side}", max_steps=2,
                    per_device_train_batch_size=4, learning_rate=1e-3, save_strategy="no", logging_steps=1,
                    deepspeed=deepspeed_config(DeepSpeedConfig(zero_stage=2), "fp32"), disable_tqdm=True,
                    dataset_kwargs={"skip_prepare_dataset": True}, remove_unused_columns=False)
    start = time.perf_counter()
    trainer = SFTTrainer(model=model, args=cfg, train_dataset=rows, processing_class=tok, callbacks=[FirstStep()])
    trainer.train()
    wandb.finish()
    return {"to_first_step": round(marks["first_step"] - start, 3),
            "construct_to_train_begin": round(marks["train_begin"] - start, 3),
            "inductor_imported": "torch._inductor.compile_fx" in sys.modules,
            "wandb_launch_imported": compat.WANDB_LAUNCH_INPUTS in sys.modules}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=8)
    p.add_argument("--child", choices=list(SIDES))
    p.add_argument("--model-dir")
    a = p.parse_args()
    if a.child:
        print("RESULT " + json.dumps(one_start(a.child, a.model_dir)), flush=True)
        return
    model_dir, _ = B.make_base("micro", vocab=512)
    runs: dict[str, list[dict]] = {side: [] for side in SIDES}
    for i in range(a.pairs):
        for side in (list(SIDES) if i % 2 else list(reversed(SIDES))):  # ABBA
            out = subprocess.run([sys.executable, __file__, "--child", side, "--model-dir", model_dir],
                                 capture_output=True, text=True, timeout=600)
            line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
            assert line, out.stdout[-2000:] + out.stderr[-3000:]
            runs[side].append(json.loads(line[len("RESULT "):]))
            B.log(f"pair {i} {side}: {runs[side][-1]}")
    first = {side: [r["to_first_step"] for r in rs] for side, rs in runs.items()}
    ratios = [p_ / l_ for p_, l_ in zip(first["platform"], first["libraries"])]
    result = {
        "name": "trainer_start", "date": B.DATE, "machine": B.machine(),
        "what": "seconds from SFTTrainer(...) to the end of step 1 in a fresh process (imports done first): micro "
                "model, DeepSpeed ZeRO-2 on one gloo rank, wandb offline; ABBA pairs",
        "sides": SIDES,
        "median_s": {side: round(statistics.median(xs), 2) for side, xs in first.items()},
        "range_s": {side: [min(xs), max(xs)] for side, xs in first.items()},
        "ratio_platform_over_libraries": {"median": round(statistics.median(ratios), 3),
                                          "min": round(min(ratios), 3), "max": round(max(ratios), 3)},
        "runs": runs, "settings": {"pairs": a.pairs},
    }
    B.write_result(result, OUT)
    B.print_table([(s, result["median_s"][s], result["range_s"][s]) for s in SIDES], ("side", "median s", "range s"))
    print("platform / libraries:", result["ratio_platform_over_libraries"])


if __name__ == "__main__":
    main()
