"""Stage kind `sft`: chat SFT without chain-of-thought (paper stage 1).

Loss on assistant tokens only, rows packed best-fit-decreasing into full sequences.
The paper's settings map to TRL names: `loss_type: dft`, `neftune_noise_alpha`, cosine
schedules, `warmup_steps` as a ratio. Its blends hold chat rows; rows whose assistant
turns think are rejected unless `data.think_rows: keep`. pretrain and reasoning_sft
train with this module's loop.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from tinyreason.data import tokenize as T
from tinyreason.model.tokenizer import cached_tokenizer, prepare_chat_tokenizer
from tinyreason.train.kind import LEARNING_RATE, LOSS, Curve, StageKind

if TYPE_CHECKING:
    from tinyreason.config.experiment import StageConfig

SFT_LOSSES = ("nll", "dft")
SFT_CURVES = (LOSS, Curve("mean_token_accuracy", "mean token accuracy"), Curve("entropy", "entropy"), LEARNING_RATE)


def trl_config() -> type:
    from trl import SFTConfig  # heavy (~4 s): only when a config is checked or a worker trains

    return SFTConfig


def check(stage: StageConfig) -> None:
    """Rules of the SFT family (pretrain, sft, reasoning_sft)."""
    t = stage.trainer
    if t.beta is not None:
        raise ValueError(f"trainer.beta={t.beta} is a preference or RL setting; remove it from a {stage.kind} stage")
    if t.loss_type not in (None, *SFT_LOSSES):
        raise ValueError(f"trainer.loss_type={t.loss_type!r} is not an SFT loss; allowed: {', '.join(SFT_LOSSES)}")
    if stage.data.max_prompt_length is not None:
        raise ValueError("data.max_prompt_length applies to dpo stages only")


def prepare_tokenizer(tok, stage: StageConfig):
    return prepare_chat_tokenizer(tok)


def tokenize_steps(tokenizer_dir: str, stage: StageConfig) -> list[T.Step]:
    """messages -> (input_ids, labels) -> packed sequences with boundaries."""
    steps = [T.Step(partial(_tokenize_chat, tokenizer_dir=tokenizer_dir, max_length=stage.data.max_length,
                            overlong=stage.data.overlong), 256, accounts=True)]
    if stage.data.packing:
        # 2048 rows per packing batch: BFD over that many chat-length rows fills >97% of slots
        return steps + [T.Step(partial(T.pack_batch, max_length=stage.data.max_length), 2048)]
    return steps + [T.Step(T.single_batch, 1024)]


def _tokenize_chat(batch, tokenizer_dir: str, max_length: int, overlong: str = "drop"):
    return T.tokenize_chat_batch(batch, cached_tokenizer(tokenizer_dir), max_length, overlong)


def train_loop_per_worker(config: dict) -> None:
    """model -> data -> trainer -> train -> save, on one Ray Train worker."""
    # worker-only imports: torch, TRL and Ray Train take seconds, and the driver imports this module to read configs
    from trl import SFTConfig, SFTTrainer
    from tinyreason.train import args, checkpoints, export, lora, reporting, shards, worker

    job, timeline, precision = worker.begin_worker(config)
    timeline.mark("imports")

    # model
    tok, model = shards.load_tokenizer_and_model(job)
    timeline.mark("model_load")

    # data: this worker's shard, already tokenized and packed by Ray Data; batches of
    # data.tokens_per_step real tokens when the stage counts its batch in tokens
    train = shards.load_shard()
    batches = shards.token_budget(train, job.stage)
    timeline.mark("data_shard")

    # trainer: position ids restart at every packed example, so attention never crosses one.
    # A varlen kernel (sdpa_varlen, flash attention) takes the batch as one padding-free sequence (TRL's
    # collator, which also hands it the sequence boundaries); without one (SDPA, eager) each
    # packed row stays a row, or attention would cost (B*L)^2.
    joined = shards.padding_free(job)
    resume = checkpoints.resume_plan(job, config.get("resume_from"))  # converted when another worker count wrote it
    trl_args = args.trl_arguments(
        SFTConfig, job, precision, resume=resume,
        max_length=None,  # rows arrive cut to data.max_length and packed on Ray Data
        packing=False,
        padding_free=joined,
        dataset_kwargs={"skip_prepare_dataset": True},
        **shards.batch_rows(batches),
    )
    collator = None if joined else partial(T.collate_packed_rows, pad_token_id=tok.pad_token_id)
    report = reporting.make_report_callback(job, timeline, layout={"padding_free": joined})
    trainer = SFTTrainer(model=model, args=trl_args, train_dataset=train, processing_class=tok,
                         data_collator=collator, callbacks=[report], peft_config=lora.peft_config(job, tok))
    shards.use_local_shard(trainer, batches)
    worker.on_trainer(trainer, job)

    # train
    trainer.train(resume_from_checkpoint=resume.path)

    # save
    export.export_model(trainer, tok, job)


KIND = StageKind(
    name="sft", summary="chat SFT without chain-of-thought (paper stage 1)", schema="chat",
    trl_config=trl_config, train_loop=train_loop_per_worker, tokenize_steps=tokenize_steps,
    prepare_tokenizer=prepare_tokenizer, check=check, packing="chat", rows="packed bins", sections=("peft",),
    curves=SFT_CURVES, summary_metrics=("mean_token_accuracy", "entropy"),
)
