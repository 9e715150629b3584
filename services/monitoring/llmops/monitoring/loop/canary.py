"""Canary analysis on quality: the challenger's live feedback, latency and errors against the
champion's, over the same window, computed in ClickHouse where the logs are.

Quality is measured by the users' feedback and, when the policy names a judge, by an LLM judge's
scores of a sample of each arm's answers (:mod:`llmops.monitoring.loop.judge`). Each measure is
compared between the arms with a Mann-Whitney U test (two-sided), once both arms have
``min_requests`` answers and the measure's minimum of scores per arm (``min_feedback``,
``judge.min_scores``).

Like Flagger's or Argo Rollouts' analysis, each run ends in a verdict: ``rollback`` when the challenger
breaks an SLO or is worse on any measure with confidence (p < alpha); ``promote`` when every measure
has its data, none is worse and one is better with confidence (and at least ``min_effect``);
``step`` (raise the share) when the current share has seen enough traffic without a verdict; else
``wait``.
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

_ANSWERS = f"""
    SELECT request_id, model_version FROM inference_log_v
    WHERE {REGISTERED} = {{model:String}} AND error = ''
        AND model_version IN ({{champion:String}}, {{challenger:String}})
        AND occurred_at >= {{start:DateTime64(3, 'UTC')}} AND occurred_at < {{end:DateTime64(3, 'UTC')}}
"""


def _scored(scores: str) -> str:
    """Each answer of either arm in the window with its score from ``scores`` (request_id, score)."""
    return f"""
SELECT toUInt8(i.model_version = {{challenger:String}}) AS challenger, f.score AS score
FROM ({_ANSWERS}) AS i
INNER JOIN ({scores}) AS f ON i.request_id = f.request_id
"""


def _stats(scored: str) -> str:
    return f"""
SELECT countIf(challenger = 0) AS champion_n, countIf(challenger = 1) AS challenger_n,
    avgIf(score, challenger = 0) AS champion_mean, avgIf(score, challenger = 1) AS challenger_mean
FROM ({scored})
"""


def _test(scored: str) -> str:
    # Run only when both arms have scores (the engine refuses an empty sample).
    return f"""
SELECT mannWhitneyUTest('two-sided')(score, challenger).2 AS p_value
FROM ({scored})
"""


# Feedback is folded per answer first (an answer rated twice counts once).
_RATED = _scored("""
    SELECT request_id, avg(score) AS score FROM feedback_v
    WHERE occurred_at >= {start:DateTime64(3, 'UTC')}
    GROUP BY request_id
""")
FEEDBACK_SQL = _stats(_RATED)
FEEDBACK_TEST_SQL = _test(_RATED)

# The live judge's scores of the arms' answers (llmops.monitoring.loop.judge), abstentions left out.
_JUDGED = _scored("""
    SELECT request_id, score FROM judge_scores_v
    WHERE judge = {judge:String} AND prompt_version = {judge_prompt:String} AND score IS NOT NULL
""")
JUDGE_SQL = _stats(_JUDGED)
JUDGE_TEST_SQL = _test(_JUDGED)


@dataclass(frozen=True, slots=True)
class _Quality:
    """One quality measure of both arms: feedback or judge scores."""

    name: str  # in values' keys
    label: str  # in reasons
    unit: str  # what each score is: "rated", "judged"
    champion_n: int
    challenger_n: int
    minimum: int
    champion_mean: float | None
    challenger_mean: float | None
    p_value: float | None

    @property
    def ready(self) -> bool:
        return min(self.champion_n, self.challenger_n) >= self.minimum and self.p_value is not None

    @property
    def difference(self) -> float:
        return (self.challenger_mean or 0.0) - (self.champion_mean or 0.0)

    def summary(self) -> str:
        return (
            f"{self.label} {self.challenger_mean:.3f} ({self.challenger_n} {self.unit}) against the "
            f"champion's {self.champion_mean:.3f} ({self.champion_n} {self.unit}), "
            f"Mann-Whitney p = {self.p_value:.2g}"
        )

    def counts(self) -> str:
        return (
            f"{self.champion_n} / {self.challenger_n} answers {self.unit} (champion / challenger), "
            f"need {self.minimum} per arm"
        )


def _quality(client: Client, name: str, label: str, unit: str, sql: str, test_sql: str, minimum: int,
             parameters: dict[str, Any]) -> _Quality:  # fmt: skip
    n0, n1, mean0, mean1 = client.query(sql, parameters=parameters).result_rows[0]
    p_value = None
    if min(int(n0), int(n1)) >= 2:
        p_value = _number(client.query(test_sql, parameters=parameters).result_rows[0][0])
    return _Quality(
        name, label, unit, int(n0), int(n1), minimum,
        _number(mean0) if n0 else None, _number(mean1) if n1 else None, p_value,
    )  # fmt: skip


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
    judge = policy.judge
    if judge is not None:
        parameters.update(judge=judge.model, judge_prompt=judge.prompt_version)
    arms = {row[0]: row for row in client.query(ARMS_SQL, parameters=parameters).result_rows}
    measures = [
        _quality(
            client,
            "feedback",
            "feedback",
            "rated",
            FEEDBACK_SQL,
            FEEDBACK_TEST_SQL,
            policy.min_feedback,
            parameters,
        )
    ]
    if judge is not None:
        measures.append(
            _quality(
                client,
                "judge",
                "judge score",
                "judged",
                JUDGE_SQL,
                JUDGE_TEST_SQL,
                judge.min_scores,
                parameters,
            )
        )
    feedback = measures[0]
    n = {name: int(arms[name][1]) if name in arms else 0 for name in (champion, challenger)}
    values: dict[str, float] = {
        "champion_requests": n[champion],
        "challenger_requests": n[challenger],
        "champion_feedback": feedback.champion_n,
        "challenger_feedback": feedback.challenger_n,
    }
    optional: list[tuple[str, Any]] = [
        ("champion_feedback_mean", feedback.champion_mean),
        ("challenger_feedback_mean", feedback.challenger_mean),
        ("p_value", feedback.p_value),
        ("champion_p95_latency_ms", arms[champion][2] if champion in arms else None),
        ("challenger_p95_latency_ms", arms[challenger][2] if challenger in arms else None),
        ("champion_error_rate", arms[champion][3] if champion in arms else None),
        ("challenger_error_rate", arms[challenger][3] if challenger in arms else None),
    ]
    for m in measures[1:]:
        values[f"champion_{m.name}_scores"] = m.champion_n
        values[f"challenger_{m.name}_scores"] = m.challenger_n
        optional += [
            (f"champion_{m.name}_mean", m.champion_mean),
            (f"challenger_{m.name}_mean", m.challenger_mean),
            (f"{m.name}_p_value", m.p_value),
        ]
    for key, number in optional:
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
    if judge is not None:
        evidence.update(
            judge=judge.model, judge_prompt_version=judge.prompt_version, judge_query=JUDGE_SQL.strip(),
            judge_test_query=JUDGE_TEST_SQL.strip(),
        )  # fmt: skip

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
    # Quality: worse on any measure rolls back; better on one, with every measure having its data
    # and none worse, promotes.
    ready = [m for m in measures if enough_requests and m.ready]
    for m in ready:
        values[f"{m.name}_difference"] = m.difference
    worse = [m for m in ready if m.p_value is not None and m.p_value < policy.alpha and m.difference < 0]
    if worse:
        return verdict(
            "rollback", f"challenger {challenger} is worse: " + "; ".join(m.summary() for m in worse)
        )
    better = [
        m
        for m in ready
        if m.p_value is not None and m.p_value < policy.alpha and m.difference > policy.min_effect
    ]
    if better and len(ready) == len(measures):
        confidence = 1 - policy.alpha
        return verdict(
            "promote",
            f"challenger {challenger} is better with {confidence:.0%} confidence: "
            + "; ".join(m.summary() for m in measures),
        )
    waiting = [m for m in measures if m not in ready]
    if not waiting:
        undecided = "no verdict yet: " + "; ".join(m.summary() for m in measures) + f" (alpha {policy.alpha})"
    elif not enough_requests or waiting == [feedback]:
        undecided = (
            f"not enough traffic for a verdict: {n[champion]} / {n[challenger]} answers and "
            f"{feedback.champion_n} / {feedback.challenger_n} rated (champion / challenger), need "
            f"{policy.min_requests} and {policy.min_feedback} per arm"
        )
        if judge is not None:
            undecided += f"; {measures[1].counts()} by the judge"
    else:
        undecided = "not enough judged answers for a verdict: " + "; ".join(m.counts() for m in waiting)
        if ready:
            undecided += "; so far " + "; ".join(m.summary() for m in ready)
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
