"""Stage kind `sft`: chat SFT without chain-of-thought (paper stage 1).

Loss on assistant tokens only, rows packed best-fit-decreasing into full
sequences. The paper's settings map to TRL names: `loss_type: dft`,
`neftune_noise_alpha`, cosine schedules, `warmup_steps` as a ratio.
"""

from __future__ import annotations

from functools import partial

from tinyreason.config import StageConfig
from tinyreason.train import common

KIND = "sft"


def prepare_tokenizer(tok, stage: StageConfig):
    from tinyreason.model.tokenizer import prepare_chat_tokenizer

    return prepare_chat_tokenizer(tok)


def tokenize_steps(tokenizer_dir: str, stage: StageConfig) -> list:
    """messages -> (input_ids, labels) -> packed sequences with boundaries (data.tokenize.Step)."""
    from tinyreason.data import tokenize as T

    steps = [T.Step(partial(_tokenize_chat, tokenizer_dir=tokenizer_dir, max_length=stage.data.max_length), 256)]
    if stage.data.packing:
        # 2048 rows per packing batch: BFD over that many chat-length rows fills >97% of slots
        return steps + [T.Step(partial(T.pack_batch, max_length=stage.data.max_length), 2048)]
    return steps + [T.Step(T.single_batch, 1024)]


def _tokenize_chat(batch, tokenizer_dir: str, max_length: int):
    from tinyreason.data.tokenize import tokenize_chat_batch

    return tokenize_chat_batch(batch, cached_tokenizer(tokenizer_dir), max_length)


_TOKENIZERS: dict = {}


def cached_tokenizer(path: str):
    """One tokenizer per Ray Data worker process, not one per batch (loading costs ~50 ms).
    A `storage.Located` path is fetched from object storage on first use on this node."""
    if path not in _TOKENIZERS:
        from transformers import AutoTokenizer

        from tinyreason.storage import resolve

        _TOKENIZERS[path] = AutoTokenizer.from_pretrained(resolve(path))
    return _TOKENIZERS[path]


def train_loop_per_worker(config: dict) -> None:
    """model -> data -> trainer -> train -> save, on one Ray Train worker."""
    job, timeline, precision = common.begin_worker(config)
    from trl import SFTConfig, SFTTrainer

    from tinyreason.data.tokenize import collate_packed_rows

    timeline.mark("imports")

    # model
    tok, model = common.load_tokenizer_and_model(job)
    timeline.mark("model_load")

    # data: this worker's shard, already tokenized and packed by Ray Data; batches of
    # data.tokens_per_step real tokens when the stage counts its batch in tokens
    train = common.load_shard()
    batches = common.token_budget(train, job.stage)
    timeline.mark("data_shard")

    # trainer: position ids restart at every packed example, so attention never crosses one.
    # A varlen kernel (sdpa_varlen, flash attention) takes the batch as one padding-free sequence (TRL's
    # collator, which also hands it the sequence boundaries); without one (SDPA, eager) each
    # packed row stays a row, or attention would cost (B*L)^2.
    joined = common.padding_free(job)
    args = common.trl_arguments(
        SFTConfig, job, precision,
        max_length=None,  # rows arrive cut to data.max_length and packed on Ray Data
        packing=False,
        padding_free=joined,
        dataset_kwargs={"skip_prepare_dataset": True},
        **common.batch_rows(batches),
    )
    collator = None if joined else partial(collate_packed_rows, pad_token_id=tok.pad_token_id)
    report = common.make_report_callback(job, timeline, layout={"padding_free": joined})
    trainer = SFTTrainer(model=model, args=args, train_dataset=train, processing_class=tok, data_collator=collator,
                         callbacks=[report])
    common.use_local_shard(trainer, batches)

    # train
    trainer.train(resume_from_checkpoint=common.resume_checkpoint(config.get("resume_from")))

    # save
    common.export_model(trainer, tok, job)
