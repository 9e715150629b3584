"""Inter-annotator agreement: Cohen's kappa, Fleiss' kappa and Krippendorff's alpha.

Degenerate cases are defined, not left to a division by zero:

* No pairable data (no pair, no item with two ratings, no unit with two values) raises
  :class:`AgreementUndefined`.
* When expected agreement is 1 (kappa) or expected disagreement is 0 (alpha), every rating falls
  in one category (one value); then observed agreement is necessarily perfect too and the statistic
  is returned as 1.0 — the raters agree perfectly, even though chance could not be ruled out.

Nominal statistics are computed with exact rational arithmetic (counts are integers), so results
do not depend on the order of the input.
"""

from __future__ import annotations

import enum
import math
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from llmops.labeling.domain.errors import AgreementUndefined, InvalidArgument
from llmops.labeling.domain.models import LabelValue, TaskType

Level = Literal["nominal", "interval"]


class AgreementMetric(enum.StrEnum):
    COHEN_KAPPA = "cohen_kappa"
    FLEISS_KAPPA = "fleiss_kappa"
    KRIPPENDORFF_ALPHA = "krippendorff_alpha"


@dataclass(frozen=True)
class PairCount:
    """How often two labelers gave ``label_a`` and ``label_b`` to the same item."""

    label_a: str
    label_b: str
    count: int


@dataclass(frozen=True)
class AgreementResult:
    metric: AgreementMetric
    value: float
    # Items with at least two labels (the ones counted) and the labelers who labeled them.
    n_items: int
    n_labelers: int
    # "nominal" or "interval" (Krippendorff's alpha on a rating queue); "nominal" for the kappas.
    level: Level = "nominal"
    pair_counts: tuple[PairCount, ...] = ()


def cohen_kappa(pairs: Sequence[tuple[Hashable, Hashable]]) -> float:
    """Cohen's kappa of two raters; ``pairs[i]`` is (rater 1's label, rater 2's label) for item i.

    kappa = (p_o - p_e) / (1 - p_e), p_e from each rater's own marginal distribution.

    Raises:
        AgreementUndefined: when ``pairs`` is empty.
    """
    n = len(pairs)
    if n == 0:
        raise AgreementUndefined("cohen_kappa needs at least one item labeled by both raters")
    agree = sum(1 for a, b in pairs if a == b)
    first = Counter(a for a, _ in pairs)
    second = Counter(b for _, b in pairs)
    # p_o = agree / n and p_e = chance / n^2, so kappa = (n agree - chance) / (n^2 - chance).
    chance = sum(count * second[label] for label, count in first.items())
    if chance == n * n:
        # Both raters always used the same single category (p_e = 1, hence p_o = 1).
        return 1.0
    return float(Fraction(n * agree - chance, n * n - chance))


def fleiss_kappa(ratings: Sequence[Sequence[Hashable]]) -> float:
    """Fleiss' kappa; ``ratings[i]`` holds the labels the n raters gave item i (same n >= 2 for all).

    Raises:
        AgreementUndefined: when there are no items, an item has fewer than two ratings, or the
            items do not all have the same number of ratings.
    """
    if not ratings:
        raise AgreementUndefined("fleiss_kappa needs at least one rated item")
    sizes = {len(item) for item in ratings}
    if len(sizes) != 1:
        raise AgreementUndefined(
            f"fleiss_kappa needs the same number of ratings on every item, got {sorted(sizes)}; "
            "use krippendorff_alpha for varying numbers of ratings"
        )
    (n,) = sizes
    if n < 2:
        raise AgreementUndefined(f"fleiss_kappa needs at least two ratings per item, got {n}")
    items = len(ratings)
    totals: Counter[Hashable] = Counter()
    agreeing_pairs = 0  # sum over items and categories of n_ij (n_ij - 1)
    for item in ratings:
        counts = Counter(item)
        totals.update(counts)
        agreeing_pairs += sum(c * (c - 1) for c in counts.values())
    p_bar = Fraction(agreeing_pairs, items * n * (n - 1))
    p_e = Fraction(sum(t * t for t in totals.values()), (items * n) ** 2)
    if p_e == 1:
        return 1.0
    return float((p_bar - p_e) / (1 - p_e))


def krippendorff_alpha(
    units: Mapping[str, Mapping[str, Hashable | float | None]], level: Level = "nominal"
) -> float:
    """Krippendorff's alpha over ``units[unit_id][coder_id] = value``; missing values allowed.

    A value of ``None`` counts as missing; units with fewer than two values are not pairable and
    are ignored. ``level`` "interval" uses the squared difference of numeric values.

    Raises:
        AgreementUndefined: when no unit has two values.
        InvalidArgument: for an unknown level, or a non-numeric value at the interval level.
    """
    if level not in ("nominal", "interval"):
        raise InvalidArgument(f"krippendorff_alpha level must be 'nominal' or 'interval', got {level!r}")
    pairable = [values for values in _unit_values(units) if len(values) >= 2]
    if not pairable:
        raise AgreementUndefined("krippendorff_alpha needs at least one unit with two or more values")
    if level == "nominal":
        return _alpha_nominal(pairable)
    return _alpha_interval([[_as_real(v) for v in values] for values in pairable])


def pair_counts(units: Mapping[str, Mapping[str, Hashable | None]]) -> list[PairCount]:
    """Confusion table over every pair of labelers that labeled the same unit.

    For each unit, each pair of its labelers (ordered by labeler id) adds one to the cell
    (label of the first labeler, label of the second); with exactly two labelers this is Cohen's
    confusion matrix. Labels are compared as strings. Sorted by (label_a, label_b).
    """
    table: Counter[tuple[str, str]] = Counter()
    for coded in units.values():
        present = sorted((coder, value) for coder, value in coded.items() if value is not None)
        for i, (_, first) in enumerate(present):
            for _, second in present[i + 1 :]:
                table[(_text(first), _text(second))] += 1
    return [PairCount(a, b, c) for (a, b), c in sorted(table.items())]


def compute_agreement(
    units: Mapping[str, Mapping[str, LabelValue]],
    task_type: TaskType,
    metric: AgreementMetric | None = None,
    *,
    include_pair_counts: bool = False,
) -> AgreementResult:
    """Agreement over a queue's human labels, ``units[task_id][labeler_id] = value``.

    When ``metric`` is None it is chosen: Krippendorff's alpha (interval) for ratings; for
    categories, Cohen's kappa when exactly two labelers labeled the pairable items, Fleiss' kappa
    when every pairable item has the same number of labels, Krippendorff's alpha (nominal)
    otherwise. Pairwise preferences are nominal (A / B / TIE).

    Raises:
        AgreementUndefined: for correction queues (free text), when no task has two labels, or
            when the requested metric does not fit the data (e.g. Cohen's kappa with 3 labelers).
    """
    task_type = TaskType(task_type)
    if task_type is TaskType.CORRECTION:
        raise AgreementUndefined(
            "agreement is not defined for correction queues: corrected texts are free text, "
            "not categories or ratings"
        )
    pairable = {
        unit: {coder: value for coder, value in coded.items() if value is not None}
        for unit, coded in units.items()
    }
    pairable = {unit: coded for unit, coded in pairable.items() if len(coded) >= 2}
    if not pairable:
        raise AgreementUndefined("no task has two or more human labels to compare")
    labelers = sorted({coder for coded in pairable.values() for coder in coded})
    sizes = {len(coded) for coded in pairable.values()}
    if metric is None:
        if task_type is TaskType.RATING:
            metric = AgreementMetric.KRIPPENDORFF_ALPHA
        elif len(labelers) == 2:
            metric = AgreementMetric.COHEN_KAPPA
        elif len(sizes) == 1:
            metric = AgreementMetric.FLEISS_KAPPA
        else:
            metric = AgreementMetric.KRIPPENDORFF_ALPHA
    metric = AgreementMetric(metric)

    level: Level = "nominal"
    if metric is AgreementMetric.COHEN_KAPPA:
        if len(labelers) != 2:
            raise AgreementUndefined(
                f"cohen_kappa needs exactly two labelers, the queue's labels come from {len(labelers)}"
            )
        first, second = labelers
        value = cohen_kappa([(coded[first], coded[second]) for coded in pairable.values()])
    elif metric is AgreementMetric.FLEISS_KAPPA:
        value = fleiss_kappa([list(coded.values()) for coded in pairable.values()])
    else:
        level = "interval" if task_type is TaskType.RATING else "nominal"
        value = krippendorff_alpha(pairable, level)
    return AgreementResult(
        metric=metric,
        value=value,
        n_items=len(pairable),
        n_labelers=len(labelers),
        level=level,
        pair_counts=tuple(pair_counts(pairable)) if include_pair_counts else (),
    )


def _unit_values(units: Mapping[str, Mapping[str, object]]) -> list[list[object]]:
    return [[v for v in coded.values() if v is not None] for coded in units.values()]


def _alpha_nominal(units: list[list[object]]) -> float:
    # Coincidences: within a unit of m values, each ordered pair of values from different coders
    # counts 1 / (m - 1). Only the diagonal (o_cc) and the marginals (n_c) are needed:
    # alpha = 1 - (n - 1) * (n - sum_c o_cc) / (n^2 - sum_c n_c^2).
    n = 0
    diagonal = Fraction(0)
    marginals: Counter[object] = Counter()
    for values in units:
        m = len(values)
        counts = Counter(values)
        n += m
        marginals.update(counts)
        diagonal += Fraction(sum(c * (c - 1) for c in counts.values()), m - 1)
    expected = n * n - sum(c * c for c in marginals.values())
    if expected == 0:
        # Every value in one category: no expected disagreement and no observed disagreement.
        return 1.0
    return float(1 - (n - 1) * (n - diagonal) / expected)


def _alpha_interval(units: list[list[float]]) -> float:
    # The sum of (x_i - x_j)^2 over the ordered pairs of m values is 2 m SS (SS: sum of squared
    # deviations from their mean), so alpha = 1 - (n - 1) * observed / expected with
    # observed = sum over units of 2 m_u SS_u / (m_u - 1) and expected = 2 n SS over all values.
    everything = [v for values in units for v in values]
    if len(set(everything)) == 1:
        return 1.0
    n = len(everything)
    observed = math.fsum(2 * len(values) * _sum_squares(values) / (len(values) - 1) for values in units)
    expected = 2 * n * _sum_squares(everything)
    return 1.0 - (n - 1) * observed / expected


def _sum_squares(values: list[float]) -> float:
    mean = math.fsum(values) / len(values)
    return math.fsum((v - mean) ** 2 for v in values)


def _as_real(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | Fraction):
        raise InvalidArgument(f"interval agreement needs numeric values, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidArgument(f"interval agreement needs finite values, got {value!r}")
    return number


def _text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 2**53 else repr(value)
    return str(value)
