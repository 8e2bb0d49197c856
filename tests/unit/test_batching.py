"""Token-budget batches (data/batching.py): a batch is a number of real tokens, packed or not;
and one global order of micro-batches dealt to the ranks, the same on any number of workers."""

import random

import pytest
from accelerate import skip_first_batches
from torch.utils.data import DataLoader

from tinyreason.data.batching import RowBatchSampler, TokenBudgetSampler, deal, token_budget_batches
from tinyreason.data.tokenize import pack_bfd

MAX_LEN, BUDGET = 512, 1856  # 8 chat rows of the packing benchmark's mean length


def _chat_lengths(n: int, seed: int = 0) -> list[int]:
    """Long-tailed like chat rows: mostly short, some near max_length."""
    rng = random.Random(seed)
    return [min(MAX_LEN, max(8, int(rng.lognormvariate(5.2, 0.6)))) for _ in range(n)]


def test_every_row_is_used_once_and_only_a_short_tail_is_dropped():
    lengths = _chat_lengths(1000)
    batches = token_budget_batches(lengths, BUDGET, seed=0)
    used = [i for b in batches for i in b]
    assert len(used) == len(set(used))
    dropped = set(range(len(lengths))) - set(used)
    assert sum(lengths[i] for i in dropped) < BUDGET / 2


def test_batches_track_the_budget_to_within_half_a_row_over_the_whole_epoch():
    lengths = _chat_lengths(2000)
    batches = token_budget_batches(lengths, BUDGET, seed=1)
    cum = 0
    for k, b in enumerate(batches, 1):
        cum += sum(lengths[i] for i in b)
        assert abs(cum - k * BUDGET) <= MAX_LEN / 2, (k, cum)  # the miss is carried, never accumulated
    assert len({len(b) for b in batches}) > 1  # rows per batch vary; tokens do not


def test_packed_and_unpacked_rows_take_the_same_number_of_steps():
    """The point of a token budget: packing changes the rows, not the optimizer steps."""
    rows = [{"input_ids": [1] * n, "labels": [1] * n} for n in _chat_lengths(1500, seed=2)]
    bins = pack_bfd(rows, MAX_LEN)
    assert len(bins) < len(rows) / 1.8
    unpacked = token_budget_batches([len(r["input_ids"]) for r in rows], BUDGET, seed=0)
    packed = token_budget_batches([len(b["input_ids"]) for b in bins], BUDGET, seed=0)
    assert abs(len(packed) - len(unpacked)) <= 1


def test_a_row_longer_than_the_budget_is_a_batch_of_its_own():
    batches = token_budget_batches([100, 5000, 100, 100], 300, seed=0)
    assert [b for b in batches if 1 in b] == [[1]]


def test_the_cut_is_seeded():
    lengths = _chat_lengths(300)
    assert token_budget_batches(lengths, BUDGET, seed=3) == token_budget_batches(lengths, BUDGET, seed=3)
    assert token_budget_batches(lengths, BUDGET, seed=3) != token_budget_batches(lengths, BUDGET, seed=4)


def test_a_zero_budget_is_refused():
    with pytest.raises(ValueError, match="positive"):
        token_budget_batches([1, 2], 0, seed=0)


def _epoch(sampler: TokenBudgetSampler, epoch: int) -> list[list[int]]:
    sampler.set_epoch(epoch)
    return list(sampler)


def test_each_epoch_visits_the_same_batches_in_a_new_order():
    batches = token_budget_batches(_chat_lengths(800), BUDGET, seed=0)
    sampler = TokenBudgetSampler(batches, seed=0)
    first, second = _epoch(sampler, 0), _epoch(sampler, 1)
    assert first == batches and len(sampler) == len(batches)
    assert sorted(second) == sorted(first) and second != first
    assert _epoch(sampler, 1) == second  # the order is a function of (seed, epoch) alone


def test_a_resumed_epoch_skips_exactly_the_batches_already_trained():
    """What the Trainer does on resume: accelerate's skip_first_batches over the same sampler."""
    lengths = _chat_lengths(400)
    sampler = TokenBudgetSampler(token_budget_batches(lengths, BUDGET, seed=0), seed=0)
    loader = DataLoader(list(range(len(lengths))), batch_sampler=sampler, collate_fn=list)
    sampler.set_epoch(2)
    full = list(loader)
    sampler.set_epoch(2)
    assert list(skip_first_batches(loader, 5)) == full[5:]


def _steps(samplers: list, accumulation: int, epoch: int = 0) -> list[list[int]]:
    """The rows each optimizer step trains, over all ranks: what the ranks' data loaders
    yield, `accumulation` micro-batches per rank per step, after a resume at any step too."""
    per_rank = []
    for sampler in samplers:
        sampler.set_epoch(epoch)
        per_rank.append(list(sampler))
    n = len(per_rank[0]) // accumulation
    assert all(len(r) == len(per_rank[0]) for r in per_rank)  # every rank takes as many steps
    return [sorted(i for r in per_rank for b in r[s * accumulation:(s + 1) * accumulation] for i in b)
            for s in range(n)]


@pytest.mark.parametrize("epoch", [0, 3])
def test_a_step_trains_the_same_rows_on_2_workers_as_on_1_accumulating_twice(epoch):
    two = [RowBatchSampler(101, 4, seed=7, world=2, rank=r, per_step=2) for r in range(2)]
    one = [RowBatchSampler(101, 4, seed=7, world=1, rank=0, per_step=2)]
    assert _steps(two, 1, epoch) == _steps(one, 2, epoch)
    assert len(_steps(one, 2, epoch)) == 101 // 4 // 2 == len(two[0])  # whole steps only


def test_token_budget_batches_are_dealt_the_same_way_on_4_2_and_1_workers():
    batches = token_budget_batches(_chat_lengths(900), BUDGET / 4, seed=0)
    orders = [_steps([TokenBudgetSampler(batches, seed=0, world=w, rank=r, per_step=4) for r in range(w)], 4 // w, 2)
              for w in (4, 2, 1)]
    assert orders[0] == orders[1] == orders[2] and len(orders[0]) == len(batches) // 4


def test_row_batches_cover_each_row_once_an_epoch_in_a_new_order_each_epoch():
    sampler = RowBatchSampler(40, 5, seed=0, world=1, rank=0, per_step=1)
    first, second = _epoch(sampler, 0), _epoch(sampler, 1)
    assert sorted(i for b in first for i in b) == list(range(40)) and first != second


def test_a_step_that_the_workers_cannot_share_is_refused():
    assert deal(list(range(10)), 2, 1, 4) == [1, 3, 5, 7]
    with pytest.raises(ValueError, match="6 micro-batches per step cannot be shared by 4 workers"):
        deal(list(range(12)), 4, 0, 6)
