"""Stage kind `dpo`: preference alignment on chosen/rejected pairs (paper stage 3).

The paper's run: `loss_type: apo_zero`, `beta: 0.1`, lr 1e-5, max grad norm 0.2,
`cosine_with_min_lr` (min_lr_rate 0.1), max prompt length 1048, max length 2048.
Rows are tokenized on Ray Data into prompt/chosen/rejected ids (the prompt cut
from the left to `data.max_prompt_length`, which TRL 1.x no longer does itself).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from tinyreason.data import tokenize as T
from tinyreason.model.tokenizer import cached_tokenizer, prepare_chat_tokenizer
from tinyreason.train.kind import LOSS, Curve, StageKind

if TYPE_CHECKING:
    from tinyreason.config.experiment import StageConfig

DEFAULT_BETA, DEFAULT_LOSS = 0.1, "sigmoid"  # TRL's DPOConfig defaults, written into the stage config


def trl_config() -> type:
    from trl import DPOConfig  # heavy (~4 s): only when a config is checked or a worker trains

    return DPOConfig


def check(stage: StageConfig) -> None:
    t = stage.trainer
    if t.beta is None:
        t.beta = DEFAULT_BETA
    if t.beta <= 0:
        raise ValueError(f"trainer.beta={t.beta}: DPO's beta scales the log-ratio and must be > 0 (the paper: 0.1)")
    if t.loss_type is None:
        t.loss_type = DEFAULT_LOSS


def prepare_tokenizer(tok, stage: StageConfig):
    return prepare_chat_tokenizer(tok)


def tokenize_steps(tokenizer_dir: str, stage: StageConfig) -> list[T.Step]:
    return [T.Step(partial(_tokenize_preference, tokenizer_dir=tokenizer_dir, max_length=stage.data.max_length,
                           max_prompt_length=stage.data.max_prompt_length, overlong=stage.data.overlong), 256,
                   accounts=True)]


def _tokenize_preference(batch, tokenizer_dir: str, max_length: int, max_prompt_length: int | None,
                         overlong: str = "drop"):
    return T.tokenize_preference_batch(batch, cached_tokenizer(tokenizer_dir), max_length, max_prompt_length,
                                       overlong)


def reference_logps(model_dir: str, rows: list[dict], pad_token_id: int, max_length: int,
                    batch_size: int = 16, trust_remote_code: bool = False) -> list[tuple[float, float]]:
    """Sum of the reference model's log-probs over each chosen and rejected completion.

    Batched exactly as TRL's DataCollatorForPreference batches training rows, so the
    values equal what DPOTrainer's own precompute pass would produce for these rows.
    """
    # a Ray task runs this; the driver imports the module to read configs, without torch or TRL
    import torch
    from trl.trainer.dpo_trainer import DataCollatorForPreference
    from tinyreason.model.presets import load_model

    model = load_model(model_dir, trust_remote_code).eval()
    collate = DataCollatorForPreference(pad_token_id=pad_token_id, max_length=max_length)
    out = []
    for i in range(0, len(rows), batch_size):
        batch = collate(rows[i:i + batch_size])
        with torch.no_grad():
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        targets = batch["input_ids"][:, 1:]
        mask = batch["completion_mask"][:, 1:].float()
        token_logps = torch.log_softmax(logits.float(), -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        sums = (token_logps * mask).sum(-1)
        chosen, rejected = sums.chunk(2)
        out += list(zip(chosen.tolist(), rejected.tolist()))
    return out


def train_loop_per_worker(config: dict) -> None:
    """model -> data -> trainer -> train -> save, on one Ray Train worker."""
    # worker-only imports: torch, TRL and Ray Train take seconds, and the driver imports this module to read configs
    from trl import DPOConfig
    from tinyreason.model.presets import load_model
    from tinyreason.train import args, checkpoints, compat, export, lora, reporting, shards, worker

    job, timeline, precision = worker.begin_worker(config)
    stage = job.stage
    timeline.mark("imports")

    # model: the policy and a frozen reference, both the parent stage's export. With LoRA, TRL's
    # reference is the policy with its adapter switched off: the parent, without a second copy.
    tok, model = shards.load_tokenizer_and_model(job)
    ref_model = None
    if not stage.trainer.to_trl().get("precompute_ref_log_probs") and stage.peft is None:
        ref_model = load_model(job.local(job.parent_model), job.trust_remote_code, job.attn_implementation)
    timeline.mark("model_load")

    # data
    train = shards.load_shard()
    timeline.mark("data_shard")

    # trainer
    resume = checkpoints.resume_plan(job, config.get("resume_from"))  # converted when another worker count wrote it
    trl_args = args.trl_arguments(DPOConfig, job, precision, resume=resume, max_length=stage.data.max_length)
    trainer = compat.pretokenized_dpo_trainer()(
        model=model, ref_model=ref_model, args=trl_args, train_dataset=train, processing_class=tok,
        callbacks=[reporting.make_report_callback(job, timeline)], peft_config=lora.peft_config(job, tok),
    )
    shards.use_local_shard(trainer)
    worker.on_trainer(trainer, job)

    # train
    trainer.train(resume_from_checkpoint=resume.path)

    # save
    export.export_model(trainer, tok, job)


KIND = StageKind(
    name="dpo", summary="preference alignment on chosen/rejected pairs (paper stage 3)", schema="preference",
    trl_config=trl_config, train_loop=train_loop_per_worker, tokenize_steps=tokenize_steps,
    prepare_tokenizer=prepare_tokenizer, check=check, rows="pairs", sections=("peft",),
    curves=(LOSS, Curve("rewards/accuracies", "reward accuracy"), Curve("rewards/chosen", "chosen reward"),
            Curve("rewards/rejected", "rejected reward"), Curve("rewards/margins", "reward margin")),
    summary_metrics=("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"),
)
