"""Stage kind `grpo`: reinforcement learning with verifiable rewards (the report's next step).

TRL's GRPOTrainer samples `num_generations` completions per prompt from the current policy
(`model.generate`; TRL's vLLM path when `trainer.use_vllm` and vllm is installed), scores
each with the stage's rewards (rewards.py: correctness of the final answer after
`</think>`, `<think>` format, length, or a user's `module:function`), and pushes the policy
towards completions that beat their group's mean. A group whose rewards are all equal
teaches nothing (TRL logs the share as `frac_reward_zero_std`); the stage watches it and
says which lever to pull when it stays high.

Rows are prompts with a gold answer (the `prompt` row schema). Every worker reads every
prompt: TRL's sampler repeats each prompt `num_generations` times and accelerate deals each
rank its slice of the generation batch, so a group's rewards are normalised together.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING

from tinyreason import rewards
from tinyreason.completions import completion_text, prompt_text
from tinyreason.data import tokenize as T
from tinyreason.model.tokenizer import cached_tokenizer, prepare_chat_tokenizer
from tinyreason.train.kind import LEARNING_RATE, LOSS, Curve, StageKind

if TYPE_CHECKING:
    from tinyreason.config.experiment import StageConfig

log = logging.getLogger(__name__)

PROMPT_COLUMNS = ("prompt", "answer")  # what a prompt blend's rows hold (data/normalize.py)
TRL_DEFAULT_GENERATIONS, TRL_DEFAULT_BATCH = 8, 8  # GRPOConfig.num_generations, per_device_train_batch_size
# A group with no reward spread gives no gradient. When at least this share of groups had none,
# on average over the last half of the stage's logs, the stage says so with the levers to pull.
ZERO_SPREAD_WARN = 0.8
SAMPLES_FILE = "samples.jsonl"
SAMPLES_PER_LOG = 2  # completions kept per log line: what the report shows beside the curves


def trl_config() -> type:
    from trl import GRPOConfig  # heavy (~4 s): only when a config is checked or a worker trains

    return GRPOConfig


def check(stage: StageConfig) -> None:
    t, extra = stage.trainer, stage.trainer.model_extra or {}
    if not stage.rewards:
        raise ValueError("a grpo stage needs rewards, e.g. rewards: [{name: correctness}, {name: think_format, "
                         "weight: 0.2}] (built-ins: " + ", ".join(rewards.BUILTIN) + "; or {path: 'pkg.mod:fn'})")
    rewards.reward_components(stage.rewards, columns=PROMPT_COLUMNS)  # imports and signature-checks them now
    if t.loss_type is not None and not isinstance(t.loss_type, str):
        raise ValueError(f"trainer.loss_type={t.loss_type!r}: GRPO takes one loss type (grpo, dapo, dr_grpo, ...)")
    generations = extra.get("num_generations", TRL_DEFAULT_GENERATIONS)
    if generations < 2:
        raise ValueError(f"trainer.num_generations={generations}: a group needs at least 2 completions to compare")
    per_device = t.per_device_train_batch_size or TRL_DEFAULT_BATCH
    steps = extra.get("steps_per_generation") or t.gradient_accumulation_steps
    batch = extra.get("generation_batch_size") or per_device * stage.scaling.num_workers * steps
    if batch % generations:
        raise ValueError(
            f"trainer.num_generations={generations} does not divide the generation batch of {batch} completions "
            f"(per_device_train_batch_size {per_device} x {stage.scaling.num_workers} workers x "
            f"steps_per_generation {steps}); make the batch a multiple of num_generations, e.g. "
            f"per_device_train_batch_size: {generations}")
    if extra.get("use_vllm"):
        _check_vllm(stage)


def _check_vllm(stage: StageConfig) -> None:
    import importlib.util  # only for a stage that asks for vLLM

    if not stage.scaling.use_gpu:
        raise ValueError("trainer.use_vllm generates on GPUs; set scaling.use_gpu: true or remove use_vllm "
                         "(model.generate is used otherwise)")
    if importlib.util.find_spec("vllm") is None:
        raise ValueError("trainer.use_vllm: vllm is not installed; `pip install vllm` on the cluster's image, or "
                         "remove use_vllm to generate with model.generate")


def prepare_tokenizer(tok, stage: StageConfig):
    return prepare_chat_tokenizer(tok)


def tokenize_steps(tokenizer_dir: str, stage: StageConfig) -> list[T.Step]:
    """Prompts stay messages (TRL applies the chat template itself); prompts longer than
    data.max_prompt_length tokens are dropped, since TRL 1.16 no longer cuts them."""
    return [T.Step(partial(_fitting_prompts, tokenizer_dir=tokenizer_dir,
                           max_prompt_length=stage.data.max_prompt_length), 256)]


def _fitting_prompts(batch, tokenizer_dir: str, max_prompt_length: int | None):
    rows = [{"prompt": r["prompt"], "answer": r["answer"]} for r in T.rows_of(batch)]
    if max_prompt_length is not None:
        tok = cached_tokenizer(tokenizer_dir)
        # tokenize=True gives an encoding (a dict) in transformers 5: its len() is its key count, 2,
        # which let every prompt through until the token ids were counted
        rows = [r for r in rows if len(tok.apply_chat_template(r["prompt"], tokenize=True, add_generation_prompt=True,
                                                                return_dict=True)["input_ids"]) <= max_prompt_length]
    return T.batch_of(rows, list(PROMPT_COLUMNS))


def groups_without_spread(rewards: list[list[float]], weights: list[float], num_generations: int,
                          tol: float = 1e-6) -> float:
    """The share of prompt groups whose weighted rewards are all equal, so give no gradient.

    `rewards`: one row per completion (every rank's, in TRL's order: a group is
    `num_generations` consecutive rows), one column per reward, NaN where a reward did not
    score. TRL's own `frac_reward_zero_std` asks whether the group's float32 standard deviation
    is within 1e-8 of zero, and eight copies of a weighted 0.2 (a wrong answer in a well-formed
    block under the default rewards) have a standard deviation of 1.6e-8: it logged 0% for every
    step of the default's GRPO stage, and the stage's warning never fired. Here a group has no
    spread when its weighted sums differ by at most `tol`; completions no reward scored are left
    out, as TRL leaves them out of the group's baseline."""
    totals = []
    for row in rewards:
        scored = [(r, w) for r, w in zip(row, weights) if r == r]  # NaN != NaN
        totals.append(sum(r * w for r, w in scored) if scored else None)
    groups = [totals[i:i + num_generations] for i in range(0, len(totals), num_generations)]
    if not groups:
        return 0.0
    flat = [[t for t in g if t is not None] for g in groups]
    return sum(not g or max(g) - min(g) <= tol for g in flat) / len(groups)


def review(summary: dict, metrics: list[dict]) -> list[str]:
    """What the driver says after the stage: a learning signal that stayed absent."""
    spread = [m["frac_reward_zero_std"] for m in metrics if "frac_reward_zero_std" in m]
    late = spread[len(spread) // 2:]
    if late and sum(late) / len(late) >= ZERO_SPREAD_WARN:
        return [f"{sum(late) / len(late):.0%} of its prompt groups had rewards all equal over the second half of "
                "training, so they gave no gradient: raise trainer.num_generations, train on easier prompts, or add "
                "a partial-credit reward (think_format, a length term)"]
    return []


def completion_texts(tok, completion_ids: list, conversational: bool) -> list:
    """The completions as rewards must see them: <think> and </think> kept. TRL decodes with
    skip_special_tokens=True, and the reasoning stage adds the think tags as special tokens, so
    TRL's own text has no think block at all (think_format then scored 0 on every completion of
    the default's GRPO stage). Decoded here with special tokens, cut at the end of turn (EOS)
    and without padding."""
    ends = {t for t in (tok.eos_token, tok.pad_token) if t}
    texts = []
    for ids in completion_ids:
        text = tok.decode(ids, skip_special_tokens=False)
        if tok.eos_token and tok.eos_token in text:
            text = text.split(tok.eos_token, 1)[0]
        for t in ends:
            text = text.replace(t, "")
        texts.append(text)
    return [[{"role": "assistant", "content": t}] for t in texts] if conversational else texts


class _WithThinkTags:
    """A reward that sees the completions with their think tags (`completion_texts`)."""

    def __init__(self, reward, tok):
        self.reward, self.tok, self.__name__ = reward, tok, reward.__name__

    def __call__(self, prompts=None, completions=None, completion_ids=None, **kwargs):
        if completion_ids is not None and completions is not None:
            conversational = bool(completions) and isinstance(completions[0], list)
            completions = completion_texts(self.tok, completion_ids, conversational)
        return self.reward(prompts=prompts, completions=completions, completion_ids=completion_ids, **kwargs)


class _Recorded:
    """A reward that also keeps the latest batch it scored, for samples.jsonl."""

    def __init__(self, reward, keep: dict):
        self.reward, self.keep, self.__name__ = reward, keep, reward.__name__

    def __call__(self, prompts=None, completions=None, **kwargs):
        scores = self.reward(prompts=prompts, completions=completions, **kwargs)
        self.keep.update(prompts=prompts, completions=completions, answers=kwargs.get("answer"), scores=scores)
        return scores


def _sample_callback(job, keep: dict):
    # worker only, as in train_loop_per_worker
    from transformers import TrainerCallback
    from tinyreason.train.worker import is_rank_zero

    class Samples(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if not is_rank_zero() or not keep.get("completions"):
                return
            for i in range(min(SAMPLES_PER_LOG, len(keep["completions"]))):
                job.output.append({
                    "step": state.global_step, "prompt": prompt_text(keep["prompts"][i]),
                    "completion": completion_text(keep["completions"][i]),
                    "answer": (keep.get("answers") or [None] * (i + 1))[i], "reward": keep["scores"][i]},
                    to=SAMPLES_FILE)

    return Samples()


def train_loop_per_worker(config: dict) -> None:
    """model -> data -> rewards -> trainer -> train -> save, on one Ray Train worker."""
    # worker-only imports: torch, TRL and Ray Train take seconds, and the driver imports this module to read configs
    from trl import GRPOConfig, GRPOTrainer
    from tinyreason.train import args, checkpoints, compat, export, lora, reporting, shards, worker

    job, timeline, precision = worker.begin_worker(config)
    stage = job.stage
    timeline.mark("imports")

    # model: the policy starts as the parent's export; with beta > 0 TRL loads a frozen copy as reference
    tok, model = shards.load_tokenizer_and_model(job)
    timeline.mark("model_load")

    # data: every prompt on every rank (see the module docstring)
    train = shards.load_shard()
    timeline.mark("data_shard")

    # rewards: each sees the think tags; the first also keeps its latest batch, for the report's samples
    funcs, weights, _ = rewards.reward_components(stage.rewards, columns=train.column_names)
    keep: dict = {}
    funcs[0] = _Recorded(funcs[0], keep)
    funcs = [_WithThinkTags(f, tok) for f in funcs]

    # trainer
    resume = checkpoints.resume_plan(job, config.get("resume_from"))  # converted when another worker count wrote it
    trl_args = args.trl_arguments(GRPOConfig, job, precision, resume=resume, reward_weights=weights)
    trainer = GRPOTrainer(model=model, reward_funcs=funcs, args=trl_args, train_dataset=train, processing_class=tok,
                          callbacks=[reporting.make_report_callback(job, timeline), _sample_callback(job, keep)],
                          peft_config=lora.peft_config(job, tok))
    worker.on_trainer(trainer, job)
    compat.grpo_logs_groups_without_spread(trainer, groups_without_spread)

    # train
    trainer.train(resume_from_checkpoint=resume.path)

    # save; the completions kept for the report go to storage with the export (a no-op locally)
    export.export_model(trainer, tok, job)
    job.output.publish(SAMPLES_FILE)


KIND = StageKind(
    name="grpo", summary="RL with verifiable rewards (GRPO)", schema="prompt",
    trl_config=trl_config, train_loop=train_loop_per_worker, tokenize_steps=tokenize_steps,
    prepare_tokenizer=prepare_tokenizer, check=check, rows="prompts", shards="whole", sections=("rewards", "peft"),
    review=review,
    curves=(Curve("reward", "reward (weighted sum)"), Curve("rewards/*/mean", "reward by component"),
            Curve("frac_reward_zero_std", "groups without reward spread"),
            Curve("completions/mean_length", "completion length (tokens)"),
            Curve("completions/clipped_ratio", "completions truncated"), Curve("kl", "KL to the reference"),
            LOSS, LEARNING_RATE),
    summary_metrics=("reward", "reward_std", "frac_reward_zero_std", "completions/mean_length",
                     "completions/clipped_ratio", "kl", "rewards/"),
)
