"""Plain TRL GRPO on the synthetic world, in one process: the baseline side of the GRPO
benchmark, and how the embedded default's GRPO settings were found.

    python bench/grpo_plain.py --model runs/stages/03-dpo-<key>/model --steps 40
    python bench/grpo_plain.py --model DIR --steps 40 --learning-rate 1e-4 --num-generations 8 --out bench/work/grpo

It trains TRL's GRPOTrainer (no Ray, no DeepSpeed, `use_vllm=False`: generation is
`model.generate`) on prompts from the synthetic world's training split
(`synthetic.prompt_rows`) with one verifiable reward: 1 when the completion is one
well-formed <think> block followed by the gold answer, else 0. The model is scored with
the curriculum's own held-out probe (`eval.heldout.evaluate_heldout`: in-template and
held-out-template accuracy, <think> health) before and after. Writes
`<out>/result.json` (settings, accuracy before/after, reward mean per step,
frac_reward_zero_std, seconds per step) and the trained model to `<out>/model`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "platform"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

from tinyreason.data import synthetic  # noqa: E402
from tinyreason.eval import health  # noqa: E402
from tinyreason.config.evaluation import EvalConfig  # noqa: E402
from tinyreason.eval.heldout import evaluate_heldout  # noqa: E402

PROMPT_SEED = 0  # synthetic.prompt_rows draws from the training split only


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="exported model dir (a DPO or <think> SFT stage's model/)")
    p.add_argument("--steps", type=int, default=40, help="optimizer steps (max_steps)")
    p.add_argument("--prompts-per-step", type=int, default=4, help="distinct prompts per optimizer step")
    p.add_argument("--num-generations", type=int, default=8, help="completions per prompt (the GRPO group)")
    p.add_argument("--learning-rate", type=float, default=1e-4)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--max-completion-length", type=int, default=96, help="tokens; the longest trace is ~85")
    p.add_argument("--beta", type=float, default=0.0, help="KL coefficient; 0 loads no reference model")
    p.add_argument("--loss-type", default=None, help="TRL's loss_type; default: TRL's own (dapo in 1.16)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-n", type=int, default=100, help="held-out problems per phrasing, before and after")
    p.add_argument("--eval-max-new-tokens", type=int, default=96)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--skip-before", action="store_true", help="do not score the starting model")
    p.add_argument("--out", default=str(ROOT / "bench" / "work" / "grpo_plain"))
    return p.parse_args(argv)


def make_reward(tok):
    """Correctness on the text after </think>. TRL decodes `completions` with
    skip_special_tokens=True, which deletes <think> and </think> (special tokens here), so
    the reward decodes `completion_ids` itself and keeps them."""
    drop = [t for t in (tok.eos_token, tok.pad_token) if t]

    def correct(completion_ids, answer, **_) -> list[float]:
        out = []
        for ids, gold in zip(completion_ids, answer):
            text = tok.decode(ids, skip_special_tokens=False)
            for t in drop:
                text = text.split(t)[0] if t == tok.eos_token else text.replace(t, "")
            ok = health.check_output(text).well_formed and health.extract_answer(text).lower() == gold.lower()
            out.append(1.0 if ok else 0.0)
        return out

    return correct


class StepTimer:
    """Wall seconds per optimizer step (generation + scoring + update), from TRL's callbacks."""

    def __init__(self):
        from transformers import TrainerCallback

        timer = self

        class _CB(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                timer.t0 = time.perf_counter()

            def on_step_end(self, args, state, control, **kw):
                timer.seconds.append(time.perf_counter() - timer.t0)

        self.t0, self.seconds, self.callback = 0.0, [], _CB()


def summarize_eval(res: dict) -> dict:
    new = res.get("new_templates", {})
    return {"accuracy": res["accuracy"], "new_templates_accuracy": new.get("accuracy"),
            "well_formed": res["format"]["well_formed"],
            "new_templates_well_formed": (new.get("format") or {}).get("well_formed"),
            "per_task": res["per_task"], "n": res["n"]}


def train(args: argparse.Namespace, out: Path) -> tuple[dict, list[dict], list[float]]:
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from tinyreason.model.presets import load_model

    tok = AutoTokenizer.from_pretrained(args.model)
    model = load_model(args.model)
    rows = synthetic.prompt_rows(args.steps * args.prompts_per_step, PROMPT_SEED)
    batch = args.prompts_per_step * args.num_generations  # completions per step, divisible by the group
    extra = {"loss_type": args.loss_type} if args.loss_type else {}
    config = GRPOConfig(
        output_dir=str(out / "trainer"), max_steps=args.steps, learning_rate=args.learning_rate,
        per_device_train_batch_size=batch, gradient_accumulation_steps=1, num_generations=args.num_generations,
        max_completion_length=args.max_completion_length, temperature=args.temperature, beta=args.beta,
        use_vllm=False, logging_steps=1, save_strategy="no", report_to=[], seed=args.seed,
        bf16=False, use_cpu=not torch.cuda.is_available(), lr_scheduler_type="constant", warmup_steps=0,
        disable_tqdm=True, **extra)
    timer = StepTimer()
    trainer = GRPOTrainer(model=model, reward_funcs=[make_reward(tok)], args=config,
                          train_dataset=Dataset.from_list(rows), processing_class=tok, callbacks=[timer.callback])
    trainer.train()
    trainer.save_model(str(out / "model"))
    tok.save_pretrained(str(out / "model"))
    settings = {k: getattr(config, k) for k in (
        "learning_rate", "num_generations", "per_device_train_batch_size", "generation_batch_size",
        "steps_per_generation", "max_completion_length", "temperature", "beta", "loss_type", "scale_rewards",
        "num_iterations", "epsilon", "max_steps", "lr_scheduler_type", "seed")}
    logs = [h for h in trainer.state.log_history if "reward" in h]
    return settings, logs, timer.seconds


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    # the curriculum's probe settings, greedy so before and after differ by the weights only
    ev = EvalConfig(heldout_problems=args.eval_n, max_new_tokens=args.eval_max_new_tokens, batch_size=50,
                    decoding={"decoding": "greedy"}, thinking={"compare_off": False})
    before = None if args.skip_before else summarize_eval(evaluate_heldout(args.model, ev))
    t_train = time.perf_counter()
    settings, logs, step_seconds = train(args, out)
    train_seconds = time.perf_counter() - t_train
    after = summarize_eval(evaluate_heldout(str(out / "model"), ev))
    rewards = [h["reward"] for h in logs]
    zero_std = [h.get("frac_reward_zero_std") for h in logs]
    result = {
        "name": "grpo_plain", "command": "python bench/grpo_plain.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "model": args.model, "settings": settings, "prompts_per_step": args.prompts_per_step,
        "before": before, "after": after,
        "train_seconds": round(train_seconds, 1), "total_seconds": round(time.perf_counter() - t0, 1),
        "seconds_per_step": round(statistics.median(step_seconds), 2) if step_seconds else None,
        "reward_mean_per_step": [round(r, 4) for r in rewards],
        "frac_reward_zero_std_per_step": [round(z, 4) if z is not None else None for z in zero_std],
        "completion_length_per_step": [round(h.get("completions/mean_length", 0), 1) for h in logs],
        "load_average": os.getloadavg()[0],
    }
    (out / "result.json").write_text(json.dumps(result, indent=2))
    first, last = rewards[: max(1, len(rewards) // 4)], rewards[-max(1, len(rewards) // 4):]
    print(f"reward mean: first quarter {statistics.mean(first):.3f}, last quarter {statistics.mean(last):.3f}; "
          f"frac_reward_zero_std mean {statistics.mean(z for z in zero_std if z is not None):.3f}; "
          f"{result['seconds_per_step']} s/step, {train_seconds:.0f} s training")
    if before:
        print(f"held-out accuracy {before['accuracy']:.1%} -> {after['accuracy']:.1%}; "
              f"new templates {before['new_templates_accuracy']:.1%} -> {after['new_templates_accuracy']:.1%}; "
              f"well-formed {before['well_formed']:.1%} -> {after['well_formed']:.1%}")
    print(f"result: {out / 'result.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
