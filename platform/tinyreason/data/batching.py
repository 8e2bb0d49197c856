"""Token-budget batches: a batch is a number of real tokens, not a number of rows.

Packing changes what a row is. A 512-token bin holds about two chat rows, so
`per_device_train_batch_size: 8` means ~1.9k real tokens per optimizer step unpacked and
~3.9k packed, and half as many steps per epoch; the packing benchmark lost 4-6% held-out
loss to that alone (bench/README.md, packing_sft). With `data.tokens_per_step` a stage's
batch is a token count: the same packed or unpacked, on one worker or eight.

Pure Python over a list of row lengths; the DataLoader takes `TokenBudgetSampler` (or, for
a batch counted in rows, `RowBatchSampler`) as its `batch_sampler` (train/shards.py:
use_local_shard). Both deal one global order of micro-batches to the ranks.
"""

from __future__ import annotations

import random
from typing import Iterator


def token_budget_batches(lengths: list[int], tokens: float, seed: int) -> list[list[int]]:
    """Row indices in a seeded random order, cut into consecutive batches of ~`tokens` each.

    A row joins the open batch while at least half of it fits the batch's target, so a
    batch misses its target by at most half a row. The miss is carried into the next
    target (bounded by half a batch), so over an epoch batches average `tokens` to within a
    row. A row longer than its target makes a batch on its own. A tail under half a batch
    is dropped, as `dataloader_drop_last` drops a short last batch.
    """
    if tokens <= 0:
        raise ValueError(f"tokens per batch must be positive, got {tokens}")
    order = list(range(len(lengths)))
    random.Random(seed).shuffle(order)
    batches: list[list[int]] = []
    current: list[int] = []
    filled, target = 0, float(tokens)
    for i in order:
        n = lengths[i]
        if current and filled + n / 2 > target:
            batches.append(current)
            target = tokens + max(-tokens / 2, min(tokens / 2, target - filled))
            current, filled = [], 0
        current.append(i)
        filled += n
    if current and filled >= tokens / 2:
        batches.append(current)
    return batches


def deal(batches: list, world: int, rank: int, per_step: int) -> list:
    """This rank's share of a list of global micro-batches, `per_step` of them per optimizer step.

    Global micro-batch j goes to rank j % world, and the list is cut to whole steps, so
    rank r's i-th micro-batch is global micro-batch i * world + r: with `per_step` = world x
    gradient accumulation fixed, optimizer step s trains global micro-batches
    [s * per_step, (s + 1) * per_step) on any number of workers that divides it. That is
    what lets a stage resume on fewer workers at the same data position (train/elastic.py).
    """
    if per_step % world:
        raise ValueError(f"{per_step} micro-batches per step cannot be shared by {world} workers")
    usable = len(batches) // per_step * per_step
    return batches[rank:usable:world]


class TokenBudgetSampler:
    """A DataLoader `batch_sampler` over fixed token-budget batches, dealt to the ranks.

    The batches are cut once, from every row of the stage, and each epoch visits them in a
    new seeded order: the Trainer counts an epoch's steps once, so every epoch must have the
    same number, and a resumed run must meet exactly the batches it skips. (Rows already sit
    in fixed packed bins, so fixing which bins share a batch loses little more.) Each rank
    takes its share of an epoch's order (`deal`).
    """

    def __init__(self, batches: list[list[int]], seed: int, world: int = 1, rank: int = 0, per_step: int = 1):
        self.batches = batches
        self.seed = seed
        self.epoch = 0
        self.world, self.rank, self.per_step = world, rank, per_step

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.batches) // self.per_step * self.per_step // self.world

    def __iter__(self) -> Iterator[list[int]]:
        order = list(range(len(self.batches)))
        if self.epoch:  # epoch 0 keeps the order the batches were cut in (already shuffled)
            random.Random(self.seed * 1_000_003 + self.epoch).shuffle(order)
        return iter(deal([self.batches[i] for i in order], self.world, self.rank, self.per_step))

    def mean_rows(self) -> float:
        return sum(map(len, self.batches)) / max(1, len(self.batches))


class RowBatchSampler:
    """A DataLoader `batch_sampler` of `rows` rows per micro-batch, dealt to the ranks: each
    epoch a seeded permutation of every row of the stage, cut into micro-batches (a short
    last one dropped, as `dataloader_drop_last` does), of which each rank takes its share
    (`deal`). The same global order on any number of workers: the data position of a step
    does not depend on how many workers train it."""

    def __init__(self, n_rows: int, rows: int, seed: int, world: int = 1, rank: int = 0, per_step: int = 1):
        if rows < 1:
            raise ValueError(f"rows per micro-batch must be positive, got {rows}")
        self.n_rows, self.rows, self.seed = n_rows, rows, seed
        self.world, self.rank, self.per_step = world, rank, per_step
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n_rows // self.rows // self.per_step * self.per_step // self.world

    def __iter__(self) -> Iterator[list[int]]:
        order = list(range(self.n_rows))
        random.Random(self.seed * 1_000_003 + self.epoch).shuffle(order)
        batches = [order[i:i + self.rows] for i in range(0, self.n_rows - self.rows + 1, self.rows)]
        return iter(deal(batches, self.world, self.rank, self.per_step))
