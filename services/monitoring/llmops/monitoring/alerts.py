"""Alerts (monitoring.alert) on the logs in ClickHouse, each naming the evidence that raised it.

Every rule is one SQL statement that aggregates where the data lives and returns only the groups that
break it; each such row becomes an :class:`AlertRaised` carrying the statement as run, its parameters
(as strings: re-running ``query`` with ``parameters`` gives ``values`` again), the window and the
figures seen. The rules, over the window ``[now - window_seconds, now)``:

- ``latency_slo``: p95 latency of the successful answers of a (model, version, arm) above the SLO.
- ``error_rate_slo``: the share of a (model, version, arm)'s requests that failed on the server side
  (inference_log.error set: UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED, INTERNAL...). Failures before a
  version was chosen (model_version '') are counted against all of the model's requests.
- ``feedback_drop``: a model's mean feedback score (feedback dated by when it was given) against the
  previous window of the same length: a drop of at least ``feedback_min_drop`` that Mann-Whitney U
  finds significant, and/or a mean under ``feedback_floor``.
- ``caller_flood``, ``prompt_injection``, ``pii_probing``: per caller (the request's ``user``, else
  the service that logged it): requests per minute, prompts matching :data:`INJECTION_PATTERNS`, and
  PII placeholders (what redaction wrote into the logged prompt) per window.

An alert for the same rule, model and subject is not raised again within ``cooldown_seconds``; the
last one is looked up in ``alerts_v``, so a restart does not raise it anew.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from clickhouse_connect.driver import Client
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from llmops.contracts.events import AlertRaised
from llmops.core.messaging import EventBus
from llmops.core.pii import PII_TYPES
from llmops.monitoring.store.analytics import AnalyticsStore

log = logging.getLogger(__name__)

LATENCY_SLO = "latency_slo"
ERROR_RATE_SLO = "error_rate_slo"
FEEDBACK_DROP = "feedback_drop"
CALLER_FLOOD = "caller_flood"
PROMPT_INJECTION = "prompt_injection"
PII_PROBING = "pii_probing"
RULES = (LATENCY_SLO, ERROR_RATE_SLO, FEEDBACK_DROP, CALLER_FLOOD, PROMPT_INJECTION, PII_PROBING)

# Prompt-injection phrasings, matched case-insensitively (RE2, ClickHouse's `match`). Each needs an
# instruction-like verb and what it targets together ("ignore ... previous instructions", "reveal
# your system prompt"), so that licences, manuals and ordinary questions do not match:
# tests/unit/test_monitoring_alerts.py measures false positives on the machine's licence and README
# files and recall on known injection phrasings.
_OVERRIDE = r"(?:ignore|disregard|forget|override|bypass|skip)"
_FILLER = r"(?:(?:all|any|every|the|your|my|of|these|those|that|what|was|is|said|you|were|told)\s+){0,4}"
INJECTION_PATTERNS: tuple[str, ...] = (
    rf"\b{_OVERRIDE}\s+{_FILLER}(?:previous|prior|above|earlier|preceding|former|initial|original)\s+"
    r"(?:instructions?|prompts?|rules|directions|guidelines|directives|context|messages?|commands?)",
    rf"\b{_OVERRIDE}\s+{_FILLER}(?:system|developer)\s+(?:prompt|message|instructions?)",
    r"\byou\s+are\s+(?:now\s+)?(?:DAN|in\s+(?:developer|god|jailbreak)\s+mode|jailbroken|unfiltered)\b",
    r"\bdo\s+anything\s+now\b",
    r"\b(?:enable|enter|activate)\s+(?:developer|god|jailbreak|DAN)\s+mode\b",
    r"\b(?:reveal|show|print|repeat|output|display|leak|dump|give|tell|share)\s+(?:me\s+|us\s+)?"
    r"(?:your|the)\s+(?:(?:entire|full|whole|hidden|secret|initial|original|exact)\s+)*"
    r"(?:system\s+(?:prompt|message|instructions?)|hidden\s+instructions|initial\s+instructions|"
    r"instructions\s+(?:above|you\s+were\s+given))",
    r"\bwhat\s+(?:is|are|was|were)\s+your\s+(?:system\s+prompt|initial\s+instructions|hidden\s+instructions|"
    r"original\s+instructions)",
    r"\bpretend\s+(?:that\s+)?you\s+(?:have|are\s+under)\s+no\s+(?:restrictions|rules|guidelines|filters|limits)",
    r"\b(?:act|behave|respond)\s+as\s+(?:if\s+you\s+(?:are|were)\s+)?an?\s+(?:unrestricted|unfiltered|"
    r"uncensored|jailbroken)\s+(?:ai|model|assistant|chatbot)",
    r"\bno\s+longer\s+(?:bound|restricted)\s+by\s+(?:your|any|the|openai'?s?)\s+(?:rules|guidelines|policies|"
    r"restrictions|content\s+policy)",
)


def injection_regex(patterns: Sequence[str] = INJECTION_PATTERNS) -> str:
    """The patterns as one case-insensitive RE2 expression (what the SQL runs)."""
    return "(?i)" + "|".join(f"(?:{p})" for p in patterns)


# What redaction writes in place of personal data: "[EMAIL]", "[CREDIT_CARD]" (llmops.core.pii).
PII_PLACEHOLDER_REGEX = r"\[(?:" + "|".join(PII_TYPES) + r")\]"


class AlertSettings(BaseSettings):
    """Alert rules and their thresholds (prefix ``LLMOPS_MONITORING_ALERT_``)."""

    model_config = SettingsConfigDict(env_prefix="LLMOPS_MONITORING_ALERT_", extra="ignore")

    enabled: bool = True
    interval_seconds: float = Field(60.0, gt=0)
    window_seconds: int = Field(900, ge=60)
    # The same rule, model and subject is not raised again within this time.
    cooldown_seconds: int = Field(3600, ge=0)

    latency_enabled: bool = True
    latency_p95_ms: float = Field(1500.0, gt=0)
    latency_min_requests: int = Field(50, ge=1)

    error_rate_enabled: bool = True
    error_rate_max: float = Field(0.05, ge=0, lt=1)
    error_rate_min_requests: int = Field(50, ge=1)

    feedback_enabled: bool = True
    feedback_min_drop: float = Field(0.1, ge=0)  # scores are 0..1
    feedback_alpha: float = Field(0.01, gt=0, lt=1)
    feedback_floor: float | None = Field(None, ge=0, le=1)  # None: no floor
    feedback_min_count: int = Field(30, ge=2)  # rated requests per window

    flood_enabled: bool = True
    flood_requests_per_minute: int = Field(120, ge=1)

    injection_enabled: bool = True
    injection_min_prompts: int = Field(3, ge=1)
    injection_min_share: float = Field(0.05, ge=0, le=1)

    pii_enabled: bool = True
    pii_max_placeholders: int = Field(20, ge=0)

    def rule_enabled(self, rule: str) -> bool:
        flag = {
            LATENCY_SLO: self.latency_enabled,
            ERROR_RATE_SLO: self.error_rate_enabled,
            FEEDBACK_DROP: self.feedback_enabled,
            CALLER_FLOOD: self.flood_enabled,
            PROMPT_INJECTION: self.injection_enabled,
            PII_PROBING: self.pii_enabled,
        }[rule]
        return self.enabled and flag


# --- SQL -------------------------------------------------------------------------------------------

_IN_WINDOW = (
    "occurred_at >= {window_start:DateTime64(3, 'UTC')} AND occurred_at < {window_end:DateTime64(3, 'UTC')}"
)
_CALLER = "if(user != '', user, producer)"
_CALLER_KIND = "if(user != '', 'user', 'producer')"

LATENCY_SQL = f"""
SELECT model, model_version, arm,
    count() AS requests,
    quantileExact(0.95)(latency_ms) AS p95_latency_ms
FROM inference_log_v
WHERE {_IN_WINDOW} AND error = ''
GROUP BY model, model_version, arm
HAVING requests >= {{min_requests:UInt64}} AND p95_latency_ms > {{p95_ms:Float64}}
ORDER BY model, model_version, arm
"""

ERROR_RATE_SQL = f"""
SELECT model, model_version, arm, requests, failed, failed / requests AS error_rate, errors
FROM
(
    SELECT model, model_version, arm,
        if(model_version = '', sum(count()) OVER (PARTITION BY model), count()) AS requests,
        countIf(error != '') AS failed,
        arrayStringConcat(arraySort(groupUniqArrayIf(error, error != '')), ',') AS errors
    FROM inference_log_v
    WHERE {_IN_WINDOW}
    GROUP BY model, model_version, arm
)
WHERE requests >= {{min_requests:UInt64}} AND error_rate > {{max_error_rate:Float64}}
ORDER BY model, model_version, arm
"""

# Feedback is folded per request (a request rated twice counts once), dated by when it was given
# (last window: is_current 0; this window: 1) and attributed to the model that answered, looked up
# among the answers of the day before.
_RATED = """
SELECT i.model AS model, f.score AS score, f.is_current AS is_current
FROM
(
    SELECT request_id, avg(score) AS score,
        toUInt8(min(occurred_at) >= {window_start:DateTime64(3, 'UTC')}) AS is_current
    FROM feedback_v
    WHERE occurred_at >= {previous_start:DateTime64(3, 'UTC')}
        AND occurred_at < {window_end:DateTime64(3, 'UTC')}
    GROUP BY request_id
) AS f
INNER JOIN
(
    SELECT request_id, any(model) AS model FROM inference_log_v
    WHERE occurred_at >= {previous_start:DateTime64(3, 'UTC')} - INTERVAL 1 DAY
        AND occurred_at < {window_end:DateTime64(3, 'UTC')}
    GROUP BY request_id
) AS i ON f.request_id = i.request_id
"""

# mannWhitneyUTest refuses a group with an empty sample: it runs only on models with enough ratings
# in both windows; a model rated in this window only can still fall under the floor.
FEEDBACK_SQL = f"""
WITH rated AS ({_RATED})
SELECT s.model AS model, s.previous_count, s.current_count, s.previous_mean, s.current_mean,
    s.previous_mean - s.current_mean AS drop,
    if(t.tested = 1, t.p_value, 1.0) AS p_value
FROM
(
    SELECT model,
        countIf(is_current = 0) AS previous_count,
        countIf(is_current = 1) AS current_count,
        avgOrNullIf(score, is_current = 0) AS previous_mean,
        avgOrNullIf(score, is_current = 1) AS current_mean
    FROM rated GROUP BY model
) AS s
LEFT JOIN
(
    SELECT model, tupleElement(mannWhitneyUTest('greater')(score, is_current), 'p_value') AS p_value,
        toUInt8(1) AS tested
    FROM rated
    WHERE model IN (
        SELECT model FROM rated GROUP BY model
        HAVING countIf(is_current = 0) >= {{min_count:UInt64}}
            AND countIf(is_current = 1) >= {{min_count:UInt64}}
    )
    GROUP BY model
) AS t ON s.model = t.model
WHERE s.current_count >= {{min_count:UInt64}}
    AND (
        (t.tested = 1 AND drop >= {{min_drop:Float64}} AND p_value < {{alpha:Float64}})
        OR ({{use_floor:UInt8}} = 1 AND s.current_mean < {{floor:Float64}})
    )
ORDER BY model
"""

FLOOD_SQL = f"""
SELECT caller, caller_kind, max(n) AS peak_requests_per_minute, sum(n) AS requests,
    toUnixTimestamp(argMax(minute, n)) AS peak_minute
FROM
(
    SELECT {_CALLER} AS caller, {_CALLER_KIND} AS caller_kind, toStartOfMinute(occurred_at) AS minute,
        count() AS n
    FROM inference_log_v
    WHERE {_IN_WINDOW}
    GROUP BY caller, caller_kind, minute
)
GROUP BY caller, caller_kind
HAVING peak_requests_per_minute > {{max_per_minute:UInt64}}
ORDER BY caller, caller_kind
"""


def _sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# The patterns are in the statement itself (not a parameter): the evidence shows what was matched.
INJECTION_SQL = f"""
SELECT caller, caller_kind, count() AS requests,
    countIf(match(prompt, {_sql_string(injection_regex())})) AS matching_prompts,
    matching_prompts / requests AS matching_share
FROM
(
    SELECT {_CALLER} AS caller, {_CALLER_KIND} AS caller_kind, prompt
    FROM inference_log_v
    WHERE {_IN_WINDOW}
)
GROUP BY caller, caller_kind
HAVING matching_prompts >= {{min_prompts:UInt64}} AND matching_share >= {{min_share:Float64}}
ORDER BY caller, caller_kind
"""

PII_SQL = f"""
SELECT caller, caller_kind, count() AS requests,
    sum(countMatches(prompt, {_sql_string(PII_PLACEHOLDER_REGEX)})) AS pii_placeholders,
    countIf(match(prompt, {_sql_string(PII_PLACEHOLDER_REGEX)})) AS prompts_with_pii
FROM
(
    SELECT {_CALLER} AS caller, {_CALLER_KIND} AS caller_kind, prompt
    FROM inference_log_v
    WHERE {_IN_WINDOW}
)
GROUP BY caller, caller_kind
HAVING pii_placeholders > {{max_placeholders:UInt64}}
ORDER BY caller, caller_kind
"""

LAST_ALERTS_SQL = """
SELECT rule, model, subject, max(occurred_at) AS last_raised
FROM alerts_v
WHERE occurred_at >= {since:DateTime64(3, 'UTC')} AND has({rules:Array(String)}, rule)
GROUP BY rule, model, subject
"""


# --- wording ---------------------------------------------------------------------------------------


def _ts(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _span(seconds: float) -> str:
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)} h"
    if seconds % 60 == 0:
        return f"{int(seconds // 60)} min"
    return f"{seconds:g} s"


def _version_subject(model: str, version: str, arm: str) -> str:
    name = version or f"{model} (before a version was chosen)"
    return f"{name} ({arm})" if arm and version else name


def _caller_subject(caller: str, kind: str) -> str:
    return f"{kind}:{caller}"


@dataclass(frozen=True)
class _Rule:
    name: str
    sql: str
    severity: str
    parameters: Callable[[AlertSettings], dict[str, str]]
    # The row as (model, subject, message, labels); its numbers become the alert's values.
    describe: Callable[[Mapping[str, Any], AlertSettings, str], tuple[str, str, str, dict[str, str]]]


def _latency(row: Mapping[str, Any], s: AlertSettings, span: str) -> tuple[str, str, str, dict[str, str]]:
    subject = _version_subject(row["model"], row["model_version"], row["arm"])
    message = (
        f"p95 latency of {subject} was {row['p95_latency_ms']:,.0f} ms over {span}, above the SLO of "
        f"{s.latency_p95_ms:,.0f} ms, {row['requests']:,} requests"
    )
    return row["model"], subject, message, {"model_version": row["model_version"], "arm": row["arm"]}


def _error_rate(row: Mapping[str, Any], s: AlertSettings, span: str) -> tuple[str, str, str, dict[str, str]]:
    subject = _version_subject(row["model"], row["model_version"], row["arm"])
    message = (
        f"{row['error_rate']:.1%} of the requests of {subject} failed over {span} ({row['failed']:,} of "
        f"{row['requests']:,}: {row['errors']}), above the SLO of {s.error_rate_max:.1%}"
    )
    labels = {"model_version": row["model_version"], "arm": row["arm"], "errors": row["errors"]}
    return row["model"], subject, message, labels


def _feedback(row: Mapping[str, Any], s: AlertSettings, span: str) -> tuple[str, str, str, dict[str, str]]:
    model = row["model"]
    reasons = []
    # previous_mean and drop are NULL (None) for a model not rated in the window before.
    if row["previous_count"] >= s.feedback_min_count and (row["drop"] or 0) >= s.feedback_min_drop:
        if row["p_value"] < s.feedback_alpha:
            reasons.append(
                f"down {row['drop']:.2f} from {row['previous_mean']:.2f} over the {span} before "
                f"({row['previous_count']:,} rated; Mann-Whitney p = {row['p_value']:.2g})"
            )
    if s.feedback_floor is not None and row["current_mean"] < s.feedback_floor:
        reasons.append(f"under the floor of {s.feedback_floor:.2f}")
    message = (
        f"mean feedback score of {model} was {row['current_mean']:.2f} over {span} "
        f"({row['current_count']:,} rated requests), " + " and ".join(reasons)
    )
    return model, model, message, {}


def _flood(row: Mapping[str, Any], s: AlertSettings, span: str) -> tuple[str, str, str, dict[str, str]]:
    subject = _caller_subject(row["caller"], row["caller_kind"])
    peak = dt.datetime.fromtimestamp(row["peak_minute"], dt.UTC).strftime("%H:%M")
    message = (
        f"{subject} sent {row['peak_requests_per_minute']:,} requests in the minute from {peak} UTC, above "
        f"the limit of {s.flood_requests_per_minute:,} a minute ({row['requests']:,} over {span})"
    )
    return "", subject, message, {"caller": row["caller"], "caller_kind": row["caller_kind"]}


def _injection(row: Mapping[str, Any], s: AlertSettings, span: str) -> tuple[str, str, str, dict[str, str]]:
    subject = _caller_subject(row["caller"], row["caller_kind"])
    message = (
        f"{row['matching_prompts']:,} of the {row['requests']:,} prompts of {subject} over {span} "
        f"({row['matching_share']:.0%}) match prompt-injection patterns (at least "
        f"{s.injection_min_prompts:,} and {s.injection_min_share:.0%} raise this)"
    )
    return "", subject, message, {"caller": row["caller"], "caller_kind": row["caller_kind"]}


def _pii(row: Mapping[str, Any], s: AlertSettings, span: str) -> tuple[str, str, str, dict[str, str]]:
    subject = _caller_subject(row["caller"], row["caller_kind"])
    message = (
        f"the prompts of {subject} carried {row['pii_placeholders']:,} redacted pieces of personal data over "
        f"{span} (in {row['prompts_with_pii']:,} of {row['requests']:,} prompts), above the limit of "
        f"{s.pii_max_placeholders:,}"
    )
    return "", subject, message, {"caller": row["caller"], "caller_kind": row["caller_kind"]}


_RULES: tuple[_Rule, ...] = (
    _Rule(
        LATENCY_SLO,
        LATENCY_SQL,
        "warning",
        lambda s: {"min_requests": str(s.latency_min_requests), "p95_ms": repr(s.latency_p95_ms)},
        _latency,
    ),
    _Rule(
        ERROR_RATE_SLO,
        ERROR_RATE_SQL,
        "critical",
        lambda s: {"min_requests": str(s.error_rate_min_requests), "max_error_rate": repr(s.error_rate_max)},
        _error_rate,
    ),
    _Rule(
        FEEDBACK_DROP,
        FEEDBACK_SQL,
        "warning",
        lambda s: {
            "min_count": str(s.feedback_min_count),
            "min_drop": repr(s.feedback_min_drop),
            "alpha": repr(s.feedback_alpha),
            "use_floor": "1" if s.feedback_floor is not None else "0",
            "floor": repr(s.feedback_floor if s.feedback_floor is not None else 0.0),
        },
        _feedback,
    ),
    _Rule(
        CALLER_FLOOD,
        FLOOD_SQL,
        "warning",
        lambda s: {"max_per_minute": str(s.flood_requests_per_minute)},
        _flood,
    ),
    _Rule(
        PROMPT_INJECTION,
        INJECTION_SQL,
        "warning",
        lambda s: {"min_prompts": str(s.injection_min_prompts), "min_share": repr(s.injection_min_share)},
        _injection,
    ),
    _Rule(PII_PROBING, PII_SQL, "warning", lambda s: {"max_placeholders": str(s.pii_max_placeholders)}, _pii),
)


def _values(row: Mapping[str, Any]) -> dict[str, float]:
    """The row's figures (numbers only; booleans and text are labels)."""
    return {k: float(v) for k, v in row.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def evaluate(
    client: Client, settings: AlertSettings, now: dt.datetime, rules: Sequence[str] = RULES
) -> list[AlertRaised]:
    """Run each of ``rules`` over the window ending at ``now``; the alerts it finds (no cooldown)."""
    end = now.astimezone(dt.UTC)
    start = end - dt.timedelta(seconds=settings.window_seconds)
    window = {
        "window_start": _ts(start),
        "window_end": _ts(end),
        "previous_start": _ts(start - dt.timedelta(seconds=settings.window_seconds)),
    }
    span = _span(settings.window_seconds)
    alerts: list[AlertRaised] = []
    for rule in _RULES:
        if rule.name not in rules:
            continue
        parameters = {k: v for k, v in window.items() if "{" + k + ":" in rule.sql}
        parameters |= rule.parameters(settings)
        result = client.query(rule.sql, parameters=parameters)
        for values in result.result_rows:
            row = dict(zip(result.column_names, values, strict=True))
            model, subject, message, labels = rule.describe(row, settings, span)
            alerts.append(
                AlertRaised(
                    rule=rule.name,
                    severity=rule.severity,  # type: ignore[arg-type]
                    message=message,
                    labels=labels,
                    model=model,
                    subject=subject,
                    query=rule.sql.strip(),
                    parameters=parameters,
                    window_start=start,
                    window_end=end,
                    values=_values(row)
                    | {f"threshold_{k}": float(v) for k, v in rule.parameters(settings).items()},
                    occurred_at=end,
                )
            )
    return alerts


def last_raised(
    client: Client, since: dt.datetime, rules: Sequence[str] = RULES
) -> dict[tuple[str, str, str], dt.datetime]:
    """When each (rule, model, subject) last raised an alert since ``since``, from ``alerts_v``."""
    result = client.query(LAST_ALERTS_SQL, parameters={"since": _ts(since), "rules": list(rules)})
    return {
        (rule, model, subject): when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when
        for rule, model, subject, when in result.result_rows
    }


class AlertJob:
    """Evaluates the enabled rules, skips what is cooling down, and publishes the rest."""

    def __init__(self, settings: AlertSettings, store: AnalyticsStore, bus: EventBus) -> None:
        self._settings = settings
        self._store = store
        self._bus = bus
        # Alerts published but perhaps not yet stored (monitoring consumes its own topic in batches).
        self._recent: dict[tuple[str, str, str], dt.datetime] = {}

    async def run_once(self, now: dt.datetime | None = None) -> list[AlertRaised]:
        """Evaluate every enabled rule over the window ending at ``now``; returns the alerts published."""
        s = self._settings
        rules = [rule for rule in RULES if s.rule_enabled(rule)]
        if not rules:
            return []
        at = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
        cooldown = dt.timedelta(seconds=s.cooldown_seconds)

        def read(client: Client) -> tuple[list[AlertRaised], dict[tuple[str, str, str], dt.datetime]]:
            found = evaluate(client, s, at, rules)
            last = last_raised(client, at - cooldown, rules) if found and s.cooldown_seconds else {}
            return found, last

        found, last = await self._store.read(read)
        for key, when in self._recent.items():
            if key not in last or when > last[key]:
                last[key] = when
        raised: list[AlertRaised] = []
        for alert in found:
            key = (alert.rule, alert.model, alert.subject)
            previous = last.get(key)
            if previous is not None and at - previous < cooldown:
                log.debug(
                    "alert %s for %s is cooling down (last raised %s)", alert.rule, alert.subject, previous
                )
                continue
            await self._bus.publish(alert)
            self._recent[key] = at
            raised.append(alert)
        self._recent = {k: v for k, v in self._recent.items() if at - v < cooldown}
        return raised
