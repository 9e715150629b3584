"""The rows of `llmops report`, read through any query function (the CLI passes monitoring's Query)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Row = dict[str, Any]
RunQuery = Callable[[str, dict[str, str]], list[Row]]

# Every query takes {since} (the window's start, UTC) and {model} ('' for every model).
_SINCE = "{since:DateTime64(3, 'UTC')}"
_MODEL = "{model:String}"
_ANSWERS_OF_MODEL = (
    f"({_MODEL} = '' OR model = {_MODEL} OR startsWith(model, concat({_MODEL}, '@')) "
    f"OR startsWith(model, concat({_MODEL}, '/')) OR startsWith(model_version, concat({_MODEL}, '/')))"
)

DRIFT_RESULTS_SQL = f"""
SELECT window_end, model, model_version, arm, collection, mode, signal, statistic, value, threshold,
    drifted, p_value, alpha, current_count
FROM drift_results_v
WHERE window_end >= {_SINCE} AND ({_MODEL} = '' OR model = {_MODEL}) AND status = 'ok'
    AND value IS NOT NULL
ORDER BY window_end
"""

# drift_reports holds only what drifted (the published monitoring.drift_detected events).
DRIFT_REPORTS_SQL = f"""
SELECT window_end, model, model_version, arm, collection, mode, signal, statistic, value, threshold,
    true AS drifted, p_value, alpha, current_count
FROM drift_reports_v
WHERE window_end >= {_SINCE} AND ({_MODEL} = '' OR model = {_MODEL})
ORDER BY window_end
"""

QUALITY_SQL = f"""
SELECT hour, model_version, arm, sum(n) AS requests, sum(rated) AS rated_requests,
    sum(feedbacks) AS feedback_count, sum(score * rated) / nullIf(sum(rated), 0) AS mean_score,
    sum(ups * feedbacks) / nullIf(sumIf(feedbacks, ups IS NOT NULL), 0) AS thumbs_up_share,
    max(p50) AS p50_latency_ms, max(p95) AS p95_latency_ms
FROM
(
    -- Renamed first: an alias equal to a column name would replace that column inside the sums.
    SELECT hour, model_version, arm, requests AS n, rated_requests AS rated, feedback_count AS feedbacks,
        mean_score AS score, thumbs_up_share AS ups, p50_latency_ms AS p50, p95_latency_ms AS p95
    FROM quality_hourly
    WHERE hour >= toStartOfHour({_SINCE}) AND {_ANSWERS_OF_MODEL}
)
GROUP BY hour, model_version, arm
ORDER BY hour, model_version, arm
"""

# Per version and arm over the whole window, from every answer: exact quantiles, not hourly ones.
# Requests that failed on the server side (error != '', migration 0016) are counted apart.
VERSIONS_SQL = f"""
SELECT i.model_version AS model_version, i.arm AS arm, countIf(i.error = '') AS requests,
    countIf(i.error != '') AS failed, countIf(f.score IS NOT NULL) AS rated_requests,
    avg(f.score) AS mean_score, sum(f.ups) / nullIf(sum(f.thumbs), 0) AS thumbs_up_share,
    quantileIf(0.5)(i.latency_ms, i.error = '') AS p50_latency_ms,
    quantileIf(0.95)(i.latency_ms, i.error = '') AS p95_latency_ms
FROM
(
    SELECT request_id, model_version, arm, latency_ms, error FROM inference_log_v
    WHERE occurred_at >= {_SINCE} AND {_ANSWERS_OF_MODEL}
) AS i
LEFT JOIN
(
    SELECT request_id, toNullable(avg(score)) AS score, countIf(thumb = 'up') AS ups,
        countIf(thumb != '') AS thumbs
    FROM feedback_v GROUP BY request_id
) AS f ON f.request_id = i.request_id
GROUP BY model_version, arm
ORDER BY model_version, arm
"""

# The canary's judge (judge_scores, migration 0020) per version, arm and judge: answers judged in the
# window, how many it rated, and its mean score on [0, 1].
JUDGE_SQL = f"""
SELECT model_version, arm, judge, count() AS judged, countIf(score IS NOT NULL) AS judge_rated,
    avg(score) AS judge_score
FROM judge_scores_v
WHERE occurred_at >= {_SINCE} AND {_ANSWERS_OF_MODEL}
GROUP BY model_version, arm, judge
ORDER BY model_version, arm, judge
"""

CANARIES_SQL = f"""
SELECT model, alias, challenger_alias, share, champion_version, challenger_version, active, outcome,
    actor, reason, changed_at
FROM model_canaries_current
WHERE ({_MODEL} = '' OR model = {_MODEL})
ORDER BY model, alias
"""

ALERTS_SQL = f"""
SELECT occurred_at, severity, rule, model, subject, message, `values`, window_start, window_end
FROM alerts_v
WHERE occurred_at >= {_SINCE} AND ({_MODEL} = '' OR model = {_MODEL})
ORDER BY occurred_at DESC
LIMIT 100
"""

LOOP_STEPS_SQL = f"""
SELECT occurred_at, model, loop_id, step, reason, next_step, trigger, challenger_version, canary_share
FROM loop_steps_v
WHERE occurred_at >= {_SINCE} AND ({_MODEL} = '' OR model = {_MODEL})
ORDER BY occurred_at DESC
LIMIT 200
"""

_TIME_COLUMNS = {"window_end", "window_start", "hour", "occurred_at", "changed_at"}


@dataclass
class ReportData:
    """The rows a report is drawn from; every list may be empty."""

    since: dt.datetime
    until: dt.datetime
    model: str = ""
    drift: list[Row] = field(default_factory=list)
    # Which view the drift rows came from: drift_results_v (every run) or drift_reports_v (drifted only).
    drift_source: str = "drift_results_v"
    quality: list[Row] = field(default_factory=list)
    versions: list[Row] = field(default_factory=list)
    judge: list[Row] = field(default_factory=list)
    canaries: list[Row] = field(default_factory=list)
    alerts: list[Row] = field(default_factory=list)
    loop_steps: list[Row] = field(default_factory=list)


def parse_since(text: str) -> dt.timedelta:
    """``30m``, ``12h``, ``7d`` or ``2w`` as a duration; ValueError otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*([mhdw])\s*", text)
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"{text!r} is not a duration such as 30m, 12h, 7d or 2w")
    unit = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[match.group(2)]
    return dt.timedelta(**{unit: int(match.group(1))})


def fetch(run_query: RunQuery, *, since: dt.datetime, until: dt.datetime, model: str = "") -> ReportData:
    """Every section's rows through ``run_query(sql, parameters)``; drift falls back to drift_reports_v
    when drift_results_v has no rows in the window."""
    params = {"since": since.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3], "model": model}

    def rows(sql: str) -> list[Row]:
        # Query refuses a parameter the statement does not use.
        used = {name: value for name, value in params.items() if "{" + name + ":" in sql}
        return [_normalise(r) for r in run_query(sql, used)]

    data = ReportData(since=since, until=until, model=model)
    data.drift = rows(DRIFT_RESULTS_SQL)
    if not data.drift:
        data.drift = rows(DRIFT_REPORTS_SQL)
        data.drift_source = "drift_reports_v"
    data.quality = rows(QUALITY_SQL)
    data.versions = rows(VERSIONS_SQL)
    data.judge = rows(JUDGE_SQL)
    data.canaries = rows(CANARIES_SQL)
    data.alerts = rows(ALERTS_SQL)
    data.loop_steps = rows(LOOP_STEPS_SQL)
    return data


def _normalise(row: Row) -> Row:
    out = dict(row)
    for name in _TIME_COLUMNS & out.keys():
        value = out[name]
        if isinstance(value, str) and value:
            parsed = dt.datetime.fromisoformat(value)
            out[name] = parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    return out
