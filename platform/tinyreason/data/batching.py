"""Token-budget batches: a batch is a number of real tokens, not a number of rows.

Packing changes what a row is. A 512-token bin holds about two chat rows, so
`per_device_train_batch_size: 8` means ~1.9k real tokens per optimizer step unpacked and
~3.9k packed, and half as many steps per epoch; the packing benchmark lost 4-6% held-out
loss to that alone (bench/README.md, packing_sft). With `data.tokens_per_step` a stage's
batch is a token count: the same packed or unpacked, on one worker or eight.

Pure Python over a list of row lengths; the DataLoader takes `TokenBudgetSampler` as its
`batch_sampler` (train/common.py: use_local_shard).
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


class TokenBudgetSampler:
    """A DataLoader `batch_sampler` over fixed token-budget batches.

    The batches are cut once and each epoch visits them in a new seeded order: the
    Trainer counts an epoch's steps once, so every epoch must have the same number, and a
    resumed run must meet exactly the batches it skips. (Rows already sit in fixed packed
    bins, so fixing which bins share a batch loses little more.)
    """

    def __init__(self, batches: list[list[int]], seed: int):
        self.batches = batches
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[int]]:
        order = list(range(len(self.batches)))
        if self.epoch:  # epoch 0 keeps the order the batches were cut in (already shuffled)
            random.Random(self.seed * 1_000_003 + self.epoch).shuffle(order)
        return (self.batches[i] for i in order)

    def mean_rows(self) -> float:
        return sum(map(len, self.batches)) / max(1, len(self.batches))
