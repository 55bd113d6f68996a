"""Budget split across sub-tasks: proportional shares in whole tokens that sum exactly to the budget.

Pure: no I/O, no clock, no randomness. All arithmetic is exact (integers and ``Fraction``); floats never
enter a share, so the same input always gives the same shares on every machine.

The rule
--------
Each item is ``(estimated_tokens, priority)``. Its weight is ``estimated_tokens * PRIORITY_MULTIPLIERS[p]``
(low 1/2, medium 1, high 3/2, critical 2) and its exact share is ``budget * weight / sum(weights)``. Whole
tokens come from largest-remainder rounding: every item gets the floor of its exact share, and the tokens
left over (fewer than the number of items) go one each to the items with the largest fractional parts,
earlier items first on ties. Hence:

* the shares sum exactly to the budget;
* each share is within one token of its exact value (strictly less than one away);
* an item with a higher priority and the same estimate never gets less than a lower-priority one;
* multiplying every estimate by the same k > 0 changes nothing.

Zero estimates: when every estimate is zero, the weights fall back to the multipliers alone (a critical item
still gets four times a low one). When the weights still sum to zero (only possible with caller-supplied
multipliers of zero), every item gets an equal split. When some estimates are zero and others are not, a
zero-estimate item gets a share of zero: it asked for nothing.

Worked example: budget 100,000 over ``(50_000, "low")`` and ``(50_000, "critical")`` gives weights 25,000
and 100,000, so shares 20,000 and 80,000. The original Butler description quoted 33k/67k for the same
case, which is only reachable with an unstated cap on the multiplier ratio; we apply none.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Literal, get_args

from butler_skill.errors import InvalidInput

Priority = Literal["low", "medium", "high", "critical"]
PRIORITIES: tuple[Priority, ...] = get_args(Priority)

PRIORITY_MULTIPLIERS: Mapping[Priority, Fraction] = {
    "low": Fraction(1, 2),
    "medium": Fraction(1),
    "high": Fraction(3, 2),
    "critical": Fraction(2),
}

__all__ = [
    "PRIORITIES",
    "PRIORITY_MULTIPLIERS",
    "Priority",
    "exact_shares",
    "largest_remainder",
    "largest_remainder_int",
    "retry_shares",
    "split_budget",
]


def _check_items(items: Sequence[tuple[int, Priority]], multipliers: Mapping[Priority, Fraction]) -> None:
    for i, (estimate, priority) in enumerate(items):
        if isinstance(estimate, bool) or not isinstance(estimate, int):
            raise InvalidInput("estimated tokens must be an integer", index=i)
        if estimate < 0:
            raise InvalidInput("estimated tokens must not be negative", index=i, estimate=estimate)
        if priority not in multipliers:
            raise InvalidInput("unknown priority", index=i, priority=str(priority))


def _weights(
    items: Sequence[tuple[int, Priority]], multipliers: Mapping[Priority, Fraction]
) -> list[Fraction]:
    _check_items(items, multipliers)
    weights = [Fraction(e) * Fraction(multipliers[p]) for e, p in items]
    if sum(weights) == 0:
        # All estimates are zero: split by multiplier alone.
        weights = [Fraction(multipliers[p]) for _, p in items]
    if sum(weights) == 0:
        # Only reachable with caller-supplied zero multipliers: all-equal fallback.
        weights = [Fraction(1)] * len(items)
    return weights


def exact_shares(
    budget: int,
    items: Sequence[tuple[int, Priority]],
    multipliers: Mapping[Priority, Fraction] = PRIORITY_MULTIPLIERS,
) -> list[Fraction]:
    """The exact (fractional) proportional share of each item; they sum to ``budget``."""
    _check_budget(budget)
    if not items:
        return []
    weights = _weights(items, multipliers)
    total = sum(weights)
    return [budget * w / total for w in weights]


def largest_remainder(total: int, exact: Sequence[Fraction]) -> list[int]:
    """Round exact shares that sum to ``total`` into integers that sum to ``total``.

    Floors first; the remaining units go to the largest fractional parts, earlier index first on ties.
    """
    floors = [q.numerator // q.denominator for q in exact]
    left = total - sum(floors)
    if left:
        order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - floors[i]), i))
        for i in order[:left]:
            floors[i] += 1
    return floors


def largest_remainder_int(total: int, numerators: Sequence[int], denominator: int) -> list[int]:
    """`largest_remainder(total, [n / denominator for n in numerators])` in integers (the numerators sum to
    ``total * denominator``, ``denominator > 0``): no Fraction is built, so a plan of 1,000 sub-tasks takes about
    a millisecond instead of fifteen. A property test keeps the two equal."""
    floors = [n // denominator for n in numerators]
    left = total - sum(floors)
    if left:
        # The fractional parts share one denominator, so comparing the remainders compares them exactly.
        order = sorted(range(len(numerators)), key=lambda i: (-(numerators[i] % denominator), i))
        for i in order[:left]:
            floors[i] += 1
    return floors


def _int_weights(items: Sequence[tuple[int, Priority]], multipliers: Mapping[Priority, Fraction]) -> list[int]:
    """The rule's weights (`_weights`, with its checks and fallbacks) scaled by one common factor to integers:
    the shares depend only on the weights' ratios, so the split is the same."""
    _check_items(items, multipliers)
    scale = 1
    for m in multipliers.values():
        scale = math.lcm(scale, Fraction(m).denominator)
    factor = {p: int(Fraction(m) * scale) for p, m in multipliers.items()}
    weights = [e * factor[p] for e, p in items]
    if sum(weights) == 0:
        weights = [factor[p] for _, p in items]  # all estimates zero: by multiplier alone
    if sum(weights) == 0:
        weights = [1] * len(items)  # only with caller-supplied zero multipliers
    if sum(weights) < 0:  # only with caller-supplied negative multipliers: the same ratios over a positive total
        weights = [-w for w in weights]
    return weights


def split_budget(
    budget: int,
    items: Sequence[tuple[int, Priority]],
    multipliers: Mapping[Priority, Fraction] = PRIORITY_MULTIPLIERS,
) -> list[int]:
    """Split ``budget`` whole tokens over ``items`` = ``[(estimated_tokens, priority), ...]``.

    Returns one share per item, in the items' order, summing exactly to ``budget`` (an empty list for no
    items). Raises ``InvalidInput`` for a negative budget or estimate, or an unknown priority.

    Computed in integers: equal to ``largest_remainder(budget, exact_shares(budget, items, multipliers))``, the
    rule's definition (a property test keeps them equal).
    """
    _check_budget(budget)
    if not items:
        return []
    weights = _int_weights(items, multipliers)
    return largest_remainder_int(budget, [budget * w for w in weights], sum(weights))


def _check_budget(budget: int) -> None:
    if isinstance(budget, bool) or not isinstance(budget, int):
        raise InvalidInput("budget must be an integer number of tokens")
    if budget < 0:
        raise InvalidInput("budget must not be negative", budget=budget)


def retry_shares(
    free: int,
    failed: Sequence[tuple[int, Priority, int]],
    owed: int = 0,
    multipliers: Mapping[Priority, Fraction] = PRIORITY_MULTIPLIERS,
) -> list[int]:
    """Shares for retrying failed sub-tasks out of ``free`` tokens (budget neither used nor held).

    ``failed`` is ``[(estimated_tokens, priority, original_share), ...]``; ``owed`` is what sub-tasks still
    waiting are owed and do not hold yet (zero when every waiting sub-task already holds its share).

    The rule: first set aside ``owed`` for the waiting sub-tasks, so a retry never starves them. What is left,
    the pool, is split over the failed sub-tasks by weight as ``split_budget`` does, but rounded down (so a
    bigger pool never gives anyone less), and each retry is capped at its original share: a retry gets what it
    was planned to get, never the whole budget left. Hence

    * each retry share is at most its original share;
    * the retries plus ``owed`` never exceed ``free`` (when ``free >= owed``; otherwise every retry gets 0);
    * more free tokens never give a retry less.

    A share of 0 means the budget cannot cover that retry; the caller decides whether to refuse.
    """
    _check_budget(free)
    if isinstance(owed, bool) or not isinstance(owed, int) or owed < 0:
        raise InvalidInput("owed tokens must be a non-negative integer", owed=owed)
    for i, (_, _, original) in enumerate(failed):
        if isinstance(original, bool) or not isinstance(original, int) or original < 0:
            raise InvalidInput("an original share must be a non-negative integer", index=i)
    if not failed:
        return []
    pool = max(0, free - owed)
    exact = exact_shares(pool, [(e, p) for e, p, _ in failed], multipliers)
    return [min(q.numerator // q.denominator, original) for q, (_, _, original) in zip(exact, failed, strict=True)]


def shares_usable(shares: Sequence[int]) -> bool:
    """A plan is only made when every sub-task gets at least one token (and there is a sub-task)."""
    return bool(shares) and min(shares) >= 1


def subtask_lease_seconds(default_lease_s: int, timeout_ms: int) -> int:
    """How long a sub-task's hold lives without news: at least its run timeout twice plus a minute (a run
    must never lose its share mid-call), never less than the configured default lease."""
    return max(default_lease_s, (timeout_ms // 1000) * 2 + 60)
