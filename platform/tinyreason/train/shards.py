"""A worker's rows and batches: every row of the stage's Ray Dataset, one global order of
micro-batches dealt to the ranks, and a data loader that takes that order as it is.

Every rank reads every row (`load_shard`); the batches are cut from all of them in a seeded
order, and rank r takes micro-batches r, r + world, ... (data/batching.py: `deal`). A step
therefore trains the same rows whether 1 or 8 workers share it, so a stage resumes at the
same data position after a fault, and on fewer workers after losing a node (train/elastic.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import datasets
import ray.train
from torch.utils.data import DataLoader
from transformers import AutoTokenizer, TrainerCallback

from tinyreason.data.batching import RowBatchSampler, TokenBudgetSampler, token_budget_batches
from tinyreason.model.presets import fit_embeddings, load_model
from tinyreason.model.templates import align_generation
from tinyreason.model.varlen import is_varlen
from tinyreason.train import elastic
from tinyreason.train.job import StageJob

if TYPE_CHECKING:
    from tinyreason.config.experiment import StageConfig


def load_tokenizer_and_model(job: StageJob):
    """The stage's prepared tokenizer and its parent's weights (safetensors only), the
    embedding matrix grown to the tokenizer when the stage added tokens (<think>), and its
    generation config stopping at the tokenizer's end of turn (saved with the export)."""
    tok = AutoTokenizer.from_pretrained(job.local(job.tokenizer_dir))
    model = load_model(job.local(job.parent_model), job.trust_remote_code, job.attn_implementation,
                       revision=job.parent_revision)
    fit_embeddings(model, tok)
    align_generation(model, tok)
    return tok, model


def padding_free(job: StageJob) -> bool:
    """Whether micro-batches are joined into one padding-free sequence (data.padding_free).

    Unset, it follows the attention kernel: on for a varlen one (model/varlen.py)."""
    if job.stage.data.padding_free is not None:
        return job.stage.data.padding_free
    return is_varlen(job.attn_implementation)


TRAIN_DATASET = "train"  # the name fit_stage gives the stage's rows; every rank reads all of them


def load_shard():
    """Every row of the stage's Ray Dataset, as a map-style HF dataset.

    Read once into memory (a 100k-row packed blend is ~50 MB per worker) so the trainer can
    seek in it: resume skips exactly the batches already seen. Every rank holds every row:
    which rows a rank trains is the sampler's business (`use_local_shard`), so it can be
    the same global order on any number of workers.
    """
    shard = ray.train.get_dataset_shard(TRAIN_DATASET)
    columns: dict[str, list] = {}
    for batch in shard.iter_batches(batch_size=1024, batch_format="pandas"):
        for col in batch.columns:
            columns.setdefault(col, []).extend(_as_lists(batch[col].tolist()))
    return datasets.Dataset.from_dict(columns)


def _as_lists(values: list) -> list:
    return [v.tolist() if hasattr(v, "tolist") else v for v in values]


def token_budget(train, stage: StageConfig):
    """The stage's batches by tokens (data/batching.py), dealt to this rank, or None when the
    stage counts its batch in rows. The budget per micro-batch is `data.tokens_per_step` over
    the micro-batches of a step (num_workers x gradient_accumulation_steps, whatever number of
    workers runs it), or with `data.packed_batch: examples` per_device_train_batch_size rows at
    the blend's mean row length. Every rank cuts the same batches from every row."""
    data, t = stage.data, stage.trainer
    if data.tokens_per_step is None and data.packed_batch == "bins":
        return None
    ctx = ray.train.get_context()
    per_step = elastic.micro_batches_per_step(stage)
    lengths = [len(ids) for ids in train["input_ids"]]
    if data.tokens_per_step is not None:
        per_batch, asked = data.tokens_per_step / per_step, "data.tokens_per_step"
    else:
        rows_per_batch = t.per_device_train_batch_size or 8  # TRL's default when unset
        tokens, rows = sum(lengths), sum(map(len, train["seq_lengths"]))
        per_batch, asked = rows_per_batch * tokens / rows, "per_device_train_batch_size"
        bin_tokens = sum(lengths) / max(1, len(lengths))
        if per_batch < bin_tokens:  # a batch is whole bins: it cannot hold less than one
            raise ValueError(
                f"stage {stage.name}: data.packed_batch=examples with per_device_train_batch_size="
                f"{rows_per_batch} rows of {tokens / rows:.0f} tokens on average is "
                f"{per_batch:.0f} tokens per micro-batch, less than one packed bin ({bin_tokens:.0f} tokens at "
                f"data.max_length={data.max_length}); raise per_device_train_batch_size or lower data.max_length")
    batches = token_budget_batches(lengths, per_batch, seed=t.seed)
    if len(batches) < per_step:
        raise ValueError(f"stage {stage.name}: {asked} asks {per_batch:.0f} tokens per micro-batch, but the stage's "
                         f"{sum(lengths)} tokens make {len(batches)} of the {per_step} micro-batches one step needs; "
                         f"lower {asked} or scaling.num_workers")
    return TokenBudgetSampler(batches, seed=t.seed, world=ctx.get_world_size(), rank=ctx.get_world_rank(),
                              per_step=per_step)


def batch_rows(sampler) -> dict:
    """TRL arguments for a token-budget stage: the mean rows per micro-batch stands in for
    per_device_train_batch_size, which DeepSpeed and the Trainer's logs read."""
    return {} if sampler is None else {"per_device_train_batch_size": max(1, round(sampler.mean_rows()))}


def use_local_shard(trainer, sampler=None) -> None:
    """Train on this rank's share of the global order: `sampler`'s batches, or without one
    `per_device_train_batch_size` rows per micro-batch (data/batching.py: RowBatchSampler).

    `accelerate.prepare` wraps the batch sampler so each rank sees 1/world of it; our
    sampler already deals this rank its share, so the wrapper would drop (world-1)/world
    of it. We make the wrapper a pass-through, the same fix transformers applies to its own
    rank-aware samplers. The sampler learns the epoch from a callback: the Trainer's own
    `set_epoch` does not reach it through accelerate's resume wrapper.
    """
    if sampler is None:
        ctx, a = ray.train.get_context(), trainer.args
        sampler = RowBatchSampler(len(trainer.train_dataset), a.per_device_train_batch_size, seed=a.seed,
                                  world=ctx.get_world_size(), rank=ctx.get_world_rank(),
                                  per_step=ctx.get_world_size() * a.gradient_accumulation_steps)

    def get_train_dataloader():
        loader = trainer.accelerator.prepare(_loader(trainer, sampler))
        wrapper = getattr(loader, "batch_sampler", None)
        if wrapper is not None and hasattr(wrapper, "num_processes"):
            wrapper.num_processes, wrapper.process_index = 1, 0
        return loader

    trainer.get_train_dataloader = get_train_dataloader

    class SamplerEpoch(TrainerCallback):
        def on_epoch_begin(self, args, state, control, **kwargs):
            sampler.set_epoch(int(state.epoch or 0))  # resumed mid-epoch e: e + fraction

    trainer.add_callback(SamplerEpoch())


def _loader(trainer, sampler):
    a = trainer.args
    return DataLoader(trainer.train_dataset, batch_sampler=sampler, collate_fn=trainer.data_collator,
                      num_workers=a.dataloader_num_workers, pin_memory=a.dataloader_pin_memory)
