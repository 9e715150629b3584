"""Canary analysis on quality: the challenger's live feedback, latency and errors against the
champion's, over the same window, computed in ClickHouse where the logs are.

Like Flagger's or Argo Rollouts' analysis, each run ends in a verdict: ``rollback`` when the challenger
breaks an SLO or its feedback is worse with confidence; ``promote`` when its feedback is better with
confidence (Mann-Whitney U, two-sided, p < alpha, and at least ``min_effect`` better) after both arms
have ``min_requests`` answers and ``min_feedback`` ratings; ``step`` (raise the share) when the
current share has seen enough traffic without a verdict; else ``wait``.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from clickhouse_connect.driver import Client

from llmops.monitoring.loop.policy import CanaryPolicy

Action = Literal["promote", "rollback", "step", "wait"]

# Requests of the registered model (the requested name without @alias or /version) by version:
# latency over answers, the error rate over all requests, feedback over answers only.
REGISTERED = "replaceRegexpOne(model, '(@.*|/[0-9]+)$', '')"

ARMS_SQL = f"""
SELECT model_version, count() AS requests,
    quantileExactIf(0.95)(latency_ms, error = '') AS p95_latency_ms,
    countIf(error != '') / count() AS error_rate
FROM inference_log_v
WHERE {REGISTERED} = {{model:String}}
    AND model_version IN ({{champion:String}}, {{challenger:String}})
    AND occurred_at >= {{start:DateTime64(3, 'UTC')}} AND occurred_at < {{end:DateTime64(3, 'UTC')}}
GROUP BY model_version
"""

# Feedback is folded per answer first (an answer rated twice counts once).
_RATED = f"""
SELECT toUInt8(i.model_version = {{challenger:String}}) AS challenger, f.score AS score
FROM
(
    SELECT request_id, model_version FROM inference_log_v
    WHERE {REGISTERED} = {{model:String}} AND error = ''
        AND model_version IN ({{champion:String}}, {{challenger:String}})
        AND occurred_at >= {{start:DateTime64(3, 'UTC')}} AND occurred_at < {{end:DateTime64(3, 'UTC')}}
) AS i
INNER JOIN
(
    SELECT request_id, avg(score) AS score FROM feedback_v
    WHERE occurred_at >= {{start:DateTime64(3, 'UTC')}}
    GROUP BY request_id
) AS f ON i.request_id = f.request_id
"""

FEEDBACK_SQL = f"""
SELECT countIf(challenger = 0) AS champion_n, countIf(challenger = 1) AS challenger_n,
    avgIf(score, challenger = 0) AS champion_mean, avgIf(score, challenger = 1) AS challenger_mean
FROM ({_RATED})
"""

# Run only when both arms have ratings (the engine refuses an empty sample).
FEEDBACK_TEST_SQL = f"""
SELECT mannWhitneyUTest('two-sided')(score, challenger).2 AS p_value
FROM ({_RATED})
"""


@dataclass(frozen=True, slots=True)
class CanaryVerdict:
    """What the analysis found and what the loop should do; ``values`` are the figures behind it."""

    action: Action
    reason: str
    values: dict[str, float] = field(default_factory=dict)
    evidence: dict[str, str] = field(default_factory=dict)


def version_name(model: str, version: int) -> str:
    """How serving names a registry version in its logs (``model_version``)."""
    return f"{model}/{version}"


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _number(value: Any) -> float | None:
    return None if value is None or not math.isfinite(float(value)) else float(value)


def analyse_canary(
    client: Client,
    model: str,
    champion_version: int,
    challenger_version: int,
    start: dt.datetime,
    end: dt.datetime,
    policy: CanaryPolicy,
    *,
    share_start: dt.datetime | None = None,
    last_step: bool = False,
) -> CanaryVerdict:
    """The verdict on the canary of ``model`` over [start, end).

    Args:
        share_start: when the current share began; ``step`` needs ``min_requests`` challenger answers
            since then (defaults to ``start``).
        last_step: the share cannot be raised further (an undecided canary then waits).
    """
    champion, challenger = version_name(model, champion_version), version_name(model, challenger_version)
    parameters = {
        "model": model, "champion": champion, "challenger": challenger,
        "start": _utc(start), "end": _utc(end),
    }  # fmt: skip
    arms = {row[0]: row for row in client.query(ARMS_SQL, parameters=parameters).result_rows}
    fb = list(client.query(FEEDBACK_SQL, parameters=parameters).result_rows[0])
    p_value = None
    if min(int(fb[0]), int(fb[1])) >= 2:
        p_value = client.query(FEEDBACK_TEST_SQL, parameters=parameters).result_rows[0][0]
    fb.append(p_value)
    n = {name: int(arms[name][1]) if name in arms else 0 for name in (champion, challenger)}
    values: dict[str, float] = {
        "champion_requests": n[champion],
        "challenger_requests": n[challenger],
        "champion_feedback": int(fb[0]),
        "challenger_feedback": int(fb[1]),
    }
    for key, number in (
        ("champion_feedback_mean", fb[2] if fb[0] else None),
        ("challenger_feedback_mean", fb[3] if fb[1] else None),
        ("p_value", fb[4]),
        ("champion_p95_latency_ms", arms[champion][2] if champion in arms else None),
        ("challenger_p95_latency_ms", arms[challenger][2] if challenger in arms else None),
        ("champion_error_rate", arms[champion][3] if champion in arms else None),
        ("challenger_error_rate", arms[challenger][3] if challenger in arms else None),
    ):
        if (number := _number(number)) is not None:
            values[key] = number
    values["alpha"] = policy.alpha
    evidence = {
        "window_start": parameters["start"].isoformat(),
        "window_end": parameters["end"].isoformat(),
        "arms_query": ARMS_SQL.strip(),
        "feedback_query": FEEDBACK_SQL.strip(),
        "feedback_test_query": FEEDBACK_TEST_SQL.strip(),
    }

    def verdict(action: Action, reason: str) -> CanaryVerdict:
        return CanaryVerdict(action, reason, values, evidence)

    enough_requests = min(n.values()) >= policy.min_requests
    # SLOs first: a challenger that is slow or failing goes, whatever its feedback.
    if n[challenger] >= policy.min_requests:
        p95 = values.get("challenger_p95_latency_ms")
        if policy.latency_p95_slo_ms is not None and p95 is not None and p95 > policy.latency_p95_slo_ms:
            return verdict(
                "rollback",
                f"challenger {challenger} p95 latency {p95:,.0f} ms breaks the SLO of "
                f"{policy.latency_p95_slo_ms:,.0f} ms ({n[challenger]} answers)",
            )
        errors = values.get("challenger_error_rate")
        if policy.error_rate_slo is not None and errors is not None and errors > policy.error_rate_slo:
            return verdict(
                "rollback",
                f"challenger {challenger} error rate {errors:.1%} breaks the SLO of "
                f"{policy.error_rate_slo:.1%} ({n[challenger]} answers)",
            )
    rated = min(int(fb[0]), int(fb[1]))
    p_value = values.get("p_value")
    if enough_requests and rated >= policy.min_feedback and p_value is not None:
        diff = values["challenger_feedback_mean"] - values["champion_feedback_mean"]
        values["feedback_difference"] = diff
        summary = (
            f"feedback {values['challenger_feedback_mean']:.3f} ({int(fb[1])} rated) against the "
            f"champion's {values['champion_feedback_mean']:.3f} ({int(fb[0])} rated), "
            f"Mann-Whitney p = {p_value:.2g}"
        )
        if p_value < policy.alpha and diff < 0:
            return verdict("rollback", f"challenger {challenger} is worse: {summary}")
        if p_value < policy.alpha and diff > policy.min_effect:
            confidence = 1 - policy.alpha
            return verdict(
                "promote", f"challenger {challenger} is better with {confidence:.0%} confidence: {summary}"
            )
        undecided = f"no verdict yet: {summary} (alpha {policy.alpha})"
    else:
        undecided = (
            f"not enough traffic for a verdict: {n[champion]} / {n[challenger]} answers and "
            f"{int(fb[0])} / {int(fb[1])} rated (champion / challenger), need {policy.min_requests} "
            f"and {policy.min_feedback} per arm"
        )
    if not last_step:
        since = parameters["start"] if share_start is None else _utc(share_start)
        if since == parameters["start"]:
            at_share = n[challenger]
        else:
            recent = client.query(ARMS_SQL, parameters={**parameters, "start": since}).result_rows
            at_share = next((int(r[1]) for r in recent if r[0] == challenger), 0)
        values["challenger_requests_at_share"] = at_share
        if at_share >= policy.min_requests:
            return verdict("step", f"{undecided}; {at_share} challenger answers at this share: raise it")
    return verdict("wait", undecided)
