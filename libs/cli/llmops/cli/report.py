"""``llmops report``'s page: monitoring's analytics as one self-contained HTML document (inline CSS
and SVG, no script). Pure: it renders the rows of a :class:`ReportData` and does no I/O."""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from html import escape

from llmops.cli.charts import Point, Series, bar, legend, line_chart
from llmops.cli.report_data import ReportData, Row

NO_DATA = "No data in this window."


def _e(value: object) -> str:
    """A value as HTML text: escaped, NULL as an en dash, floats to 4 significant digits."""
    if value is None:
        return "&ndash;"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return escape(str(value))
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.4g}"
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return escape(str(value), quote=True)


def _share(value: object) -> str:
    return "&ndash;" if value is None else f"{float(value):.0%}"  # type: ignore[arg-type]


def _version(value: object) -> str:
    return "&ndash;" if value is None else _e(value)


def _section(anchor: str, title: str, intro: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{escape(title)}</h2><p class="intro">{intro}</p>{body}</section>'


def _empty() -> str:
    return f'<p class="empty">{NO_DATA}</p>'


def _table(headers: Iterable[str], rows: Iterable[Iterable[str]], css: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _figure(title: str, svg: str, key: str, caption: str = "") -> str:
    note = f'<p class="caption">{caption}</p>' if caption else ""
    return f'<figure class="chart-figure"><figcaption>{escape(title)}</figcaption>{svg}{key}{note}</figure>'


def _group_name(row: Row) -> str:
    parts = [str(row.get("model_version") or row.get("model") or "?")]
    if row.get("arm"):
        parts.append(str(row["arm"]))
    return " · ".join(parts)


def _drift_section(data: ReportData) -> str:
    intro = (
        "Each drift statistic over the end of its window, one line per model version and arm; the dashed "
        "grey line is the threshold and red rings mark the runs that drifted."
    )
    if data.drift_source == "drift_reports_v":
        intro += (
            " <strong>Drawn from drift_reports_v</strong>: no scheduled drift results (drift_results_v) in "
            "this window, so only the runs that drifted are shown."
        )
    if not data.drift:
        return _section("drift", "Drift over time", intro, _empty())
    charts: dict[tuple[str, str, str, str], dict[str, list[Row]]] = defaultdict(lambda: defaultdict(list))
    for row in data.drift:
        key = (
            str(row["signal"]),
            str(row["statistic"]),
            str(row.get("collection") or ""),
            str(row.get("mode") or ""),
        )
        group = f"{row['model']}: {_group_name(row)}" if not data.model else _group_name(row)
        charts[key][group].append(row)
    figures = []
    for (signal, statistic, collection, mode), groups in sorted(charts.items()):
        series = [
            Series(
                name,
                [
                    Point(
                        r["window_end"],
                        float(r["value"]),
                        marked=bool(r.get("drifted")),
                        note=f"(threshold {_e(r['threshold'])})" if r.get("drifted") else "",
                    )
                    for r in rows
                ],
            )
            for name, rows in sorted(groups.items())
        ]
        thresholds = sorted({float(r["threshold"]) for rows in groups.values() for r in rows})
        threshold = thresholds[0] if len(thresholds) == 1 else None
        every = [r for rows in groups.values() for r in rows]
        drifted = sum(1 for r in every if r.get("drifted"))
        title = f"{signal} · {statistic}" + (f" · {collection}/{mode}" if collection else "")
        caption = f"{len(every)} result(s), {drifted} drifted"
        if threshold is None:
            caption += "; thresholds differ between points: " + ", ".join(_e(t) for t in thresholds)
        svg = line_chart(series, title=title, unit=statistic, threshold=threshold)
        figures.append(
            _figure(title, svg, legend(series, threshold=threshold is not None, marked="drifted"), caption)
        )
    return _section("drift", "Drift over time", intro, f'<div class="grid">{"".join(figures)}</div>')


def _quality_section(data: ReportData) -> str:
    intro = (
        "Per hour and per model version and arm, from quality_hourly: mean feedback score and thumbs-up "
        "share (hours with no feedback have no point), latency and traffic. The table covers the whole "
        "window, from every answer (exact quantiles); failed: requests that failed on the server side."
    )
    if not data.quality and not data.versions:
        return _section("quality", "Quality and latency per version", intro, _empty())
    groups: dict[str, list[Row]] = defaultdict(list)
    for row in data.quality:
        groups[_group_name(row)].append(row)
    names = sorted(groups)

    def series(column: str, *, dashed: bool = False, suffix: str = "") -> list[Series]:
        return [
            Series(
                name + suffix,
                [Point(r["hour"], float(r[column])) for r in groups[name] if r.get(column) is not None],
                dashed=dashed,
                colour_index=i,
            )
            for i, name in enumerate(names)
        ]

    figures = []
    for title, lines, unit in (
        ("Mean feedback score per hour", series("mean_score"), "score"),
        ("Thumbs-up share per hour", series("thumbs_up_share"), "share"),
        (
            "Latency per hour: p50 (solid) and p95 (dashed)",
            series("p50_latency_ms", suffix=" p50") + series("p95_latency_ms", dashed=True, suffix=" p95"),
            "ms",
        ),
        ("Requests per hour", series("requests"), "requests"),
    ):
        if any(s.points for s in lines):
            figures.append(_figure(title, line_chart(lines, title=title, unit=unit), legend(lines)))
        else:
            figures.append(
                f'<figure class="chart-figure"><figcaption>{escape(title)}</figcaption>{_empty()}</figure>'
            )
    table = _table(
        [
            "version",
            "arm",
            "answers",
            "failed",
            "rated",
            "mean score",
            "thumbs-up share",
            "p50 latency ms",
            "p95 latency ms",
        ],
        (
            [
                _e(r.get("model_version")),
                _e(r.get("arm") or ""),
                _e(r.get("requests")),
                _e(r.get("failed") or 0.0),
                _e(r.get("rated_requests")),
                _e(r.get("mean_score")),
                _share(r.get("thumbs_up_share")),
                _e(r.get("p50_latency_ms")),
                _e(r.get("p95_latency_ms")),
            ]
            for r in data.versions
        ),
        "numbers",
    )
    return _section(
        "quality",
        "Quality and latency per version",
        intro,
        f'{table}<div class="grid">{"".join(figures)}</div>',
    )


def _canary_section(data: ReportData) -> str:
    intro = (
        "Each alias's latest canary (model_canaries_current) with its two arms side by side over this "
        "window: the champion arm answers as the alias, the challenger as its own alias."
    )
    if not data.canaries:
        return _section("canary", "Canary arms side by side", intro, _empty())
    blocks = []
    for canary in data.canaries:
        model, alias, challenger = canary["model"], canary["alias"], canary["challenger_alias"]
        arms = [
            ("champion", alias, canary.get("champion_version")),
            ("challenger", challenger, canary.get("challenger_version")),
        ]
        found = {
            role: _arm_totals(data.versions, str(model), str(arm))
            | _judge_totals(data.judge, str(model), str(arm))
            for role, arm, _ in arms
        }
        state = "active" if canary.get("active") else f"ended ({canary.get('outcome') or 'no outcome'})"
        head = (
            f"<h3>{_e(model)}@{_e(alias)}: {_share(canary.get('share'))} of traffic to {_e(challenger)}, "
            f"{state}</h3>"
            f'<p class="caption">changed {_e(canary.get("changed_at"))} by {_e(canary.get("actor") or "-")}'
            f"{': ' + _e(canary.get('reason')) if canary.get('reason') else ''}</p>"
        )
        if not any(found[role]["requests"] for role, _, _ in arms):
            blocks.append(head + _empty())
            continue
        metrics = (
            ("requests", "requests", _e),
            ("rated requests", "rated_requests", _e),
            ("mean score", "mean_score", _e),
            ("thumbs-up share", "thumbs_up_share", _share),
            ("p50 latency ms (worst version)", "p50_latency_ms", _e),
            ("p95 latency ms (worst version)", "p95_latency_ms", _e),
        )
        judges = sorted({j for role, _, _ in arms for j in found[role]["judges"]})
        if judges:
            metrics += (
                ("answers judged", "judged", _e),
                ("rated by the judge", "judge_rated", _e),
                ("judge's mean score", "judge_score", _e),
            )
        rows = []
        for label, column, show in metrics:
            values = [found[role][column] for role, _, _ in arms]
            high = max((float(v) for v in values if v is not None), default=0.0)
            rows.append(
                [escape(label)]
                + [
                    f"{show(v)} {bar(None if v is None else float(v), high, colour_index=i)}"
                    for i, v in enumerate(values)
                ]
            )
        headers = ["", *(f"{role}: {arm} (version {_version(v)})" for role, arm, v in arms)]
        judged_by = (
            f'<p class="caption">judge scores (0 to 1) from {_e(", ".join(judges))}, judge_scores_v</p>'
            if judges
            else ""
        )
        blocks.append(head + _table(headers, rows, "side-by-side") + judged_by)
    return _section("canary", "Canary arms side by side", intro, "".join(blocks))


def _arm_totals(versions: list[Row], model: str, arm: str) -> Row:
    """One arm's figures summed over its versions (weighted means; the worst version's quantiles)."""
    rows = [
        r
        for r in versions
        if r.get("arm") == arm and str(r.get("model_version") or "").startswith(f"{model}/")
    ]
    requests = sum(float(r.get("requests") or 0) for r in rows)
    rated = sum(float(r.get("rated_requests") or 0) for r in rows)
    scored = [
        (float(r["mean_score"]), float(r.get("rated_requests") or 0))
        for r in rows
        if r.get("mean_score") is not None
    ]
    thumbs = [float(r["thumbs_up_share"]) for r in rows if r.get("thumbs_up_share") is not None]
    return {
        "requests": requests,
        "rated_requests": rated,
        "mean_score": sum(s * n for s, n in scored) / sum(n for _, n in scored) if scored and rated else None,
        "thumbs_up_share": sum(thumbs) / len(thumbs) if thumbs else None,
        "p50_latency_ms": max(
            (float(r["p50_latency_ms"]) for r in rows if r.get("p50_latency_ms") is not None), default=None
        ),
        "p95_latency_ms": max(
            (float(r["p95_latency_ms"]) for r in rows if r.get("p95_latency_ms") is not None), default=None
        ),
    }


def _judge_totals(judge: list[Row], model: str, arm: str) -> Row:
    """What the canary's judge said of one arm: answers judged, rated, and the mean of the ratings."""
    rows = [
        r for r in judge if r.get("arm") == arm and str(r.get("model_version") or "").startswith(f"{model}/")
    ]
    rated = sum(float(r.get("judge_rated") or 0) for r in rows)
    total = sum(
        float(r["judge_score"]) * float(r.get("judge_rated") or 0)
        for r in rows
        if r.get("judge_score") is not None
    )
    return {
        "judges": {str(r.get("judge")) for r in rows},
        "judged": sum(float(r.get("judged") or 0) for r in rows) if rows else None,
        "judge_rated": rated if rows else None,
        "judge_score": total / rated if rated else None,
    }


def _evidence(values: object) -> str:
    if not isinstance(values, dict) or not values:
        return ""
    return "<br>".join(
        f"{_e(k)} = {_e(v if not isinstance(v, int) else float(v))}" for k, v in sorted(values.items())
    )


def _alerts_section(data: ReportData) -> str:
    intro = "Alerts raised in this window, newest first, with the figures each rule saw."
    if not data.alerts:
        return _section("alerts", "Recent alerts", intro, _empty())
    counts = Counter(str(r.get("severity")) for r in data.alerts)
    summary = " ".join(
        f'<span class="badge {escape(s)}">{_e(counts[s])} {escape(s)}</span>'
        for s in ("critical", "warning", "info")
        if counts[s]
    )
    table = _table(
        ["time", "severity", "rule", "model", "subject", "message", "evidence", "window"],
        (
            [
                _e(r.get("occurred_at")),
                f'<span class="badge {_e(r.get("severity"))}">{_e(r.get("severity"))}</span>',
                _e(r.get("rule")),
                _e(r.get("model") or ""),
                _e(r.get("subject") or ""),
                _e(r.get("message")),
                _evidence(r.get("values")),
                f"{_e(r.get('window_start'))} &rarr; {_e(r.get('window_end'))}"
                if r.get("window_end")
                else "",
            ]
            for r in data.alerts
        ),
        "alerts",
    )
    return _section("alerts", "Recent alerts", intro, f"<p>{summary}</p>" + table)


def _loop_section(data: ReportData) -> str:
    intro = "Steps of each model's feedback loop in this window, newest first, and why each was taken."
    if not data.loop_steps:
        return _section("loop", "The loop's steps", intro, _empty())
    table = _table(
        ["time", "model", "loop", "step", "reason", "next"],
        (
            [
                _e(r.get("occurred_at")),
                _e(r.get("model")),
                _e(r.get("loop_id")),
                f'<span class="step">{_e(r.get("step"))}</span>',
                _e(r.get("reason")),
                _e(r.get("next_step") or ""),
            ]
            for r in data.loop_steps
        ),
        "loop",
    )
    return _section("loop", "The loop's steps", intro, table)


def _summary(data: ReportData) -> str:
    requests = sum(float(r.get("requests") or 0) for r in data.versions)
    drifted = sum(1 for r in data.drift if r.get("drifted"))
    critical = sum(1 for r in data.alerts if r.get("severity") == "critical")
    cards = (
        ("answers", _e(requests)),
        ("drifted results", _e(drifted)),
        ("alerts", f"{len(data.alerts)}" + (f" ({critical} critical)" if critical else "")),
        ("active canaries", _e(sum(1 for c in data.canaries if c.get("active")))),
        ("loop steps", _e(len(data.loop_steps))),
    )
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card"><div class="figure">{value}</div><div class="label">{label}</div></div>'
            for label, value in cards
        )
        + "</div>"
    )


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2330;
background:#f5f6f8;margin:0}
header{background:#1d2330;color:#fff;padding:18px 32px}header h1{margin:0 0 4px;font-size:22px}
header p{margin:0;color:#c9ced8}main{padding:8px 32px 40px;max-width:1200px}
nav a{color:#c9ced8;margin-right:14px;text-decoration:none}nav{margin-top:8px}
section{background:#fff;border-radius:8px;padding:16px 22px;margin:18px 0;box-shadow:0 1px 2px #0001}
h2{margin:0 0 4px;font-size:18px}h3{font-size:15px;margin:14px 0 2px}
.intro,.caption{color:#5b6474;margin:2px 0 10px}.empty{font-style:italic;color:#5b6474;padding:12px 0}
figure{margin:12px 0 18px}figcaption{font-weight:600;margin-bottom:4px}
.chart text{font-size:11px;fill:#5b6474}.legend{display:flex;flex-wrap:wrap;gap:4px 16px;font-size:12px}
.swatch{display:inline-block;width:14px;height:4px;margin-right:6px;vertical-align:middle}
.threshold-key{border-top:2px dashed #555;height:0}
.marked-key{width:8px;height:8px;border:3px solid #d62728;border-radius:50%}
table{border-collapse:collapse;width:100%;margin:8px 0;font-size:13px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e6e8ec;vertical-align:top}
th{background:#f0f2f5;font-weight:600}table.numbers td:nth-child(n+3){text-align:right}
.badge{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;background:#e6e8ec}
.badge.critical{background:#fbd5d5;color:#8a1c1c}.badge.warning{background:#fde9c8;color:#7a4a00}
.badge.info{background:#dbe8fb;color:#1c3f8a}.step{font-family:ui-monospace,monospace}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:18px 0 0}
.card{background:#fff;border-radius:8px;padding:10px 18px;box-shadow:0 1px 2px #0001;min-width:120px}
.card .figure{font-size:22px;font-weight:600}.card .label{color:#5b6474;font-size:12px}
svg.bar{vertical-align:middle;margin-left:6px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(480px,1fr));gap:0 28px}
svg.chart{width:100%;height:auto;max-width:760px}
"""


def render(data: ReportData) -> str:
    """The whole page as one HTML document; every value from the rows is escaped."""
    scope = f"model {_e(data.model)}" if data.model else "all models"
    window = f"{data.since:%Y-%m-%d %H:%M} to {data.until:%Y-%m-%d %H:%M} UTC"
    sections = (
        _drift_section(data),
        _quality_section(data),
        _canary_section(data),
        _alerts_section(data),
        _loop_section(data),
    )
    nav = "".join(
        f'<a href="#{a}">{escape(t)}</a>'
        for a, t in (
            ("drift", "Drift"),
            ("quality", "Quality and latency"),
            ("canary", "Canary"),
            ("alerts", "Alerts"),
            ("loop", "Loop"),
        )
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>LLMOps report: {scope}</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<header><h1>LLMOps report: {scope}</h1><p>{window}; generated from monitoring's analytics.</p>"
        f"<nav>{nav}</nav></header><main>{_summary(data)}{''.join(sections)}</main></body></html>\n"
    )
