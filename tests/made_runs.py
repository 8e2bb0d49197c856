"""Hand-made curriculum and sweep results for report tests (a helper module, not a test).

Real dataclasses, real storage layout, real configs (configs/micro.yaml and the default
DPO-beta sweep); only the numbers are written by hand, so a report renders in a second
without Ray and every expected figure, error and phrase is known in advance.
"""

from __future__ import annotations

import math
from pathlib import Path

from tinyreason.config.loading import load_config
from tinyreason.config.sweeps import load_sweep
from tinyreason.context import RunContext
from tinyreason.curriculum import CurriculumResult
from tinyreason.outputs import ModelRef, Outputs
from tinyreason.stage import StageOutcome
from tinyreason.storage import Storage
from tinyreason.train.grpo import SAMPLES_FILE
from tinyreason.tune.sweep import SweepResult, TrialRecord

ROOT = Path(__file__).resolve().parents[1]

# What each kind logs, as its trainer names it (the keys its StageKind.curves declare)
LOGGED = {
    "pretrain": lambda s, f: {"loss": 6 - 2 * f, "learning_rate": 3e-3 * (1 - f)},
    "sft": lambda s, f: {"loss": 4 - f, "mean_token_accuracy": 0.2 + 0.3 * f, "entropy": 5 - f,
                         "learning_rate": 1e-3 * (1 - f)},
    "reasoning_sft": lambda s, f: {"loss": 3 - f, "mean_token_accuracy": 0.4 + 0.3 * f, "entropy": 4 - f,
                                   "learning_rate": 1e-3 * (1 - f)},
    "dpo": lambda s, f: {"loss": 0.69 - 0.2 * f, "rewards/accuracies": 0.5 + 0.3 * f, "rewards/chosen": 0.1 * f,
                         "rewards/rejected": -0.2 * f, "rewards/margins": 0.3 * f, "learning_rate": 1e-4},
    "grpo": lambda s, f: {"loss": 0.01, "reward": 0.1 + 0.5 * f, "rewards/correctness/mean": 0.5 * f,
                          "rewards/think_format/mean": 0.5 + 0.5 * f, "frac_reward_zero_std": 0.8 - 0.5 * f,
                          "completions/mean_length": 16 - 4 * f, "completions/clipped_ratio": 0.5 * (1 - f),
                          "kl": 0.0, "learning_rate": 1e-4},
}

OUTPUTS = [  # a held-out sample per outcome a reader must see marked
    ("<think>\n29 < 41\nso the smaller is 29\n</think>\nThe answer is 29.", "29", True),
    ("<think>\n3 + 4 = 8 **wrong** | a pipe\n</think>\nThe answer is 8.", "8", False),
    ("<think>\nthinking that never ends ...", "", False),
    ("The answer is 5.", "5", False),
]


def evaluation(accuracy: float, choice: float, choice_se: float, reasoning: float, pretrain: bool = False) -> dict:
    """One evaluation as evaluation.evaluate caches it: held-out probe (n=100), lm-eval suite with errors."""
    samples = [{"id": f"p{i}", "task": "compare", "question": f"Which is smaller: 29 or 41? (problem {i})",
                "gold": "29", "output": out, "answer": ans, "correct": ok} for i, (out, ans, ok) in enumerate(OUTPUTS)]
    ev = {"accuracy": accuracy, "n": 100, "format": {"well_formed": accuracy}, "samples": samples,
          "benchmarks": {"primary": {"tinyreason_reasoning": reasoning, "tinyreason_choice": choice},
                         "primary_stderr": {"tinyreason_reasoning": 0.0 if reasoning in (0.0, 1.0) else
                                            math.sqrt(reasoning * (1 - reasoning) / 99),
                                            "tinyreason_choice": choice_se},
                         "n": {"tinyreason_reasoning": 100, "tinyreason_choice": 100},
                         "scores": {"tinyreason_reasoning": {"exact_match,final_answer": reasoning},
                                    "tinyreason_choice": {"acc": choice, "acc_norm": choice + 0.01}},
                         "stderr": {"tinyreason_reasoning": {"exact_match,final_answer": None},
                                    "tinyreason_choice": {"acc": choice_se, "acc_norm": choice_se}}}}
    if pretrain:
        ev["pretrain"] = {"perplexity": 40.0 if accuracy else 500.0, "tokens": 12345, "documents": 30,
                          "samples": [{"prompt": "Once upon a time,", "greedy": " there was a | cat\nwho sat",
                                       "sampled": " a **bold** dog"}]}
    return ev


def curriculum_result(tmp_path: Path) -> CurriculumResult:
    """configs/micro.yaml's five stages, trained and evaluated by hand: the base scores 0.30 on
    choice, the stages climb to 0.60 (beyond noise at n=100) while reasoning stays near 0."""
    cfg = load_config(ROOT / "configs" / "micro.yaml", [f"storage.path={tmp_path / 'storage'}"])
    store = Storage(cfg.storage.path)
    outputs = Outputs(store)
    run = outputs.run(cfg.name)
    run.start()
    base = ModelRef("base", str(store.local_root / "base" / "micro-0"), str(store.local_root / "base" / "micro-0"),
                    "k0")
    choice = [0.30, 0.32, 0.45, 0.60, 0.58]
    stages = []
    for i, stage in enumerate(cfg.stages):
        out = outputs.stage(i, stage.name, f"key{i}")
        steps = 16
        for s in range(2, steps + 1, 2):
            out.append({**LOGGED[stage.kind](s, s / steps), "step": s})
        if stage.kind == "grpo":
            for s in (2, 4):
                for k in range(2):
                    out.append({"step": s, "prompt": "Add up these numbers: 9, 16, 13.",
                                "completion": "<think>\n9 + 16 = 25\n25 + 13 = 38\n</think>\nThe answer is 38.",
                                "answer": "38", "reward": 1.0 * k}, to=SAMPLES_FILE)
        manifest = {"stage": stage.name, "kind": stage.kind, "key": f"key{i}", "train_seconds": 12.5,
                    "parent": {"name": stages[-1].stage.name if stages else "base", "path": "", "key": ""},
                    "blend": {"name": f"{stage.name}-blend-{i}", "key": str(i), "rows": 300, "content_hash": "abc"},
                    "config": stage.model_dump(mode="json"), "sequences": 300,
                    "summary": {"steps": steps, "loss_first": 4.0, "loss_last": 3.0, "tokens_per_s": 5000.0},
                    "checkpoints": {"best": {"step": 16, "value": 3.0, "path": str(store.local_root / "ray" / "x")}}}
        ev = evaluation(0.1 * i, choice[i], 0.046 if i < 3 else 0.049, 0.0 if i < 2 else 0.05,
                         pretrain=stage.kind == "pretrain")
        stages.append(StageOutcome(i, stage, out, manifest, cached=False, reason="this experiment had not run it "
                                   "before", evaluation=ev, metrics=out.metrics()))
    return CurriculumResult(cfg, run, base, evaluation(0.0, 0.30, 0.046, 0.0, pretrain=True), stages)


# (beta, objective, objective se): the case, 0.2267 against 0.2267 and 0.22 on 100 items,
# and one trial far below
TRIALS = [(0.05, 0.2267, 0.0419), (0.1, 0.2267, 0.0419), (0.3, 0.22, 0.0414), (1.0, 0.02, 0.014)]


def trial(i: int, beta: float, objective: float, se: float | None, stage_dir: str | None = None) -> TrialRecord:
    metrics = {"objective": objective, "bench/tinyreason_choice": objective, "bench/tinyreason_choice/acc": objective,
               "bench/tinyreason_choice/acc_norm": objective + 0.01, "bench/heldout/accuracy": objective / 2,
               "loss": 0.6, "step": 12, "train_seconds": 30.0}
    if se is not None:
        metrics.update({"objective_se": se, "se/tinyreason_choice": se, "se/heldout/accuracy": se / 2})
    return TrialRecord(f"run_trial_{i:05d}", {"beta": beta}, "TERMINATED", metrics, None, stage_dir)


def sweep_result(tmp_path: Path, trials=TRIALS) -> SweepResult:
    sweep, cfg = load_sweep(ROOT / "configs" / "sweeps" / "default-dpo-beta.yaml",
                            [f"storage.path={tmp_path / 'storage'}"])
    ctx = RunContext.of(cfg)
    out = ctx.outputs.sweep(sweep.name)
    out.path.mkdir(parents=True, exist_ok=True)
    records = []
    for i, (beta, objective, se) in enumerate(trials):
        stage = ctx.outputs.stage(3, "dpo", f"trial{i}")
        for s in range(2, 13, 2):
            stage.append({"loss": 0.69 - 0.01 * s * (1 + beta), "step": s})
        records.append(trial(i, beta, objective, se, stage.rel))
    best = max(records, key=lambda t: t.metrics["objective"])
    parent = ModelRef("reasoning", str(ctx.store.local_root / "stages" / "02-reasoning-k" / "model"), "", "k")
    parent_eval = evaluation(0.05, 0.20, 0.04, 0.0)
    return SweepResult(sweep, cfg, out, parent, parent_eval, records, best, ctx)

