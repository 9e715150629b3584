"""`llmops report`'s page, rendered from rows built here: sections, escaping, charts, empty sections."""

from __future__ import annotations

import datetime as dt
import re
from html.parser import HTMLParser

import pytest

from llmops.cli.charts import Point, Series, line_chart, nice_ticks
from llmops.cli.report import NO_DATA, render
from llmops.cli.report_data import ReportData, fetch, parse_since

T0 = dt.datetime(2026, 12, 1, 8, tzinfo=dt.UTC)
HEADINGS = [
    "Drift over time",
    "Quality and latency per version",
    "Canary arms side by side",
    "Recent alerts",
    "The loop's steps",
]


def hours(n: int) -> dt.datetime:
    return T0 + dt.timedelta(hours=n)


def full_data() -> ReportData:
    drift = [
        {
            "window_end": hours(h),
            "model": "bot",
            "model_version": version,
            "arm": arm,
            "collection": "",
            "mode": "",
            "signal": "prompt_tokens",
            "statistic": "psi",
            "value": 0.05 + 0.1 * h,
            "threshold": 0.2,
            "drifted": 0.05 + 0.1 * h > 0.2,
            "p_value": None,
            "alpha": None,
            "current_count": 50,
        }
        for h in range(4)
        for version, arm in (("bot/1", "champion"), ("bot/2", "challenger"))
    ]
    quality = [
        {
            "hour": hours(h),
            "model_version": version,
            "arm": arm,
            "requests": 10.0 + h,
            "rated_requests": 4.0,
            "feedback_count": 4.0,
            "mean_score": 0.5 + 0.1 * i,
            "thumbs_up_share": 0.5,
            "p50_latency_ms": 100.0 + 10 * i,
            "p95_latency_ms": 200.0 + 10 * i,
        }
        for h in range(5)
        for i, (version, arm) in enumerate((("bot/1", "champion"), ("bot/2", "challenger")))
    ]
    versions = [
        {
            "model_version": "bot/1",
            "arm": "champion",
            "requests": 60.0,
            "rated_requests": 20.0,
            "mean_score": 0.55,
            "thumbs_up_share": 0.5,
            "p50_latency_ms": 100.0,
            "p95_latency_ms": 210.0,
        },
        {
            "model_version": "bot/2",
            "arm": "challenger",
            "requests": 12.0,
            "failed": 2.0,
            "rated_requests": 5.0,
            "mean_score": 0.8,
            "thumbs_up_share": 0.75,
            "p50_latency_ms": 110.0,
            "p95_latency_ms": 230.0,
        },
    ]
    canaries = [
        {
            "model": "bot",
            "alias": "champion",
            "challenger_alias": "challenger",
            "share": 0.2,
            "champion_version": 1.0,
            "challenger_version": 2.0,
            "active": True,
            "outcome": "",
            "actor": "alice",
            "reason": "new adapter",
            "changed_at": hours(0),
        }
    ]
    alerts = [
        {
            "occurred_at": hours(3),
            "severity": "critical",
            "rule": "feedback_drop",
            "model": "bot",
            "subject": "bot/2",
            "message": "<script>alert('x')</script> mean fell & stayed",
            "values": {"observed": 0.31, "threshold": 0.5},
            "window_start": hours(2),
            "window_end": hours(3),
        }
    ]
    loop_steps = [
        {
            "occurred_at": hours(2),
            "model": "bot",
            "loop_id": "loop-1",
            "step": "canary_started",
            "reason": "challenger <b>won</b> 62% of judged pairs",
            "next_step": "canary_stepped",
            "trigger": "drift",
            "challenger_version": 2.0,
            "canary_share": 0.2,
        }
    ]
    judge = [
        {
            "model_version": "bot/1",
            "arm": "champion",
            "judge": "base",
            "judged": 10.0,
            "judge_rated": 8.0,
            "judge_score": 0.5,
        },
        {
            "model_version": "bot/2",
            "arm": "challenger",
            "judge": "base",
            "judged": 6.0,
            "judge_rated": 6.0,
            "judge_score": 0.75,
        },
    ]
    return ReportData(
        since=T0, until=hours(5), model="bot", drift=drift, quality=quality, versions=versions,
        judge=judge, canaries=canaries, alerts=alerts, loop_steps=loop_steps,
    )  # fmt: skip


class Outline(HTMLParser):
    """Headings, section ids, the text of <script> elements and every SVG element's attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.headings: list[str] = []
        self.sections: list[str] = []
        self.scripts = 0
        self.svgs: list[dict] = []
        self._in: str | None = None
        self._svg: dict | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = dict(attrs)
        if tag == "h2":
            self._in = "h2"
            self.headings.append("")
        if tag == "section":
            self.sections.append(attributes.get("id", ""))
        if tag == "script":
            self.scripts += 1
        if tag == "svg" and "chart" in (attributes.get("class") or ""):
            self._svg = {"attrs": attributes, "polylines": [], "points": 0, "marked": 0, "threshold": 0}
        if self._svg is not None:
            if tag == "polyline":
                self._svg["polylines"].append(attributes)
            if tag == "circle":
                self._svg["points"] += 1
                self._svg["marked"] += "marked" in attributes.get("class", "")
            if tag == "line" and attributes.get("class") == "threshold":
                self._svg["threshold"] += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "h2":
            self._in = None
        if tag == "svg" and self._svg is not None:
            self.svgs.append(self._svg)
            self._svg = None

    def handle_data(self, data: str) -> None:
        if self._in == "h2":
            self.headings[-1] += data


def outline(page: str) -> Outline:
    parser = Outline()
    parser.feed(page)
    return parser


def test_every_section_is_there_with_its_charts_and_tables() -> None:
    page = render(full_data())
    found = outline(page)
    assert found.headings == HEADINGS
    assert found.sections == ["drift", "quality", "canary", "alerts", "loop"]
    assert NO_DATA not in page
    # One drift chart (one signal, one statistic) and four quality charts.
    titles = [svg["attrs"]["aria-label"] for svg in found.svgs]
    assert titles == [
        "prompt_tokens · psi",
        "Mean feedback score per hour",
        "Thumbs-up share per hour",
        "Latency per hour: p50 (solid) and p95 (dashed)",
        "Requests per hour",
    ]
    assert "feedback_drop" in page and "canary_started" in page
    assert "champion: champion (version 1)" in page and "challenger: challenger (version 2)" in page
    assert "observed = 0.31" in page
    assert "<tr><td>bot/2</td><td>challenger</td><td>12</td><td>2</td><td>5</td>" in page
    assert "<script" not in page.lower().replace("&lt;script", "")  # no script at all: it needs none


def test_polylines_and_points_match_the_rows() -> None:
    data = full_data()
    drift_chart, score, thumbs, latency, requests = outline(render(data)).svgs
    # Drift: a line per version and arm, a circle per result, a ring per drifted result, one threshold.
    assert [p["data-series"] for p in drift_chart["polylines"]] == ["bot/1 · champion", "bot/2 · challenger"]
    assert [int(p["data-points"]) for p in drift_chart["polylines"]] == [4, 4]
    assert [len(p["points"].split()) for p in drift_chart["polylines"]] == [4, 4]
    assert drift_chart["points"] == len(data.drift) == 8
    assert drift_chart["marked"] == sum(r["drifted"] for r in data.drift) == 4
    assert drift_chart["threshold"] == 1
    for chart in (score, thumbs, requests):
        assert [len(p["points"].split()) for p in chart["polylines"]] == [5, 5]
        assert chart["points"] == 10 and chart["marked"] == 0 and chart["threshold"] == 0
    # Latency: p50 and p95 of each version.
    assert len(latency["polylines"]) == 4 and latency["points"] == 20


def _canary_row(page: str, label: str) -> list[str]:
    """The canary table's cells (champion, challenger) for ``label``, the bars left out."""
    row = re.search(rf"<tr><td>{re.escape(label)}</td>(.*?)</tr>", page)
    assert row, f"no canary row {label!r}"
    return [cell.split(" <svg")[0].strip() for cell in re.findall(r"<td>(.*?)</td>", row.group(1))]


def test_the_canary_shows_the_judge_next_to_the_users() -> None:
    page = render(full_data())
    assert _canary_row(page, "mean score") == ["0.55", "0.8"]
    assert _canary_row(page, "answers judged") == ["10", "6"]
    assert _canary_row(page, "rated by the judge") == ["8", "6"]
    assert _canary_row(page, "judge&#x27;s mean score") == ["0.5", "0.75"]
    assert "judge scores (0 to 1) from base" in page
    # A canary without a judge shows no judge rows (not empty ones).
    data = full_data()
    data.judge = []
    page = render(data)
    assert "answers judged" not in page and "judge scores" not in page
    assert _canary_row(page, "mean score") == ["0.55", "0.8"]


def test_values_are_escaped() -> None:
    data = full_data()
    data.model = "<i>bot</i>"
    page = render(data)
    found = outline(page)
    assert found.scripts == 0
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; mean fell &amp; stayed" in page
    assert "challenger &lt;b&gt;won&lt;/b&gt;" in page and "<b>won</b>" not in page
    assert "&lt;i&gt;bot&lt;/i&gt;" in page and "<i>bot</i>" not in page


def test_an_empty_window_says_so_in_every_section_and_draws_nothing() -> None:
    page = render(ReportData(since=T0, until=hours(5)))
    found = outline(page)
    assert found.headings == HEADINGS
    assert page.count(NO_DATA) == 5
    assert found.svgs == []


def test_a_canary_without_traffic_says_so() -> None:
    data = full_data()
    data.versions = []
    data.quality = []
    page = render(data)
    canary = page[page.index('id="canary"') : page.index('id="alerts"')]
    assert NO_DATA in canary and "bot@champion" in canary


def test_drift_drawn_from_drift_reports_says_so() -> None:
    data = full_data()
    data.drift_source = "drift_reports_v"
    page = render(data)
    assert "Drawn from drift_reports_v" in page


def test_fetch_falls_back_to_drift_reports_only_when_drift_results_is_empty() -> None:
    asked: list[tuple[str, dict]] = []

    def run_query(sql: str, params: dict[str, str]) -> list[dict]:
        asked.append((sql, params))
        if "FROM drift_reports_v" in sql:
            return [{"window_end": "2026-12-01 09:00:00+00:00", "value": 0.3, "threshold": 0.2}]
        return []

    data = fetch(run_query, since=T0, until=hours(5), model="bot")
    assert data.drift_source == "drift_reports_v"
    assert data.drift[0]["window_end"] == hours(1)
    assert asked[0][1] == {"since": "2026-12-01 08:00:00.000", "model": "bot"}
    assert "FROM drift_results_v" in asked[0][0]


def test_since_durations() -> None:
    assert parse_since("7d") == dt.timedelta(days=7)
    assert parse_since("12h") == dt.timedelta(hours=12)
    assert parse_since("30m") == dt.timedelta(minutes=30)
    assert parse_since("2w") == dt.timedelta(weeks=2)
    for bad in ("", "7", "d", "0d", "1y", "-1d"):
        with pytest.raises(ValueError, match="not a duration"):
            parse_since(bad)


def test_a_chart_of_one_point_and_round_ticks() -> None:
    svg = line_chart([Series("v", [Point(T0, 3.0)])], title="one")
    assert svg.count("<circle") == 1 and re.search(r'points="[\d.]+,[\d.]+"', svg)
    assert nice_ticks(0, 0.93) == [0, 0.25, 0.5, 0.75, 1.0]
    for low, high in ((0, 230), (0.05, 0.35), (120, 121), (-3, 7)):
        ticks = nice_ticks(low, high)
        assert ticks[0] <= low and ticks[-1] >= high and 3 <= len(ticks) <= 7
