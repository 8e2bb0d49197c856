"""Stage kind `distill`: logit distillation from a teacher that shares the student's tokenizer,
on TRL's GKD trainer (trl.experimental.gkd, TRL 1.16).

The student learns the teacher's whole next-token distribution on every completion token,
not only the sampled token. TRL's knobs, as trainer settings: `lmbda`, the share of steps
whose completions the student samples itself (on-policy; 0 trains on the rows' own
completions); `beta`, between forward KL (0) and reverse KL (1) in the generalized
Jensen-Shannon divergence; `temperature` and `max_new_tokens` of the student's samples;
`seq_kd`, the teacher samples the completions instead. The divergence is taken at
temperature 1 (GKDTrainer.compute_loss does not pass `temperature` to it).

The teacher is the `teacher:` section: an earlier stage, a model dir, a GGUF file or a hub
id, resolved by the driver and loaded by each worker from its node's copy (job.local); TRL
prepares it with DeepSpeed beside the student. Rows are chat rows; the final assistant turn
is the completion. Before and after training the stage measures the student's KL to the
teacher on held-out problems (`heldout_kl_before`, `heldout_kl_after`).
"""

from __future__ import annotations

import json
import os
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from tinyreason import refs
from tinyreason.data import world
from tinyreason.data import tokenize as T
from tinyreason.model.chat import SYSTEM_PROMPT
from tinyreason.model.tokenizer import add_think_tokens, cached_tokenizer, load_tokenizer, prepare_chat_tokenizer
from tinyreason.train.kind import LEARNING_RATE, LOSS, StageKind

if TYPE_CHECKING:
    from tinyreason.config.experiment import StageConfig
    from tinyreason.train.job import StageJob

COLUMNS = ["input_ids", "completion_mask", "prompt"]  # what TRL's DataCollatorForChatML reads as it is
OWNED = ("teacher_model_name_or_path", "teacher_model_init_kwargs")  # the teacher section sets the teacher


def trl_config() -> type:
    # TRL warns on every import from trl.experimental: the platform knows, and pins TRL 1.16 (pyproject.toml)
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl.experimental.gkd import GKDConfig  # heavy (~4 s): only when a config is checked or a worker trains

    return GKDConfig


def check(stage: StageConfig) -> None:
    t, extra = stage.trainer, stage.trainer.model_extra or {}
    if stage.teacher is None:
        raise ValueError("a distill stage needs a teacher, e.g. teacher: {model: reasoning} (an earlier stage, a "
                         "model dir, a .gguf file or a hub id)")
    owned = [k for k in OWNED if k in extra]
    if owned:
        raise ValueError(f"trainer.{owned[0]}: the teacher is stage section teacher.model, which the platform "
                         "resolves and each worker loads from its own copy; remove it")
    if t.beta is not None and t.beta > 1:
        raise ValueError(f"trainer.beta={t.beta}: GKD's beta interpolates forward (0) and reverse (1) KL; give 0..1")
    if stage.think_tokens and (t.beta is None or t.beta > 0):
        # Measured: at beta 0.5 a student that gains <think> here ended 200 steps with P(<think>) = 0.000
        # where the teacher gives 0.998, and never opened a block. Any beta > 0 mixes in the student's own
        # distribution, and the divergence's gradient on a token the student gives ~0 vanishes with it;
        # forward KL's gradient (student minus teacher probability) does not.
        beta = "unset (TRL's default, 0.5)" if t.beta is None else t.beta
        raise ValueError(f"trainer.beta={beta} with add_think_tokens: the <think> tokens this stage adds start "
                         "near probability 0 and GKD's divergence at beta > 0 gives them no gradient, so the "
                         "student never learns to open a <think> block; set trainer.beta: 0 (forward KL, the "
                         "teacher's distribution as target)")
    lmbda = extra.get("lmbda")
    if lmbda is not None and not 0 <= lmbda <= 1:
        raise ValueError(f"trainer.lmbda={lmbda}: the share of on-policy (student-sampled) steps; give 0..1")
    if t.loss_type is not None:
        raise ValueError(f"trainer.loss_type={t.loss_type!r}: GKD's loss is its generalized JSD; set trainer.beta")
    if stage.data.max_prompt_length is not None:
        raise ValueError("data.max_prompt_length applies to dpo and grpo stages; a distill row's prompt is kept whole")


def prepare_tokenizer(tok, stage: StageConfig):
    tok = prepare_chat_tokenizer(tok)
    if stage.think_tokens:
        add_think_tokens(tok)
    return tok


def tokenize_steps(tokenizer_dir: str, stage: StageConfig) -> list[T.Step]:
    return [T.Step(partial(_tokenize, tokenizer_dir=tokenizer_dir, max_length=stage.data.max_length), 256)]


def completion_row(tok, messages: list[dict], max_length: int, template_kwargs: dict | None = None) -> dict | None:
    """One chat row -> input_ids and a completion mask over its final assistant turn; None when the
    prompt leaves no room for a completion token, or renders differently alone."""
    kwargs = template_kwargs or {}
    prompt_text = tok.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True, **kwargs)
    prompt = tok(prompt_text, add_special_tokens=False)["input_ids"]
    full = list(tok.apply_chat_template(messages, tokenize=True, return_dict=True, **kwargs)["input_ids"])
    if full[:len(prompt)] != prompt or len(prompt) >= max_length - 1:
        return None
    full = full[:max_length]
    return {"input_ids": full, "completion_mask": [0] * len(prompt) + [1] * (len(full) - len(prompt)),
            "prompt": prompt_text}


def _tokenize(batch, tokenizer_dir: str, max_length: int):
    tok = cached_tokenizer(tokenizer_dir)
    rows = [completion_row(tok, r["messages"], max_length, json.loads(r.get("chat_template_kwargs") or "{}"))
            for r in T.rows_of(batch)]
    return T.batch_of([r for r in rows if r is not None], COLUMNS)


def heldout_rows(tok, n: int, max_length: int) -> list[dict]:
    """Held-out synthetic problems with their reference traces, as completion rows: where the
    stage measures how far the student's distributions are from the teacher's."""
    problems = world.problems(n, world.EVAL_SEED, split="heldout")
    rows = [completion_row(tok, [{"role": "system", "content": SYSTEM_PROMPT},
                                 {"role": "user", "content": p.question},
                                 {"role": "assistant", "content": world.format_reasoning(p)}], max_length)
            for p in problems]
    return [r for r in rows if r is not None]


def token_kl(student, teacher, rows: list[dict], batch_size: int = 16) -> float:
    """Mean over completion tokens of KL(teacher || student) between next-token distributions."""
    import torch  # on use: the driver imports this module to read configs

    device = next(student.parameters()).device
    total, count = 0.0, 0
    for i in range(0, len(rows), batch_size):
        chunk = rows[i:i + batch_size]
        width = max(len(r["input_ids"]) for r in chunk)
        ids = torch.tensor([r["input_ids"] + [0] * (width - len(r["input_ids"])) for r in chunk], device=device)
        attn = torch.tensor([[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"])) for r in chunk],
                            device=device)
        mask = torch.tensor([r["completion_mask"] + [0] * (width - len(r["input_ids"])) for r in chunk],
                            device=device)[:, 1:].bool()  # position t predicts token t + 1
        with torch.no_grad():
            s = torch.log_softmax(student(input_ids=ids, attention_mask=attn).logits[:, :-1].float(), -1)
            t = torch.log_softmax(teacher(input_ids=ids, attention_mask=attn).logits[:, :-1].float(), -1)
        kl = (t.exp() * (t - s)).sum(-1)
        total, count = total + kl[mask].sum().item(), count + int(mask.sum().item())
    return total / max(count, 1)


def preflight(job: StageJob) -> None:
    """Driver side, before any worker: the teacher's tokenizer and embedding rows equal the
    student's (GKD compares whole distributions over one vocabulary)."""
    teacher_dir = job.local(job.inputs["teacher"])
    why = refs.tokenizer_difference(load_tokenizer(teacher_dir, job.trust_remote_code),
                                     load_tokenizer(job.local(job.tokenizer_dir)))
    if why:
        raise ValueError(f"stage {job.stage.name}: teacher {job.stage.teacher.model!r} and the student do not share "
                         f"a tokenizer ({why}); distillation compares whole next-token distributions: give a teacher "
                         "trained with the student's tokenizer, or set add_think_tokens to match the teacher's")
    rows = [_vocab_size(job.local(job.parent_model)), len(load_tokenizer(job.local(job.tokenizer_dir)))]
    teacher_rows = _vocab_size(teacher_dir)
    if None not in rows and teacher_rows is not None and max(rows) != teacher_rows:
        raise ValueError(f"stage {job.stage.name}: the teacher's output layer has {teacher_rows:,} rows and the "
                         f"student's will have {max(rows):,}; GKD needs the same vocabulary size on both")


def inputs(stage: StageConfig) -> dict[str, str]:
    return {"teacher": stage.teacher.model}


def _vocab_size(model_dir: str) -> int | None:
    config = Path(model_dir) / "config.json"
    return json.loads(config.read_text()).get("vocab_size") if config.is_file() else None


def review(summary: dict, metrics: list[dict]) -> list[str]:
    before, after = summary.get("heldout_kl_before"), summary.get("heldout_kl_after")
    if before is not None and after is not None and after >= before:
        return [f"the student's KL to the teacher on held-out problems did not fall ({before:.3f} -> {after:.3f}); "
                "raise trainer.learning_rate or the steps, or check that the rows suit the teacher"]
    return []


def _kl_callback(job: StageJob, rows: list[dict], holder: dict):
    # worker only, as in train_loop_per_worker
    from transformers import TrainerCallback
    from tinyreason.train.worker import is_rank_zero

    def measure(when: str, step: int) -> None:
        trainer = holder["trainer"]
        student, teacher = trainer.model, getattr(trainer.teacher_model, "module", trainer.teacher_model)
        was_training = student.training
        student.eval()
        kl = token_kl(student, teacher, rows)  # every rank computes: a ZeRO-3 forward gathers collectively
        student.train(was_training)
        if is_rank_zero():
            job.output.append({"step": step, f"heldout_kl_{when}": round(kl, 5)})

    class HeldoutKL(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if rows and state.global_step == 0:
                measure("before", 0)

        def on_train_end(self, args, state, control, **kwargs):
            if rows:
                measure("after", state.global_step)

    return HeldoutKL()


def train_loop_per_worker(config: dict) -> None:
    """model -> teacher -> data -> trainer -> train -> save, on one Ray Train worker."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # as in trl_config
    # worker-only imports: torch, TRL and Ray Train take seconds, and the driver imports this module to read configs
    from trl.experimental.gkd import GKDConfig, GKDTrainer
    from tinyreason.model.presets import load_model
    from tinyreason.train import args, checkpoints, export, lora, reporting, shards, worker

    job, timeline, precision = worker.begin_worker(config)
    stage = job.stage
    timeline.mark("imports")

    # model: the student starts as the parent's export; the teacher is read from this node's copy
    tok, model = shards.load_tokenizer_and_model(job)
    teacher = load_model(job.local(job.inputs["teacher"]), job.trust_remote_code, job.attn_implementation)
    timeline.mark("model_load")

    # data: this worker's shard of completion rows, tokenized on Ray Data
    train = shards.load_shard()
    held = heldout_rows(tok, stage.teacher.heldout_kl_rows, stage.data.max_length)
    timeline.mark("data_shard")

    # trainer: GKD samples with probability lmbda from the student, else trains on the rows
    trl_args = args.trl_arguments(GKDConfig, job, precision, max_length=stage.data.max_length)
    holder: dict = {}
    trainer = GKDTrainer(model=model, teacher_model=teacher, args=trl_args, train_dataset=train, processing_class=tok,
                         callbacks=[reporting.make_report_callback(job, timeline), _kl_callback(job, held, holder)],
                         peft_config=lora.peft_config(job, tok))
    holder["trainer"] = trainer
    shards.use_local_shard(trainer)
    worker.on_trainer(trainer, job)

    # train
    trainer.train(resume_from_checkpoint=checkpoints.resume_checkpoint(config.get("resume_from")))

    # save
    export.export_model(trainer, tok, job)


KIND = StageKind(
    name="distill", summary="logit distillation from a teacher sharing the tokenizer (GKD)", schema="chat",
    trl_config=trl_config, train_loop=train_loop_per_worker, tokenize_steps=tokenize_steps,
    prepare_tokenizer=prepare_tokenizer, check=check, sections=("teacher", "peft"),
    inputs=inputs, preflight=preflight, review=review,
    curves=(LOSS, LEARNING_RATE), summary_metrics=("heldout_kl_before", "heldout_kl_after"),
)
