"""Drift between a reference window and a current window, computed in ClickHouse where the logs live.

Per model, for each (model version, arm) answering in the current window: PSI and two-sided KS on
prompt length, output length, latency and time to first token; the shift of the mean feedback score
(Mann-Whitney U p-value); KS on the top retrieval hit's score (per collection and mode: retrieval
logs carry no model); and the distance between the centroids of prompt embeddings (permutation
p-value). The SQL aggregates in the engine: only one row per group and signal comes back, and for
embeddings only a hash-drawn sample of prompts.

Only answers are compared: requests that failed on the server side (``inference_log.error`` set,
migration 0016; a timeout's latency is the deadline) are left out of every statistic and count.

Every function takes a clickhouse-connect ``Client`` (the monitoring store runs them in a reader
thread). A group with fewer than ``min_count`` values in either window gets no verdict.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
from clickhouse_connect.driver import Client

from llmops.core.errors import InvalidArgument

NUMERIC_SIGNALS = ("prompt_tokens", "completion_tokens", "latency_ms", "time_to_first_token_ms")
FEEDBACK_SIGNAL = "feedback_score"
RETRIEVAL_SIGNAL = "retrieval_top_score"
EMBEDDING_SIGNAL = "prompt_embedding"
ALL_SIGNALS = (*NUMERIC_SIGNALS, FEEDBACK_SIGNAL, RETRIEVAL_SIGNAL, EMBEDDING_SIGNAL)

OK = "ok"
INSUFFICIENT_DATA = "insufficient_data"
RETRIEVAL_NOTE = "retrieval logs carry no model: compared per collection and mode, across all models"

# Reference deciles give ten bins of a tenth each in the reference window.
PSI_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
Embed = Callable[[Sequence[str]], Sequence[Sequence[float]]]


@dataclass(frozen=True, slots=True)
class DriftThresholds:
    """When a statistic counts as drift; ``min_count`` values per window and group for any verdict."""

    psi: float = 0.2
    ks_alpha: float = 0.01
    # With large windows KS finds any difference significant: a distance this small is not drift.
    ks_min_statistic: float = 0.1
    feedback_alpha: float = 0.01
    feedback_min_shift: float = 0.05
    embedding_alpha: float = 0.01
    embedding_min_distance: float = 0.01
    min_count: int = 50
    psi_epsilon: float = 1e-4

    def __post_init__(self) -> None:
        for name in ("ks_alpha", "feedback_alpha", "embedding_alpha"):
            if not 0 < getattr(self, name) < 1:
                raise InvalidArgument(f"thresholds.{name} must be between 0 and 1, got {getattr(self, name)}")
        for name in ("psi", "ks_min_statistic", "feedback_min_shift", "embedding_min_distance"):
            if getattr(self, name) < 0:
                raise InvalidArgument(f"thresholds.{name} must not be negative, got {getattr(self, name)}")
        if self.min_count < 2:
            raise InvalidArgument(f"thresholds.min_count must be at least 2, got {self.min_count}")
        if not 0 < self.psi_epsilon < 0.1:
            raise InvalidArgument(f"thresholds.psi_epsilon must be in (0, 0.1), got {self.psi_epsilon}")


def _utc(value: dt.datetime, name: str) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        raise InvalidArgument(f"{name} must be a datetime, got {value!r}")
    # The platform's times are UTC: a naive time is read as UTC, as the store does.
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


@dataclass(frozen=True, slots=True)
class DriftRequest:
    """Compare ``model``'s current window [start, end) with its reference window.

    ``reference_scope`` says what each (model version, arm) of the current window is compared with:
    ``"model"``, all of the model's traffic in the reference window (a new version against what served
    before); ``"group"``, the same version and arm in the reference window.
    """

    model: str
    reference_start: dt.datetime
    reference_end: dt.datetime
    current_start: dt.datetime
    current_end: dt.datetime
    signals: tuple[str, ...] = ALL_SIGNALS
    thresholds: DriftThresholds = field(default_factory=DriftThresholds)
    reference_scope: Literal["model", "group"] = "model"
    collections: tuple[str, ...] = ()  # retrieval collections to compare; empty: all
    embedding_sample: int = 200  # prompts drawn per window and group
    permutations: int = 1000
    seed: int = 0
    # Numeric signals: "exact" sorts the rows; "histograms" reads the hourly histograms (see
    # numeric_drift for the error it allows).
    numeric_method: Literal["exact", "histograms"] = "exact"

    def __post_init__(self) -> None:
        if not self.model:
            raise InvalidArgument("model must name the model whose traffic to compare")
        for window in ("reference", "current"):
            start = _utc(getattr(self, f"{window}_start"), f"{window}_start")
            end = _utc(getattr(self, f"{window}_end"), f"{window}_end")
            if start >= end:
                raise InvalidArgument(f"{window}_start ({start}) must be before {window}_end ({end})")
            object.__setattr__(self, f"{window}_start", start)
            object.__setattr__(self, f"{window}_end", end)
        unknown = sorted(set(self.signals) - set(ALL_SIGNALS))
        if unknown or not self.signals:
            raise InvalidArgument(
                f"unknown signal(s) {unknown or '(none given)'}; known: {', '.join(ALL_SIGNALS)}"
            )
        object.__setattr__(self, "signals", tuple(s for s in ALL_SIGNALS if s in self.signals))
        if self.reference_scope not in ("model", "group"):
            raise InvalidArgument(f"reference_scope must be 'model' or 'group', got {self.reference_scope!r}")
        if self.numeric_method not in ("exact", "histograms"):
            raise InvalidArgument(
                f"numeric_method must be 'exact' or 'histograms', got {self.numeric_method!r}"
            )
        if self.embedding_sample < self.thresholds.min_count:
            raise InvalidArgument(
                f"embedding_sample ({self.embedding_sample}) must be at least thresholds.min_count "
                f"({self.thresholds.min_count})"
            )
        # The smallest p-value a permutation test can give is 1 / (permutations + 1).
        alpha = self.thresholds.embedding_alpha
        if 1 / (self.permutations + 1) >= alpha:
            raise InvalidArgument(
                f"permutations ({self.permutations}) are too few to reach p < thresholds.embedding_alpha "
                f"({alpha}); use at least {math.ceil(1 / alpha)}"
            )


@dataclass(frozen=True, slots=True)
class DriftResult:
    """One statistic of one signal for one group of the current window.

    ``value``, ``p_value`` and ``drifted`` are ``None`` when the group has too little data
    (``status == "insufficient_data"``); ``p_value`` also for PSI, which is no test.
    """

    signal: str
    statistic: str  # psi, ks, mean_shift or centroid_distance
    model_version: str
    arm: str
    value: float | None
    p_value: float | None
    threshold: float  # what value must exceed (PSI, effect size of a test)
    alpha: float | None  # what p_value must stay under, for tests
    drifted: bool | None
    reference_count: int
    current_count: int
    status: str = OK
    collection: str = ""
    mode: str = ""
    note: str = ""


@dataclass(frozen=True, slots=True)
class DriftReport:
    """Every statistic computed for a request."""

    request: DriftRequest
    results: tuple[DriftResult, ...]

    @property
    def drifted(self) -> tuple[DriftResult, ...]:
        """The results that are drift."""
        return tuple(r for r in self.results if r.drifted)


# --- SQL -------------------------------------------------------------------------------------------
# Each source selects (group_a, group_b, signal, value) from one window; "@w@" becomes "reference"
# or "current" (a parameter's name, never a value). A group is (model_version, arm) for answers and
# (collection, mode) for retrievals.

_WINDOW = "occurred_at >= {@w@_start:DateTime64(3, 'UTC')} AND occurred_at < {@w@_end:DateTime64(3, 'UTC')}"

# Feedback is folded per request first (a request rated twice counts once) and dated by the answer;
# it comes after its answer, so feedback from before the window (an hour's margin for clocks) is skipped.
_FEEDBACK_SOURCE = f"""
SELECT i.model_version AS group_a, i.arm AS group_b, 'feedback_score' AS signal, f.score AS value
FROM
(
    SELECT request_id, model_version, arm FROM inference_log_v
    WHERE model = {{model:String}} AND error = '' AND {_WINDOW}
) AS i
INNER JOIN
(
    SELECT request_id, avg(score) AS score FROM feedback_v
    WHERE occurred_at >= {{@w@_start:DateTime64(3, 'UTC')}} - INTERVAL 1 HOUR
    GROUP BY request_id
) AS f ON i.request_id = f.request_id
"""

_RETRIEVAL_SOURCE = f"""
SELECT collection AS group_a, mode AS group_b, 'retrieval_top_score' AS signal, scores[1] AS value
FROM retrieval_log_v
WHERE {_WINDOW} AND notEmpty(scores)
    AND (empty({{collections:Array(String)}}) OR has({{collections:Array(String)}}, collection))
"""


def _window(source: str, window: str) -> str:
    return source.replace("@w@", window)


def _counts_sql(source: str) -> str:
    return f"""
SELECT group_a, group_b, sum(idx = 0) AS reference_count, sum(idx = 1) AS current_count
FROM
(
    SELECT group_a, group_b, toUInt8(0) AS idx
    FROM ({_window(source, "reference")}) WHERE signal = {{signal:String}}
    UNION ALL
    SELECT group_a, group_b, toUInt8(1) AS idx
    FROM ({_window(source, "current")}) WHERE signal = {{signal:String}}
)
GROUP BY group_a, group_b
"""


def _samples_sql(source: str) -> str:
    # Current values stay in their group; reference values join every group of the current window
    # ("model" scope) or only their own ("group" scope). Groups and signals are numbered (gid, sid:
    # their position in the parameters) so the engine groups by integers, not strings (twice as
    # fast at a million rows). Positional UNION: the first select names the columns.
    return f"""
samples AS
(
    SELECT indexOf({{groups:Array(Tuple(String, String))}}, (group_a, group_b)) AS gid, toUInt8(1) AS idx,
        indexOf({{signals:Array(String)}}, signal) AS sid, value
    FROM ({_window(source, "current")})
    WHERE gid > 0
    UNION ALL
    SELECT g, toUInt8(0), indexOf({{signals:Array(String)}}, signal), value
    FROM ({_window(source, "reference")})
    ARRAY JOIN arrayEnumerate({{groups:Array(Tuple(String, String))}}) AS g
    WHERE {{pooled:Bool}} OR g = indexOf({{groups:Array(Tuple(String, String))}}, (group_a, group_b))
)"""


# Numeric signals are columns of inference_log: each window is read once, no signal is unpivoted
# into rows, and the reference is never copied into the groups. Two statements: counts and the
# reference deciles (quantilesExact: the sorted value at floor(level * n), so the bins, and PSI, are
# exact at any size; tied deciles merge), then per group the KS test and the counts at or below each
# decile (PSI's bins). KS: the reference's kolmogorovSmirnovTest state is built once and merged into
# each group's, so the engine's exact test runs on the same values as before.
_NUMERIC_COLUMNS = {
    "prompt_tokens": "toFloat64(prompt_tokens)",
    "completion_tokens": "toFloat64(completion_tokens)",
    "latency_ms": "latency_ms",
    "time_to_first_token_ms": "time_to_first_token_ms",
}
_LEVELS = ", ".join(str(level) for level in PSI_LEVELS)
_GROUPS = "{groups:Array(Tuple(String, String))}"


def _numeric_counts_sql(signals: Sequence[str]) -> str:
    """Rows per (window, version, arm) and per window, with the reference deciles of each signal."""
    columns = ", ".join(f"{_NUMERIC_COLUMNS[s]} AS v{i}" for i, s in enumerate(signals))
    states = ", ".join(f"quantilesExactStateIf({_LEVELS})(v{i}, w = 0) AS q{i}" for i in range(len(signals)))
    merged = ", ".join(f"arrayDistinct(quantilesExactMerge({_LEVELS})(q{i}))" for i in range(len(signals)))
    return f"""
SELECT w, model_version, arm, grouping(model_version, arm) = 0 AS per_group, sum(n), {merged}
FROM
(
    SELECT w, model_version, arm, count() AS n, {states}
    FROM
    (
        SELECT toUInt8(0) AS w, model_version, arm, {columns}
        FROM inference_log_v WHERE model = {{model:String}} AND error = '' AND {_window(_WINDOW, "reference")}
        UNION ALL
        SELECT toUInt8(1), model_version, arm, {columns}
        FROM inference_log_v WHERE model = {{model:String}} AND error = '' AND {_window(_WINDOW, "current")}
    )
    GROUP BY w, model_version, arm
)
GROUP BY GROUPING SETS ((w, model_version, arm), (w))
"""


def _numeric_stats_sql(signals: Sequence[str]) -> str:
    """Per group (gid counts from 1 in ``groups``): counts, then per signal KS and values <= each decile.

    ``d<i>`` holds each reference's deciles (padded to nine): the first for the pooled reference, the
    (gid + 1)th for group gid's own.
    """
    columns = ", ".join(f"{_NUMERIC_COLUMNS[s]} AS v{i}" for i, s in enumerate(signals))
    parts = []
    for i in range(len(signals)):
        deciles = f"{{d{i}:Array(Array(Float64))}}[if({{pooled:Bool}}, 1, part + 1)]"
        at_most = ", ".join(f"countIf(v{i} <= {deciles}[{k}])" for k in range(1, len(PSI_LEVELS) + 1))
        parts.append(
            f"kolmogorovSmirnovTestState('two-sided', 'asymp')(v{i}, cur) AS ks{i}, [{at_most}] AS le{i}"
        )
    merged = ", ".join(
        f"kolmogorovSmirnovTestMerge('two-sided', 'asymp')(ks{i}), "
        f"anyIf(le{i}, cur = 0), anyIf(le{i}, cur = 1)"
        for i in range(len(signals))
    )
    return f"""
SELECT gid, sumIf(n, cur = 0) AS reference_count, sumIf(n, cur = 1) AS current_count, {merged}
FROM
(
    SELECT part, cur, count() AS n, {", ".join(parts)}
    FROM
    (
        SELECT toUInt32(indexOf({_GROUPS}, (model_version, arm))) AS part, toUInt8(1) AS cur, {columns}
        FROM inference_log_v
        WHERE model = {{model:String}} AND error = '' AND {_window(_WINDOW, "current")} AND part > 0
        UNION ALL
        SELECT if({{pooled:Bool}}, 0, toUInt32(indexOf({_GROUPS}, (model_version, arm)))) AS p, toUInt8(0),
            {columns}
        FROM inference_log_v
        WHERE model = {{model:String}} AND error = '' AND {_window(_WINDOW, "reference")}
            AND ({{pooled:Bool}} OR p > 0)
    )
    GROUP BY part, cur
)
-- The pooled reference's row (part 0) joins every group; a group's own rows stay with it.
ARRAY JOIN if(cur = 1 OR NOT {{pooled:Bool}}, [part], range(1, length({_GROUPS}) + 1)) AS gid
GROUP BY gid
"""


def _ks_sql(source: str) -> str:
    return f"""
WITH {_samples_sql(source)}
SELECT gid, sid, reference_count, current_count, ks.1 AS ks_statistic, ks.2 AS ks_p_value
FROM
(
    SELECT gid, sid, countIf(idx = 0) AS reference_count, countIf(idx = 1) AS current_count,
        kolmogorovSmirnovTest('two-sided', 'asymp')(value, idx) AS ks
    FROM samples
    GROUP BY gid, sid
)
"""


def _shift_sql(source: str) -> str:
    return f"""
WITH {_samples_sql(source)}
SELECT gid, sid, countIf(idx = 0) AS reference_count, countIf(idx = 1) AS current_count,
    avgIf(value, idx = 1) - avgIf(value, idx = 0) AS mean_shift,
    mannWhitneyUTest('two-sided')(value, idx).2 AS p_value
FROM samples
GROUP BY gid, sid
"""


# The sample is chosen on light columns first (notEmpty reads the strings' sizes only); the prompts
# themselves are then read for the chosen rows alone.
_SAMPLE_WHERE = (
    f"model = {{model:String}} AND error = '' AND {_WINDOW.replace('@w@', 'window')} AND notEmpty(prompt)"
)
PROMPT_SAMPLE_SQL = f"""
WITH chosen AS
(
    SELECT event_id FROM inference_log_v
    WHERE {_SAMPLE_WHERE}
    ORDER BY cityHash64(request_id), event_id
    LIMIT {{n:UInt32}} BY if({{pooled:Bool}}, '', model_version), if({{pooled:Bool}}, '', arm)
)
SELECT if({{pooled:Bool}}, '', model_version) AS group_a, if({{pooled:Bool}}, '', arm) AS group_b, prompt
FROM inference_log_v
WHERE {_SAMPLE_WHERE} AND event_id IN chosen
ORDER BY cityHash64(request_id), event_id
"""


# --- running them ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Statistic:
    name: str
    value_column: int  # in the statistics row, after gid, sid and the two counts
    p_column: int | None
    threshold: str  # DriftThresholds attributes
    alpha: str | None


_PSI = _Statistic("psi", 6, None, "psi", None)
_KS = _Statistic("ks", 4, 5, "ks_min_statistic", "ks_alpha")
_MEAN_SHIFT = _Statistic("mean_shift", 4, 5, "feedback_min_shift", "feedback_alpha")
_CENTROID = _Statistic("centroid_distance", -1, None, "embedding_min_distance", "embedding_alpha")


def _finite(value: Any) -> float | None:
    return None if value is None or not math.isfinite(float(value)) else float(value)


def _result(
    signal: str, stat: _Statistic, group: tuple[str, str], counts: tuple[int, int], t: DriftThresholds,
    value: float | None = None, p_value: float | None = None, *, enough: bool = True, note: str = "",
) -> DriftResult:  # fmt: skip
    threshold = getattr(t, stat.threshold)
    alpha = getattr(t, stat.alpha) if stat.alpha else None
    drifted = None
    if enough and value is not None and (alpha is None or p_value is not None):
        # A test must be significant and its effect large enough; PSI has no p-value.
        drifted = abs(value) > threshold and (alpha is None or p_value < alpha)
    return DriftResult(
        signal, stat.name, group[0], group[1], value if enough else None, p_value if enough else None,
        threshold, alpha, drifted, counts[0], counts[1], OK if enough else INSUFFICIENT_DATA, note=note,
    )  # fmt: skip


def _family(
    client: Client,
    request: DriftRequest,
    source: str,
    sql: str,
    signals: Sequence[str],
    statistics: Sequence[_Statistic],
    pooled: bool,
) -> list[DriftResult]:
    """Count each group's values in both windows, then run ``sql`` over the groups with enough."""
    parameters = {
        "model": request.model,
        "reference_start": request.reference_start,
        "reference_end": request.reference_end,
        "current_start": request.current_start,
        "current_end": request.current_end,
        "signals": list(request.signals),
        "collections": list(request.collections),
        # Every signal of a family counts the same rows (no column is ever NULL): count the first.
        "signal": signals[0],
    }
    counted = client.query(_counts_sql(source), parameters=parameters).result_rows
    pooled_reference = sum(int(row[2]) for row in counted)
    counts = {
        (a, b): (pooled_reference if pooled else int(ref), int(cur)) for a, b, ref, cur in counted if cur > 0
    }
    least = request.thresholds.min_count
    enough = sorted(g for g, (ref, cur) in counts.items() if ref >= least and cur >= least)
    rows: dict[tuple[str, str, str], tuple[Any, ...]] = {}
    if enough:
        extra = {"groups": enough, "pooled": pooled, "epsilon": request.thresholds.psi_epsilon}
        result = client.query(sql, parameters={**parameters, **extra})
        # gid and sid count from 1 in the parameters' order.
        rows = {(*enough[r[0] - 1], request.signals[r[1] - 1]): tuple(r) for r in result.result_rows}
    results = []
    for signal in signals:
        for group in sorted(counts):
            row = rows.get((*group, signal))
            for stat in statistics:
                if row is None:
                    results.append(
                        _result(signal, stat, group, counts[group], request.thresholds, enough=False)
                    )
                    continue
                value = _finite(row[stat.value_column])
                p_value = None if stat.p_column is None else _finite(row[stat.p_column])
                results.append(
                    _result(
                        signal, stat, group, (int(row[2]), int(row[3])), request.thresholds, value, p_value
                    )
                )
    return results


def _parameters(request: DriftRequest) -> dict[str, Any]:
    return {
        "model": request.model,
        "reference_start": request.reference_start,
        "reference_end": request.reference_end,
        "current_start": request.current_start,
        "current_end": request.current_end,
    }


def _psi(reference_at_most: Sequence[int], current_at_most: Sequence[int], counts: tuple[int, int],
         bins: int, epsilon: float) -> float:  # fmt: skip
    """PSI from the counts at or below each distinct decile (the last ``bins - 1`` are padding)."""
    total = 0.0
    edges = bins - 1
    for reference, current, previous_reference, previous_current in zip(
        [*reference_at_most[:edges], counts[0]], [*current_at_most[:edges], counts[1]],
        [0, *reference_at_most[:edges]], [0, *current_at_most[:edges]], strict=True,
    ):  # fmt: skip
        r = max((reference - previous_reference) / counts[0], epsilon)
        c = max((current - previous_current) / counts[1], epsilon)
        total += (c - r) * math.log(c / r)
    return total


def numeric_drift(client: Client, request: DriftRequest) -> list[DriftResult]:
    """PSI and KS of prompt and completion tokens, latency and time to first token, per version and arm.

    ``request.numeric_method`` "exact" sorts the rows (exact PSI on the reference deciles, the
    engine's exact KS). "histograms" reads the hourly histograms of migrations 0018-0019 instead (see
    :func:`histogram_ks` and :func:`histogram_psi` for the error, which each result's note states):
    token counts below 2^20 are exact, timings are within one log-spaced bin (about 1.1%). Hours
    only partly inside a window, and hours whose histogram count differs from the deduplicated row
    count (a redelivered event, counted twice by the view), are binned from the rows with the same
    bins, so counts are always those of ``inference_log_v``'s answers. A window with no whole hour, or a
    reference decile that the bins cannot place, falls back to the exact path.
    """
    signals = [s for s in request.signals if s in NUMERIC_SIGNALS]
    if not signals:
        return []
    if request.numeric_method == "histograms":
        found = _numeric_drift_from_histograms(client, request, signals)
        if found is not None:
            return found
    return _numeric_drift_exact(client, request, signals)


def _numeric_drift_exact(client: Client, request: DriftRequest, signals: list[str]) -> list[DriftResult]:
    pooled = request.reference_scope == "model"
    t = request.thresholds
    parameters = _parameters(request)
    counted = client.query(
        _numeric_counts_sql(signals), parameters=parameters, settings={"log_comment": "drift:numeric:counts"}
    ).result_rows
    # Reference deciles per reference: ("", "") the pooled one, else the group's own.
    deciles: dict[tuple[str, str], list[list[float]]] = {}
    reference_counts: dict[tuple[str, str], int] = {}
    current_counts: dict[tuple[str, str], int] = {}
    for w, version, arm, per_group, n, *quantiles in counted:
        key = (version, arm) if per_group else ("", "")
        if w == 0:
            reference_counts[key] = int(n)
            deciles[key] = [[float(q) for q in levels] for levels in quantiles]
        elif per_group and n > 0:
            current_counts[key] = int(n)
    counts = {
        g: (reference_counts.get(("", "") if pooled else g, 0), current)
        for g, current in current_counts.items()
    }
    enough = sorted(g for g, (ref, cur) in counts.items() if ref >= t.min_count and cur >= t.min_count)
    rows: dict[tuple[str, str], tuple[Any, ...]] = {}
    if enough:
        references = [("", "")] if pooled else [("", ""), *enough]

        def padded(values: list[float]) -> list[float]:
            return (
                values + [values[-1]] * (len(PSI_LEVELS) - len(values)) if values else [0.0] * len(PSI_LEVELS)
            )

        extra = {
            "groups": enough,
            "pooled": pooled,
            **{
                f"d{i}": [padded(deciles.get(r, [[]] * len(signals))[i]) for r in references]
                for i in range(len(signals))
            },
        }
        result = client.query(
            _numeric_stats_sql(signals), parameters={**parameters, **extra},
            settings={"log_comment": "drift:numeric:statistics"},
        )  # fmt: skip
        rows = {enough[r[0] - 1]: tuple(r) for r in result.result_rows}
    results = []
    for i, signal in enumerate(signals):
        for group in sorted(counts):
            row = rows.get(group)
            if row is None:
                results.extend(
                    _result(signal, stat, group, counts[group], t, enough=False) for stat in (_PSI, _KS)
                )
                continue
            n = (int(row[1]), int(row[2]))
            ks, reference_at_most, current_at_most = row[3 + 3 * i : 6 + 3 * i]
            bins = len(deciles[("", "") if pooled else group][i]) + 1
            psi = _psi(reference_at_most, current_at_most, n, bins, t.psi_epsilon)
            results.append(_result(signal, _PSI, group, n, t, _finite(psi)))
            results.append(
                _result(signal, _KS, group, n, t, _finite(ks["d_statistic"]), _finite(ks["p_value"]))
            )
    return results


# --- numeric signals from hourly histograms --------------------------------------------------------
# Migration 0018's view counts, per hour, model, version and arm, the answers in each bin of each
# numeric signal (answers only since 0019: failures were counted before). Token counts are their
# own bin below TOKEN_OVERFLOW_BIN (a point: exact); timings fall in log-spaced bins
# [2^(b/64), 2^((b+1)/64)), values <= 0 (and NaN) in NONPOSITIVE_BIN.

HISTOGRAM_TABLE = "inference_histograms_hourly"
TOKEN_OVERFLOW_BIN = 1 << 20
LOG_BINS_PER_DOUBLING = 64
NONPOSITIVE_BIN = -100001
_TOKEN_SIGNALS = frozenset({"prompt_tokens", "completion_tokens"})
_HOUR = dt.timedelta(hours=1)

# The view's bins (0018), computed from rows for the parts of a window the histograms cannot answer.
_ROW_BINS = """[
    ('prompt_tokens', toInt32(least(prompt_tokens, 1048576))),
    ('completion_tokens', toInt32(least(completion_tokens, 1048576))),
    ('latency_ms', if(latency_ms > 0, toInt32(least(floor(log2(latency_ms) * 64), 100000)), -100001)),
    ('time_to_first_token_ms', if(time_to_first_token_ms > 0,
        toInt32(least(floor(log2(time_to_first_token_ms) * 64), 100000)), -100001))
]"""


def _hours_sql(w: str) -> str:
    return (
        f"hour >= {{{w}_hours_start:DateTime64(3, 'UTC')}} AND hour < {{{w}_hours_end:DateTime64(3, 'UTC')}}"
    )


def _rows_outside_hours_sql(w: str) -> str:
    return (
        f"(occurred_at < {{{w}_hours_start:DateTime64(3, 'UTC')}} "
        f"OR occurred_at >= {{{w}_hours_end:DateTime64(3, 'UTC')}} "
        "OR has({mismatched:Array(DateTime('UTC'))}, toDateTime(toStartOfHour(occurred_at), 'UTC')))"
    )


# Each whole hour's histogram count against the deduplicated rows (inference_log_v reads FINAL).
_HOUR_CHECK_SQL = f"""
SELECT h, sum(r) AS answers, sum(c) AS binned
FROM
(
    SELECT toDateTime(toStartOfHour(occurred_at), 'UTC') AS h, count() AS r, toUInt64(0) AS c
    FROM inference_log_v
    WHERE model = {{model:String}} AND error = '' AND (
        (occurred_at >= {{reference_hours_start:DateTime64(3, 'UTC')}}
            AND occurred_at < {{reference_hours_end:DateTime64(3, 'UTC')}})
        OR (occurred_at >= {{current_hours_start:DateTime64(3, 'UTC')}}
            AND occurred_at < {{current_hours_end:DateTime64(3, 'UTC')}}))
    GROUP BY h
    UNION ALL
    SELECT hour, toUInt64(0), sum(count)
    FROM {HISTOGRAM_TABLE}
    WHERE model = {{model:String}} AND signal = 'prompt_tokens'
        AND (({_hours_sql("reference")}) OR ({_hours_sql("current")}))
    GROUP BY hour
)
GROUP BY h
HAVING answers != binned
"""


def _histogram_sql(rows_from: Sequence[str]) -> str:
    """Per window, version, arm, signal and bin: the count, from histograms and from ``rows_from``'s rows."""
    parts = [
        f"""
    SELECT toUInt8({w == "current"}) AS w, model_version, arm, signal, bin, count AS n
    FROM {HISTOGRAM_TABLE}
    WHERE model = {{model:String}} AND {_hours_sql(w)} AND has({{signals:Array(String)}}, signal)
        AND NOT has({{mismatched:Array(DateTime('UTC'))}}, hour)"""
        for w in ("reference", "current")
    ]
    parts.extend(
        f"""
    SELECT toUInt8({w == "current"}), model_version, arm, s.1, s.2, toUInt64(1)
    FROM inference_log_v
    ARRAY JOIN {_ROW_BINS} AS s
    WHERE model = {{model:String}} AND error = '' AND {_window(_WINDOW, w)} AND {_rows_outside_hours_sql(w)}
        AND has({{signals:Array(String)}}, s.1)"""
        for w in rows_from
    )
    return f"""
SELECT w, model_version, arm, signal, bin, sum(n)
FROM
({" UNION ALL ".join(parts)}
)
GROUP BY w, model_version, arm, signal, bin
"""


def _whole_hours(start: dt.datetime, end: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The whole hours inside [start, end): [first, last), empty when first >= last."""
    floor = start.replace(minute=0, second=0, microsecond=0)
    first = floor if floor == start else floor + _HOUR
    return first, end.replace(minute=0, second=0, microsecond=0)


def _kolmogorov_sf(x: float) -> float:
    """P(K > x) for the Kolmogorov distribution: the asymptotic p-value ClickHouse's KS test gives."""
    if x <= 0:
        return 1.0
    if x < 1.0:
        # The theta-function form converges fast where the alternating series does not.
        cdf = (
            math.sqrt(2 * math.pi)
            / x
            * sum(math.exp(-((2 * k - 1) ** 2) * math.pi**2 / (8 * x * x)) for k in range(1, 20))
        )
        return min(1.0, max(0.0, 1.0 - cdf))
    return min(1.0, max(0.0, 2 * sum((-1) ** (k - 1) * math.exp(-2 * k * k * x * x) for k in range(1, 100))))


def histogram_ks(
    reference: np.ndarray, current: np.ndarray, points: np.ndarray
) -> tuple[float, float]:  # fmt: skip
    """Bounds on the two-sample KS statistic of two samples known only as counts per shared bin.

    Args:
        reference, current: counts per bin, bins in increasing order (the same bins for both).
        points: per bin, whether it holds a single value (a token count below the overflow bin).

    Returns:
        (low, high). ``low`` is the largest distance between the two ECDFs at the bins' upper edges,
        where they are known exactly; the true statistic is at least that. Inside a bin that spans
        values each ECDF moves between its values at the bin's two edges, so the distance there is
        at most the larger of |F_ref(upper) - F_cur(lower)| and |F_cur(upper) - F_ref(lower)|:
        ``high``, at most ``low`` plus the larger mass the two samples put in one such bin. With
        point bins only, ``low == high`` is the exact statistic.
    """
    cum_r = np.cumsum(reference) / max(reference.sum(), 1)
    cum_c = np.cumsum(current) / max(current.sum(), 1)
    if len(cum_r) == 0:
        return 0.0, 0.0
    low = float(np.max(np.abs(cum_r - cum_c)))
    below_r, below_c = np.concatenate([[0.0], cum_r[:-1]]), np.concatenate([[0.0], cum_c[:-1]])
    inside = np.maximum(np.abs(cum_r - below_c), np.abs(cum_c - below_r))[~points]
    return low, max(low, float(inside.max(initial=0.0)))


def _psi_term(c: float, r: float) -> float:
    return (c - r) * math.log(c / r)


def histogram_psi(
    reference: np.ndarray, current: np.ndarray, points: np.ndarray, epsilon: float
) -> tuple[float, float, float] | None:  # fmt: skip
    """PSI on the reference deciles from counts per shared bin, with bounds on the exact PSI.

    Each decile is placed as the exact path places it (the sorted reference value at
    floor(level * n)) in the bin that holds it; the PSI bin ends at that bin's upper edge. In a point
    bin that is the decile itself, so tied deciles merge as they do there and PSI is exact. In a bin
    that spans values the exact count at or below the decile lies between the counts below and
    through the bin: each PSI bin's shares lie in an interval, and since each term
    (c - r) ln(c / r) is jointly convex, increasing in |c - r|, its range over those intervals is
    found at their ends. The sum of the ranges bounds the exact PSI.

    Returns:
        (value, low, high), or None when two deciles fall in one bin that spans values (the bins
        cannot tell whether they tie, so not even the number of PSI bins is known).
    """
    cum_r, cum_c = np.cumsum(reference), np.cumsum(current)
    n_r, n_c = int(cum_r[-1]), int(cum_c[-1])
    holding = [int(np.searchsorted(cum_r, min(int(level * n_r), n_r - 1), "right")) for level in PSI_LEVELS]
    cuts = sorted(set(holding))
    if any(holding.count(k) > 1 and not points[k] for k in cuts):
        return None

    def at_most(cum: np.ndarray, k: int | None, through: bool, n: int) -> int:
        if k is None:
            return n
        return int(cum[k]) if through or points[k] else int(cum[k - 1]) if k > 0 else 0

    def share(
        cum: np.ndarray, n: int, start: int | None, end: int | None, high_end: bool, low_start: bool
    ) -> float:
        low = 0 if start is None else at_most(cum, start, not low_start, n)
        return max(at_most(cum, end, high_end, n) - low, 0) / n

    value, low, high = 0.0, 0.0, 0.0
    for start, end in zip([None, *cuts], [*cuts, None], strict=True):
        # Nominal shares (both ends through their bins), then the least and the most each can be.
        c, r = (
            max(share(cum, n, start, end, True, False), epsilon) for cum, n in ((cum_c, n_c), (cum_r, n_r))
        )
        c_lo, c_hi = (
            max(share(cum_c, n_c, start, end, e, s), epsilon) for e, s in ((False, False), (True, True))
        )
        r_lo, r_hi = (
            max(share(cum_r, n_r, start, end, e, s), epsilon) for e, s in ((False, False), (True, True))
        )
        value += _psi_term(c, r)
        high += max(_psi_term(x, y) for x in (c_lo, c_hi) for y in (r_lo, r_hi))
        if c_lo > r_hi:
            low += _psi_term(c_lo, r_hi)
        elif r_lo > c_hi:
            low += _psi_term(c_hi, r_lo)
    return value, low, high


def _rounded(x: float, up: bool) -> str:
    """``x`` to six significant digits, rounded away from the inside of the interval it bounds."""
    if x <= 0 or not math.isfinite(x):
        return f"{x:.6g}"
    step = 10.0 ** (math.floor(math.log10(x)) - 5)
    return f"{(math.ceil(x / step) if up else math.floor(x / step)) * step:.6g}"


def _numeric_drift_from_histograms(
    client: Client, request: DriftRequest, signals: list[str]
) -> list[DriftResult] | None:
    """numeric_drift from the hourly histograms; None where they cannot answer (the exact path does)."""
    pooled = request.reference_scope == "model"
    t = request.thresholds
    parameters: dict[str, Any] = {**_parameters(request), "signals": signals}
    rows_from = []
    for w in ("reference", "current"):
        start, end = getattr(request, f"{w}_start"), getattr(request, f"{w}_end")
        first, last = _whole_hours(start, end)
        if first >= last:
            return None
        parameters[f"{w}_hours_start"], parameters[f"{w}_hours_end"] = first, last
        if start < first or last < end:
            rows_from.append(w)
    checked = client.query(
        _HOUR_CHECK_SQL, parameters=parameters, settings={"log_comment": "drift:histograms:check"}
    ).result_rows
    mismatched = sorted({_utc(h, "hour") for h, _, _ in checked})
    parameters["mismatched"] = mismatched
    if mismatched:
        rows_from = ["reference", "current"]
    binned = client.query(
        _histogram_sql(rows_from), parameters=parameters, settings={"log_comment": "drift:histograms:bins"}
    ).result_rows
    # histograms[(window, group)][signal] = {bin: count}; the pooled reference is ("", "").
    histograms: dict[tuple[int, tuple[str, str]], dict[str, dict[int, int]]] = {}
    for w, version, arm, signal, b, n in binned:
        keys = [(w, (version, arm))] + ([(w, ("", ""))] if w == 0 else [])
        for key in keys:
            counts = histograms.setdefault(key, {}).setdefault(signal, {})
            counts[b] = counts.get(b, 0) + int(n)

    def total(key: tuple[int, tuple[str, str]]) -> int:
        return sum(histograms.get(key, {}).get(signals[0], {}).values())

    counts = {
        g: (total((0, ("", "") if pooled else g)), total((1, g)))
        for w, g in histograms if w == 1 and total((1, g)) > 0
    }  # fmt: skip

    def note(statistic: str, low: float, high: float) -> str:
        return f"from hourly histograms: {statistic} in [{_rounded(low, False)}, {_rounded(high, True)}]"

    results = []
    for signal in signals:
        for group in sorted(counts):
            n = counts[group]
            if min(n) < t.min_count:
                results.extend(_result(signal, stat, group, n, t, enough=False) for stat in (_PSI, _KS))
                continue
            ref = histograms[(0, ("", "") if pooled else group)][signal]
            cur = histograms[(1, group)][signal]
            bins = np.array(sorted(ref.keys() | cur.keys()), dtype=np.int64)
            r = np.array([ref.get(int(b), 0) for b in bins], dtype=np.float64)
            c = np.array([cur.get(int(b), 0) for b in bins], dtype=np.float64)
            if signal in _TOKEN_SIGNALS:
                points = bins < TOKEN_OVERFLOW_BIN
            else:
                points = np.zeros(len(bins), dtype=bool)
            psi = histogram_psi(r, c, points, t.psi_epsilon)
            if psi is None:
                return None
            ks_low, ks_high = histogram_ks(r, c, points)
            p_value = _kolmogorov_sf(math.sqrt(n[0] * n[1] / (n[0] + n[1])) * ks_low)
            results.append(_result(signal, _PSI, group, n, t, _finite(psi[0]), note=note("psi", *psi[1:])))
            results.append(
                _result(signal, _KS, group, n, t, ks_low, p_value, note=note("ks", ks_low, ks_high))
            )
    return results


def feedback_drift(client: Client, request: DriftRequest) -> list[DriftResult]:
    """Shift of the mean feedback score (current minus reference) with a Mann-Whitney U p-value."""
    if FEEDBACK_SIGNAL not in request.signals:
        return []
    pooled = request.reference_scope == "model"
    sql = _shift_sql(_FEEDBACK_SOURCE)
    return _family(client, request, _FEEDBACK_SOURCE, sql, [FEEDBACK_SIGNAL], (_MEAN_SHIFT,), pooled)


def retrieval_drift(client: Client, request: DriftRequest) -> list[DriftResult]:
    """KS of the top hit's score per collection and mode (scores have one scale per mode)."""
    if RETRIEVAL_SIGNAL not in request.signals:
        return []
    # Always per group: collections and modes score on scales of their own.
    sql = _ks_sql(_RETRIEVAL_SOURCE)
    results = _family(client, request, _RETRIEVAL_SOURCE, sql, [RETRIEVAL_SIGNAL], (_KS,), False)
    return [
        replace(r, model_version="", arm="", collection=r.model_version, mode=r.arm, note=RETRIEVAL_NOTE)
        for r in results
    ]


# --- prompt embeddings -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EmbeddingDistance:
    """Cosine distance between the normalised centroids of two sets, and its permutation p-value."""

    distance: float
    p_value: float
    reference_count: int
    current_count: int


def _unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return rows / np.where(norms == 0, 1.0, norms)


def embedding_drift(
    reference: np.ndarray | Sequence[Sequence[float]],
    current: np.ndarray | Sequence[Sequence[float]],
    *,
    permutations: int = 1000,
    seed: int = 0,
) -> EmbeddingDistance:
    """Distance between the two sets' centroids, with the share of label permutations at least as far.

    Embeddings are made unit length, then each centroid (a centroid near the origin has an unstable
    direction, so it is normalised too); the distance is 1 - cosine between the centroids. The
    p-value is (1 + permutations at least as far) / (1 + permutations), labels shuffled with ``seed``.
    """
    ref = _unit(np.asarray(reference, dtype=np.float64))
    cur = _unit(np.asarray(current, dtype=np.float64))
    if ref.ndim != 2 or cur.ndim != 2 or ref.shape[1] != cur.shape[1] or len(ref) < 2 or len(cur) < 2:
        raise InvalidArgument(
            "embedding_drift needs two sets of at least 2 embeddings of one size, "
            f"got {ref.shape} and {cur.shape}"
        )
    pooled = np.vstack([ref, cur])
    total = pooled.sum(axis=0)

    def distances(reference_sums: np.ndarray) -> np.ndarray:
        a, b = _unit(reference_sums), _unit(total - reference_sums)
        return 1.0 - np.sum(a * b, axis=-1)

    observed = float(distances(ref.sum(axis=0)))
    rng = np.random.default_rng(seed)
    n, k = len(pooled), len(ref)
    at_least = 0
    for start in range(0, permutations, 256):
        size = min(256, permutations - start)
        chosen = np.argsort(rng.random((size, n)), axis=1)[:, :k]
        mask = np.zeros((size, n))
        np.put_along_axis(mask, chosen, 1.0, axis=1)
        # Rounding can leave a permutation of the observed split a hair below it: count ties as such.
        at_least += int(np.sum(distances(mask @ pooled) >= observed - 1e-12))
    return EmbeddingDistance(observed, (1 + at_least) / (1 + permutations), len(ref), len(cur))


def sample_prompts(
    client: Client, model: str, start: dt.datetime, end: dt.datetime, n: int, *, pooled: bool = False
) -> dict[tuple[str, str], list[str]]:
    """Up to ``n`` prompts of ``model`` in [start, end) per (model_version, arm), or all as ("", "").

    The sample is the first ``n`` by a hash of the request id: the same rows on every call, and only
    they leave ClickHouse.
    """
    result = client.query(
        PROMPT_SAMPLE_SQL,
        parameters={
            "model": model, "window_start": _utc(start, "start"), "window_end": _utc(end, "end"), "n": n,
            "pooled": pooled,
        },
    )  # fmt: skip
    samples: dict[tuple[str, str], list[str]] = {}
    for a, b, prompt in result.result_rows:
        samples.setdefault((a, b), []).append(prompt)
    return samples


def prompt_embedding_drift(client: Client, request: DriftRequest, embed: Embed) -> list[DriftResult]:
    """Centroid distance of prompt embeddings per version and arm; ``embed`` is the caller's model.

    Args:
        embed: texts to vectors, e.g. the platform's all-MiniLM-L6-v2 ``Embedder`` (llmops.retrieval).
    """
    if EMBEDDING_SIGNAL not in request.signals:
        return []
    pooled = request.reference_scope == "model"
    n, t = request.embedding_sample, request.thresholds
    current = sample_prompts(client, request.model, request.current_start, request.current_end, n)
    reference = sample_prompts(
        client, request.model, request.reference_start, request.reference_end, n, pooled=pooled
    )
    results = []
    embedded: dict[tuple[str, str], np.ndarray] = {}

    def reference_vectors(key: tuple[str, str], prompts: list[str]) -> np.ndarray:
        # The pooled reference serves every group: embedded once per report, not once per group.
        if key not in embedded:
            embedded[key] = np.asarray(embed(prompts))
        return embedded[key]

    for group in sorted(current):
        ref_prompts = reference.get(("", "") if pooled else group, [])
        counts = (len(ref_prompts), len(current[group]))
        note = f"a sample of up to {n} prompts per window"
        if min(counts) < t.min_count:
            results.append(_result(EMBEDDING_SIGNAL, _CENTROID, group, counts, t, enough=False, note=note))
            continue
        found = embedding_drift(
            reference_vectors(("", "") if pooled else group, ref_prompts), np.asarray(embed(current[group])),
            permutations=request.permutations, seed=request.seed,
        )  # fmt: skip
        results.append(
            _result(EMBEDDING_SIGNAL, _CENTROID, group, counts, t, found.distance, found.p_value, note=note)
        )
    return results


def drift_report(client: Client, request: DriftRequest, embed: Embed | None = None) -> DriftReport:
    """Every signal ``request`` names; ``embed`` is needed when it names prompt_embedding."""
    if EMBEDDING_SIGNAL in request.signals and embed is None:
        raise InvalidArgument(
            "the prompt_embedding signal needs an embedding model: pass embed (e.g. the retrieval "
            "service's Embedder) or leave prompt_embedding out of signals"
        )
    results = [
        *numeric_drift(client, request),
        *feedback_drift(client, request),
        *retrieval_drift(client, request),
    ]
    if embed is not None:
        results.extend(prompt_embedding_drift(client, request, embed))
    return DriftReport(request, tuple(results))
