"""Agreement statistics checked against published worked examples and hand computations."""

from __future__ import annotations

from fractions import Fraction

import pytest

from llmops.labeling.domain.agreement import (
    AgreementMetric,
    PairCount,
    cohen_kappa,
    compute_agreement,
    fleiss_kappa,
    krippendorff_alpha,
    pair_counts,
)
from llmops.labeling.domain.errors import AgreementUndefined, InvalidArgument
from llmops.labeling.domain.models import Preference, TaskType

# Fleiss (1971), "Measuring nominal scale agreement among many raters", Table 1: 30 patients, each
# diagnosed by 6 psychiatrists into 1 depression, 2 personality disorder, 3 schizophrenia,
# 4 neurosis, 5 other. Published: mean observed agreement 0.556, chance agreement 0.220,
# kappa = 0.430.
FLEISS_1971 = [
    "444444", "222555", "233335", "555555", "222444", "113333", "333355", "113334", "114444", "555555",
    "144444", "124444", "222333", "144444", "224445", "333335", "111455", "111112", "224444", "133555",
    "555555", "244444", "224555", "114444", "144445", "222224", "111155", "224444", "133333", "555555",
]  # fmt: skip

# The worked example of the Wikipedia article "Fleiss' kappa": 10 subjects, 14 raters,
# 5 categories, counts n_ij per subject. Published: P-bar = 0.378, P-bar_e = 0.213, kappa = 0.210.
WIKIPEDIA_FLEISS_COUNTS = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 observers,
# 12 units, values 1..5, "." = missing. Published: nominal alpha = 0.743, interval alpha = 0.849.
KRIPPENDORFF_C = {
    "A": "1 2 3 3 2 1 4 1 2 . . .",
    "B": "1 2 3 3 2 2 4 1 2 5 . 3",
    "C": ". 3 3 3 2 3 4 2 2 5 1 .",
    "D": "1 2 3 3 2 4 4 1 2 5 1 .",
}


def _reliability_data(rows: dict[str, str]) -> dict[str, dict[str, int]]:
    units: dict[str, dict[str, int]] = {}
    for coder, row in rows.items():
        for unit, value in enumerate(row.split()):
            if value != ".":
                units.setdefault(f"u{unit + 1}", {})[coder] = int(value)
    return units


def _expand(counts: list[int]) -> list[str]:
    return [f"c{category}" for category, n in enumerate(counts) for _ in range(n)]


# --- Cohen's kappa -----------------------------------------------------------------------------


def test_cohen_kappa_worked_example_by_hand() -> None:
    # Two readers of 50 grant proposals (Wikipedia, "Cohen's kappa"): both yes 20, A yes / B no 5,
    # A no / B yes 10, both no 15.
    pairs = [("yes", "yes")] * 20 + [("yes", "no")] * 5 + [("no", "yes")] * 10 + [("no", "no")] * 15
    p_o = Fraction(20 + 15, 50)  # 0.7
    p_yes_a, p_yes_b = Fraction(25, 50), Fraction(30, 50)
    p_e = p_yes_a * p_yes_b + (1 - p_yes_a) * (1 - p_yes_b)  # 0.5
    expected = (p_o - p_e) / (1 - p_e)
    assert expected == Fraction(2, 5)
    assert cohen_kappa(pairs) == pytest.approx(float(expected), abs=1e-12)


def test_cohen_kappa_is_order_invariant_and_bounded() -> None:
    pairs = [("a", "a"), ("a", "b"), ("b", "b"), ("c", "c"), ("c", "a"), ("b", "b")]
    assert cohen_kappa(pairs) == pytest.approx(cohen_kappa(list(reversed(pairs))))
    # Systematic disagreement with balanced marginals: p_o = 0, p_e = 0.5 -> kappa = -1.
    assert cohen_kappa([("a", "b"), ("b", "a")]) == pytest.approx(-1.0)
    assert cohen_kappa([("a", "a"), ("b", "b")]) == pytest.approx(1.0)


def test_cohen_kappa_degenerate_cases() -> None:
    # Both raters always used one category: p_e = 1, kappa is defined here as 1.0.
    assert cohen_kappa([("spam", "spam")] * 5) == 1.0
    with pytest.raises(AgreementUndefined, match="at least one item"):
        cohen_kappa([])


# --- Fleiss' kappa -----------------------------------------------------------------------------


def test_fleiss_kappa_fleiss_1971_table() -> None:
    ratings = [list(row) for row in FLEISS_1971]
    assert len(ratings) == 30 and all(len(r) == 6 for r in ratings)
    assert fleiss_kappa(ratings) == pytest.approx(0.430, abs=5e-4)


def test_fleiss_kappa_wikipedia_example_matches_a_hand_computation() -> None:
    n, items = 14, len(WIKIPEDIA_FLEISS_COUNTS)
    # Hand computation, formula by formula.
    p_i = [Fraction(sum(c * c for c in row) - n, n * (n - 1)) for row in WIKIPEDIA_FLEISS_COUNTS]
    p_bar = sum(p_i) / items
    p_j = [Fraction(sum(col), items * n) for col in zip(*WIKIPEDIA_FLEISS_COUNTS, strict=True)]
    p_e = sum(p * p for p in p_j)
    by_hand = (p_bar - p_e) / (1 - p_e)
    assert float(p_bar) == pytest.approx(0.378, abs=5e-4)
    assert float(p_e) == pytest.approx(0.213, abs=5e-4)
    assert float(by_hand) == pytest.approx(0.210, abs=5e-4)
    kappa = fleiss_kappa([_expand(row) for row in WIKIPEDIA_FLEISS_COUNTS])
    assert kappa == pytest.approx(float(by_hand), abs=1e-12)


def test_fleiss_kappa_degenerate_cases() -> None:
    assert fleiss_kappa([["x", "x", "x"], ["x", "x", "x"]]) == 1.0
    with pytest.raises(AgreementUndefined, match="at least one rated item"):
        fleiss_kappa([])
    with pytest.raises(AgreementUndefined, match="same number of ratings"):
        fleiss_kappa([["a", "b"], ["a", "b", "b"]])
    with pytest.raises(AgreementUndefined, match="at least two ratings"):
        fleiss_kappa([["a"], ["b"]])


def test_fleiss_kappa_with_two_raters_equals_scotts_pi() -> None:
    # For n = 2 Fleiss' kappa reduces to Scott's pi: p_e from the pooled marginals.
    pairs = [("a", "a"), ("a", "b"), ("b", "b"), ("b", "b"), ("a", "a"), ("b", "a")]
    p_o = Fraction(4, 6)
    pooled = [x for pair in pairs for x in pair]
    p_e = sum(Fraction(pooled.count(c), len(pooled)) ** 2 for c in ("a", "b"))
    assert fleiss_kappa([list(p) for p in pairs]) == pytest.approx(float((p_o - p_e) / (1 - p_e)))


# --- Krippendorff's alpha ----------------------------------------------------------------------


def test_krippendorff_alpha_published_example() -> None:
    units = _reliability_data(KRIPPENDORFF_C)
    assert krippendorff_alpha(units, "nominal") == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(units, "interval") == pytest.approx(0.849, abs=5e-4)


def test_krippendorff_alpha_binary_example_by_hand() -> None:
    # Krippendorff (2011), section A: two observers, ten units, binary values; published 0.095.
    a = [0, 1, 0, 0, 0, 0, 0, 0, 1, 0]
    b = [1, 1, 1, 0, 0, 1, 0, 0, 0, 0]
    units = {f"u{i}": {"A": a[i], "B": b[i]} for i in range(10)}
    # Coincidences: o_00 = 10, o_01 = o_10 = 4, o_11 = 2; n_0 = 14, n_1 = 6, n = 20.
    # alpha = 1 - (n - 1) * (o_01 + o_10) / (n_0 n_1 + n_1 n_0) = 1 - 19 * 8 / 168.
    by_hand = 1 - Fraction(19 * 8, 2 * 14 * 6)
    assert float(by_hand) == pytest.approx(0.095, abs=5e-4)
    assert krippendorff_alpha(units, "nominal") == pytest.approx(float(by_hand), abs=1e-12)


def test_krippendorff_alpha_ignores_unpairable_units_and_missing_values() -> None:
    units = _reliability_data(KRIPPENDORFF_C)
    value = krippendorff_alpha(units, "nominal")
    # Unit 12 has one value only; an extra single-valued unit and a None change nothing.
    assert len(units["u12"]) == 1
    more = {**units, "lonely": {"A": 4}, "u1": {**units["u1"], "C": None}}
    assert krippendorff_alpha(more, "nominal") == pytest.approx(value, abs=1e-12)


def test_krippendorff_alpha_degenerate_cases() -> None:
    assert krippendorff_alpha({"u1": {"a": 3, "b": 3}, "u2": {"a": 3, "c": 3}}, "interval") == 1.0
    assert krippendorff_alpha({"u1": {"a": "x", "b": "x"}}, "nominal") == 1.0
    with pytest.raises(AgreementUndefined, match="two or more values"):
        krippendorff_alpha({"u1": {"a": "x"}, "u2": {"b": "y"}})
    with pytest.raises(InvalidArgument, match="numeric"):
        krippendorff_alpha({"u1": {"a": "x", "b": "y"}}, "interval")
    with pytest.raises(InvalidArgument, match="level"):
        krippendorff_alpha({"u1": {"a": 1, "b": 2}}, "ordinal")  # type: ignore[arg-type]


# --- pair counts and metric choice -------------------------------------------------------------


def test_pair_counts_is_the_confusion_table_for_two_labelers() -> None:
    units = {
        "t1": {"bob": "neg", "alice": "pos"},
        "t2": {"alice": "pos", "bob": "pos"},
        "t3": {"alice": "neg", "bob": "neg"},
        "t4": {"alice": "pos"},
    }
    assert pair_counts(units) == [
        PairCount("neg", "neg", 1),
        PairCount("pos", "neg", 1),
        PairCount("pos", "pos", 1),
    ]
    three = {"t1": {"a": "x", "b": "y", "c": "x"}}
    assert sum(p.count for p in pair_counts(three)) == 3


def test_compute_agreement_chooses_the_metric() -> None:
    two = {"t1": {"a": "x", "b": "x"}, "t2": {"a": "y", "b": "x"}, "t3": {"a": "y", "b": "y"}}
    result = compute_agreement(two, TaskType.CLASSIFICATION, include_pair_counts=True)
    assert result.metric is AgreementMetric.COHEN_KAPPA
    assert result.value == pytest.approx(cohen_kappa([("x", "x"), ("y", "x"), ("y", "y")]))
    assert (result.n_items, result.n_labelers) == (3, 2)
    assert sum(p.count for p in result.pair_counts) == 3

    fixed = {f"t{i}": {"a": "A", "b": "B", "c": "A"} for i in range(3)}
    fixed["t9"] = {"d": "A"}  # a single label: not counted
    result = compute_agreement(
        {k: {c: Preference(v) for c, v in u.items()} for k, u in fixed.items()},
        TaskType.PAIRWISE_PREFERENCE,
    )
    assert result.metric is AgreementMetric.FLEISS_KAPPA and result.n_items == 3

    ragged = {"t1": {"a": "x", "b": "x", "c": "y"}, "t2": {"a": "y", "d": "y"}}
    assert compute_agreement(ragged, TaskType.CLASSIFICATION).metric is AgreementMetric.KRIPPENDORFF_ALPHA

    ratings = {"t1": {"a": 4.0, "b": 5.0}, "t2": {"a": 1.0, "b": 2.0}}
    result = compute_agreement(ratings, TaskType.RATING)
    assert result.metric is AgreementMetric.KRIPPENDORFF_ALPHA and result.level == "interval"


def test_compute_agreement_refuses_what_it_cannot_measure() -> None:
    with pytest.raises(AgreementUndefined, match="correction"):
        compute_agreement({"t1": {"a": "x", "b": "y"}}, TaskType.CORRECTION)
    with pytest.raises(AgreementUndefined, match="two or more human labels"):
        compute_agreement({"t1": {"a": "x"}}, TaskType.CLASSIFICATION)
    three = {"t1": {"a": "x", "b": "x", "c": "y"}}
    with pytest.raises(AgreementUndefined, match="exactly two labelers"):
        compute_agreement(three, TaskType.CLASSIFICATION, AgreementMetric.COHEN_KAPPA)
