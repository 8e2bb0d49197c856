"""A worker's rows and batches: its fixed shard of the stage's Ray Dataset, token-budget
batches, and a data loader that takes the shard as it is.

The driver split the rows into one fixed shard per rank (`launch.fit_stage`), read in a
fixed order, so a resumed attempt meets exactly the batches it skips.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import datasets
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from transformers import AutoTokenizer, TrainerCallback

from tinyreason.data.batching import TokenBudgetSampler, token_budget_batches
from tinyreason.model.presets import fit_embeddings, load_model
from tinyreason.model.templates import align_generation
from tinyreason.model.varlen import is_varlen
from tinyreason.train.job import StageJob

if TYPE_CHECKING:
    from tinyreason.config.experiment import StageConfig


def load_tokenizer_and_model(job: StageJob):
    """The stage's prepared tokenizer and its parent's weights (safetensors only), the
    embedding matrix grown to the tokenizer when the stage added tokens (<think>), and its
    generation config stopping at the tokenizer's end of turn (saved with the export)."""
    tok = AutoTokenizer.from_pretrained(job.local(job.tokenizer_dir))
    model = load_model(job.local(job.parent_model), job.trust_remote_code, job.attn_implementation)
    fit_embeddings(model, len(tok))
    align_generation(model, tok)
    return tok, model


def padding_free(job: StageJob) -> bool:
    """Whether micro-batches are joined into one padding-free sequence (data.padding_free).

    Unset, it follows the attention kernel: on for a varlen one (model/varlen.py)."""
    if job.stage.data.padding_free is not None:
        return job.stage.data.padding_free
    return is_varlen(job.attn_implementation)


def shard_name(rank: int) -> str:
    return f"train_{rank}"


def load_shard():
    """This worker's shard of the Ray Dataset, as a map-style HF dataset.

    The driver split the rows into one fixed shard per rank (`launch.fit_stage`); we
    read ours once into memory (a 100k-row packed blend is ~50 MB per worker) so the
    trainer can seek in it: resume skips exactly the batches already seen.
    """
    shard = ray.train.get_dataset_shard(shard_name(ray.train.get_context().get_world_rank()))
    columns: dict[str, list] = {}
    for batch in shard.iter_batches(batch_size=1024, batch_format="pandas"):
        for col in batch.columns:
            columns.setdefault(col, []).extend(_as_lists(batch[col].tolist()))
    return datasets.Dataset.from_dict(columns)


def _as_lists(values: list) -> list:
    return [v.tolist() if hasattr(v, "tolist") else v for v in values]


def token_budget(train, stage: StageConfig):
    """This rank's batches by tokens (data/batching.py), or None when the stage counts its
    batch in rows. The budget is `data.tokens_per_step`, or with `data.packed_batch: examples`
    per_device_train_batch_size rows at the blend's mean row length. Every rank must take
    the same number of steps or the gradient all-reduce hangs, so all keep the fewest."""
    data, t = stage.data, stage.trainer
    if data.tokens_per_step is None and data.packed_batch == "bins":
        return None
    world = ray.train.get_context().get_world_size()
    lengths = [len(ids) for ids in train["input_ids"]]
    if data.tokens_per_step is not None:
        per_batch, asked = data.tokens_per_step / (world * t.gradient_accumulation_steps), "data.tokens_per_step"
    else:
        rows_per_batch = t.per_device_train_batch_size or 8  # TRL's default when unset
        tokens, rows = _over_ranks([sum(lengths), sum(map(len, train["seq_lengths"]))], world, "SUM")
        per_batch, asked = rows_per_batch * tokens / rows, "per_device_train_batch_size"
        bin_tokens = sum(lengths) / max(1, len(lengths))
        if per_batch < bin_tokens:  # a batch is whole bins: it cannot hold less than one
            raise ValueError(
                f"stage {stage.name}: data.packed_batch=examples with per_device_train_batch_size="
                f"{rows_per_batch} rows of {tokens / rows:.0f} tokens on average is "
                f"{per_batch:.0f} tokens per micro-batch, less than one packed bin ({bin_tokens:.0f} tokens at "
                f"data.max_length={data.max_length}); raise per_device_train_batch_size or lower data.max_length")
    batches = token_budget_batches(lengths, per_batch, seed=t.seed)
    (steps,) = _over_ranks([len(batches)], world, "MIN")
    if steps == 0:
        raise ValueError(f"stage {stage.name}: {asked} asks {per_batch:.0f} tokens per micro-batch but a worker's "
                         f"shard holds {sum(lengths)}; lower {asked} or scaling.num_workers")
    return TokenBudgetSampler(batches[:steps], seed=t.seed)


def _over_ranks(values: list[int], world: int, op: str) -> list[int]:
    """An all-reduce of a few integers (SUM or MIN) over the stage's ranks."""
    if world == 1:
        return values
    t = torch.tensor(values, device=ray.train.torch.get_device())
    dist.all_reduce(t, op=getattr(dist.ReduceOp, op))
    return [int(v) for v in t.tolist()]


def batch_rows(sampler) -> dict:
    """TRL arguments for a token-budget stage: the mean rows per micro-batch stands in for
    per_device_train_batch_size, which DeepSpeed and the Trainer's logs read."""
    return {} if sampler is None else {"per_device_train_batch_size": max(1, round(sampler.mean_rows()))}


def use_local_shard(trainer, sampler=None) -> None:
    """Train on this rank's shard as it is, in `sampler`'s batches when one is given.

    `accelerator.prepare` wraps the batch sampler so each rank sees 1/world of it; our
    rank already holds only its Ray Data shard, so the wrapper would drop (world-1)/world
    of the data. We make the wrapper a pass-through, the same fix transformers applies to
    its own rank-aware samplers. A token-budget sampler learns the epoch from a callback:
    the Trainer's own `set_epoch` does not reach it through accelerate's resume wrapper.
    """
    base = trainer.get_train_dataloader

    def get_train_dataloader():
        loader = base() if sampler is None else trainer.accelerator.prepare(_loader(trainer, sampler))
        wrapper = getattr(loader, "batch_sampler", None)
        if wrapper is not None and hasattr(wrapper, "num_processes"):
            wrapper.num_processes, wrapper.process_index = 1, 0
        return loader

    trainer.get_train_dataloader = get_train_dataloader
    if sampler is not None:
        class SamplerEpoch(TrainerCallback):
            def on_epoch_begin(self, args, state, control, **kwargs):
                sampler.set_epoch(int(state.epoch or 0))  # resumed mid-epoch e: e + fraction

        trainer.add_callback(SamplerEpoch())


def _loader(trainer, sampler):
    a = trainer.args
    return DataLoader(trainer.train_dataset, batch_sampler=sampler, collate_fn=trainer.data_collator,
                      num_workers=a.dataloader_num_workers, pin_memory=a.dataloader_pin_memory)
