"""Scores over several samples per problem: pass@k (Chen et al. 2021) and maj@k (self-consistency)."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence

from tinyreason.stats.dist import StatsError
from tinyreason.stats.scores import Score, mean_se, proportion_score

Normalize = Callable[[str], "str | None"]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct: 1 - C(n-c, k) / C(n, k).

    Chen et al. 2021 (Codex, fig. 3): the ratio of binomials is computed as the product
    prod_{i=n-c+1..n} (1 - k/i), which never forms C(200, 100) ~ 9e58. Sampling exactly k
    and counting a hit instead has the same mean but a much larger variance.
    """
    try:
        n, c, k = operator.index(n), operator.index(c), operator.index(k)
    except TypeError:
        raise StatsError(f"pass_at_k needs whole numbers, got n={n!r}, c={c!r}, k={k!r}: pass counts "
                         "of samples, not rates") from None
    if not 0 <= c <= n:
        raise StatsError(f"pass_at_k: correct count c={c} must be between 0 and the n={n} samples drawn")
    if not 1 <= k <= n:
        raise StatsError(f"pass_at_k: k={k} must be between 1 and n={n}: draw at least k samples per "
                         "problem (Chen et al. use n=200 for k up to 100)")
    if n - c < k:  # every k-subset holds a correct sample
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def pass_at_k_over_items(correct_counts: Sequence[int], n: int, k: int) -> Score:
    """Mean pass@k over problems (n samples each), with the standard error over problems.

    The spread of the per-problem estimates holds both the problem-to-problem spread and each
    estimate's own sampling noise, so the se needs no extra term. One problem: se unknown.
    """
    if not correct_counts:
        raise StatsError("pass_at_k_over_items got no problems: pass one correct count per problem")
    per_item = [pass_at_k(n, c, k) for c in correct_counts]
    return Score(math.fsum(per_item) / len(per_item), mean_se(per_item), len(per_item))


def majority_vote(answers: Sequence[str | None], normalize: Normalize | None = None) -> str | None:
    """The most frequent normalized answer; a tie goes to the one that appeared first.

    None answers (nothing extracted), and answers `normalize` maps to None, never win unless
    every answer is None: a model that fails to answer 3 times in 4 still gets its one
    answer voted. Returns the normalized form, to compare with the normalized reference.
    """
    counts: dict[str, int] = {}  # insertion order = first occurrence, which breaks ties
    for answer in answers:
        key = answer if answer is None or normalize is None else normalize(answer)
        if key is not None:
            counts[key] = counts.get(key, 0) + 1
    if not counts:
        return None
    top = max(counts.values())
    return next(key for key, count in counts.items() if count == top)


def maj_at_k_over_items(answers_per_item: Sequence[Sequence[str | None]], references: Sequence[str],
                        k: int | None = None, normalize: Normalize | None = None) -> Score:
    """Accuracy of the majority vote over each problem's first k answers (all, k=None).

    The first k of n i.i.d. samples are an unbiased draw of k; averaging over every k-subset
    would lower the variance but costs C(n, k) votes. The per-problem outcome is 0 or 1, so
    the se is the binomial one of `proportion_se`.
    """
    if len(answers_per_item) != len(references):
        raise StatsError(f"maj@k got answers for {len(answers_per_item)} problems and "
                         f"{len(references)} references: pass one reference per problem, same order")
    if not references:
        raise StatsError("maj_at_k_over_items got no problems")
    hits = 0
    for i, (answers, reference) in enumerate(zip(answers_per_item, references)):
        take = len(answers) if k is None else k
        if take < 1 or len(answers) < take:
            raise StatsError(f"maj@k: problem {i} has {len(answers)} answers, needs k={take} >= 1: "
                             "sample at least k per problem, or lower k")
        gold = reference if normalize is None else normalize(reference)
        if gold is None:
            raise StatsError(f"maj@k: reference {reference!r} of problem {i} normalizes to None: "
                             "fix the reference or the normalize function")
        hits += majority_vote(answers[:take], normalize) == gold
    return proportion_score(hits / len(references), len(references))
