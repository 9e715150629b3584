"""`llmops report` against a running monitoring service, opened in headless Chromium: every section
renders, each chart is an SVG with its data points, and the pixels of each plot show data.

Drift over time is drawn from ``drift_results`` (written by monitoring's drift runs; here seeded into
the store before monitoring starts, as six hourly runs would leave it, with the job itself off) and,
for a model with no drift results, from the ``monitoring.drift_detected`` events in ``drift_reports``."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from llmops.cli.local import LocalPlatform
from llmops.contracts.events import (
    AlertRaised,
    AnswerJudged,
    DriftDetected,
    Event,
    FeedbackAccepted,
    InferenceLogged,
    LoopStepped,
    ModelCanaryChanged,
)
from llmops.testing.platform import eventually, publish_raw, query_monitoring, running_platform

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
HEADINGS = [
    "Drift over time",
    "Quality and latency per version",
    "Canary arms side by side",
    "Recent alerts",
    "The loop's steps",
]
NOW = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
HOURS = 6
ARMS = (("bot/1", "champion", 6, 120.0), ("bot/2", "challenger", 3, 180.0))
HOSTILE = "<script>document.title='pwned'</script> mean score fell"


def ago(hours: float) -> dt.datetime:
    return NOW - dt.timedelta(hours=hours)


def chromium() -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make setup` installs it (Debian package chromium)")
    return CHROMIUM


def events() -> list[Event]:
    """Six hours of two arms answering, rated, under a canary; an alert, loop steps, drift events."""
    rng = random.Random(7)
    out: list[Event] = []
    for hour in range(HOURS, 0, -1):
        for version, arm, per_hour, latency in ARMS:
            for i in range(per_hour):
                request_id = f"{version}-{hour}-{i}"
                at = ago(hour) + dt.timedelta(minutes=5 + 7 * i)
                out.append(
                    InferenceLogged(
                        occurred_at=at,
                        request_id=request_id,
                        model="bot",
                        model_version=version,
                        arm=arm,
                        prompt="How do I reset my password?",
                        completion="Open settings.",
                        prompt_tokens=9,
                        completion_tokens=4,
                        latency_ms=latency + rng.uniform(-40, 60) + 8 * hour,
                        time_to_first_token_ms=20.0,
                        producer="serving",
                        user=f"user-{i}",
                    )
                )
                if i % 3 == 0:
                    # The canary's judge rated every third answer (the champion's last one it would not).
                    abstained = arm == "champion" and hour == 1 and i == 3
                    out.append(
                        AnswerJudged(
                            occurred_at=at + dt.timedelta(minutes=2), request_id=request_id, model="bot",
                            model_version=version, arm=arm, judge="judge-model", prompt_version="v1",
                            score=None if abstained else (0.5 if arm == "champion" else 0.75),
                            rating=None if abstained else (3.0 if arm == "champion" else 4.0),
                            producer="monitoring",
                        )
                    )  # fmt: skip
                if i % 2 == 0:
                    up = rng.random() < (0.55 if arm == "champion" else 0.8)
                    out.append(
                        FeedbackAccepted(
                            occurred_at=at + dt.timedelta(minutes=1),
                            feedback_id=f"fb-{request_id}",
                            request_id=request_id,
                            score=1.0 if up else 0.0,
                            thumb="up" if up else "down",
                            producer="feedback",
                        )
                    )
    # One request the challenger failed on the server side: counted apart from the answers.
    out.append(
        InferenceLogged(
            occurred_at=ago(1) + dt.timedelta(minutes=50), request_id="bot/2-failed", model="bot",
            model_version="bot/2", arm="challenger", prompt="Hi", completion="", prompt_tokens=1,
            completion_tokens=0, latency_ms=5.0, time_to_first_token_ms=0.0, error="UNAVAILABLE",
            producer="serving",
        )
    )  # fmt: skip
    out.append(
        ModelCanaryChanged(
            occurred_at=ago(HOURS + 1),
            model="bot",
            alias="champion",
            challenger_alias="challenger",
            share=0.3,
            champion_version=1,
            challenger_version=2,
            actor="loop",
            reason="challenger registered",
        )
    )
    out.append(
        AlertRaised(
            occurred_at=ago(2),
            rule="feedback_drop",
            severity="warning",
            message=HOSTILE,
            model="bot",
            subject="bot/1",
            query="SELECT 1",
            values={"observed": 0.52, "threshold": 0.6, "requests": 18.0},
            window_start=ago(3),
            window_end=ago(2),
            producer="monitoring",
        )
    )
    for hours, step, reason in (
        (HOURS + 2, "triggered", "prompt_tokens PSI 0.31 over 0.2 on bot/1"),
        (HOURS + 1.5, "registered", "adapter registered as bot/2"),
        (HOURS + 1, "canary_started", "bot/2 gets 30% of bot@champion"),
    ):
        out.append(
            LoopStepped(
                occurred_at=ago(hours),
                loop_id="loop-1",
                model="bot",
                step=step,
                reason=reason,
                trigger="drift",
                producer="monitoring",
            )
        )
    # A second model has drift events only: its report draws drift from drift_reports_v.
    for hour in (4, 3, 2):
        out.append(
            DriftDetected(
                occurred_at=ago(hour),
                model="faq",
                model_version="faq/1",
                arm="champion",
                signal="completion_tokens",
                statistic="psi",
                value=0.2 + 0.05 * hour,
                threshold=0.2,
                window_start=ago(hour + 1),
                window_end=ago(hour),
                report_id=f"faq-{hour}",
                producer="monitoring",
            )
        )
    return out  # fmt: skip


def seed_drift_results(data_dir: Path) -> int:
    """Write drift_results rows for bot, as scheduled drift runs leave them, before monitoring opens the
    store (only one process may open a chdb folder, and Query is read-only). Returns the rows written."""
    rows = []
    for hour in range(HOURS, 0, -1):
        for version, arm, _, _ in ARMS:
            value = 0.04 + (0.07 if arm == "challenger" else 0.01) * (HOURS - hour)
            rows.append(
                [
                    f"run-{hour}", ago(hour).isoformat(), "schedule", "bot", version, arm, "", "",
                    "prompt_tokens", "psi", value, None, 0.2, None, value > 0.2, "ok", "", 500, 60,
                    ago(hour + 1).isoformat(), ago(hour).isoformat(), ago(HOURS + 24).isoformat(),
                    ago(HOURS).isoformat(),
                ]
            )  # fmt: skip
    script = textwrap.dedent(
        """
        import datetime as dt, json, sys
        from llmops.core.clickhouse import apply_migrations, connect, insert_rows, migrations_dir
        columns = ["report_id", "computed_at", "source", "model", "model_version", "arm", "collection",
            "mode", "signal", "statistic", "value", "p_value", "threshold", "alpha", "drifted", "status",
            "note", "reference_count", "current_count", "window_start", "window_end", "reference_start",
            "reference_end"]
        rows = json.loads(sys.argv[2])
        for row in rows:
            for i in (1, 19, 20, 21, 22):
                row[i] = dt.datetime.fromisoformat(row[i])
        client = connect("chdb://" + sys.argv[1])
        apply_migrations(client, migrations_dir())
        print(insert_rows(client, "drift_results", columns, rows))
        client.close()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(data_dir / "clickhouse"), json.dumps(rows)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return len(rows)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    chromium()  # fail first, and plainly, when the browser is missing
    root = tmp_path_factory.mktemp("report")
    (root / "data").mkdir()
    seed_drift_results(root / "data")
    # The scheduled drift job stays off: the seeded results stand for its runs, so the counts are known.
    with running_platform(root, ["monitoring"], LLMOPS_MONITORING_DRIFT_ENABLED="false") as platform:
        yield platform


def count(platform: LocalPlatform, sql: str) -> int:
    return int(query_monitoring(platform, sql)[0][0])


@pytest.fixture(scope="module")
async def loaded(platform: LocalPlatform) -> LocalPlatform:
    """The platform once monitoring has stored every event (and so the views have them)."""
    sent = events()
    for event in sent:
        await publish_raw(
            platform.bootstrap_servers, event.topic, [event.model_dump_json().encode()], key=event.kafka_key()
        )
    expected = {
        "inference_log_v": sum(isinstance(e, InferenceLogged) for e in sent),
        "feedback_v": sum(isinstance(e, FeedbackAccepted) for e in sent),
        "model_canary_changes_v": 1,
        "alerts_v": 1,
        "loop_steps_v": 3,
        "drift_reports_v": 3,
        "judge_scores_v": sum(isinstance(e, AnswerJudged) for e in sent),
    }
    await eventually(
        lambda: {view: count(platform, f"SELECT count() FROM {view}") for view in expected} == expected,
        timeout=120,
    )
    return platform


def report(platform: LocalPlatform, out: Path, *args: str) -> str:
    env = {
        **os.environ,
        "LLMOPS_API_KEY": platform.api_key(),
        "LLMOPS_MONITORING_ADDRESS": platform.address("monitoring"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "llmops.cli", "report", *args, "-o", str(out)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert out.exists()
    return done.stdout


def browse(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [
            chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--hide-scrollbars", f"--user-data-dir={profile}", *args, page.as_uri(),
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done


class Dom(HTMLParser):
    """What the browser's DOM holds: h2 headings, charts (their attributes, polylines and circles)."""

    def __init__(self) -> None:
        super().__init__()
        self.headings: list[str] = []
        self.charts: list[dict] = []
        self.body: dict = {}
        self._h2 = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "body":
            self.body = a
        if tag == "h2":
            self._h2 = True
            self.headings.append("")
        if tag == "svg" and "chart" in (a.get("class") or "").split():
            self.charts.append({"attrs": a, "polylines": [], "circles": 0, "marked": 0})
        elif self.charts and tag == "polyline":
            self.charts[-1]["polylines"].append(a)
        elif self.charts and tag == "circle":
            self.charts[-1]["circles"] += 1
            self.charts[-1]["marked"] += "marked" in a.get("class", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "h2":
            self._h2 = False

    def handle_data(self, data: str) -> None:
        if self._h2:
            self.headings[-1] += data


def dom(text: str) -> Dom:
    parsed = Dom()
    parsed.feed(text)
    return parsed


# Appended to a copy of the page only: writes where each plot area lies, which --dump-dom then shows.
MEASURE = """<script>
document.querySelectorAll('svg.chart').forEach(function (svg) {
  var r = svg.querySelector('rect.plot-area').getBoundingClientRect();
  var box = [r.left + scrollX, r.top + scrollY, r.width, r.height];
  svg.setAttribute('data-rect', box.map(Math.round).join(','));
});
document.body.setAttribute('data-height', document.documentElement.scrollHeight);
</script>"""


def rgb(image: Image.Image) -> list[tuple[int, int, int]]:
    raw = image.convert("RGB").tobytes()
    return [(raw[i], raw[i + 1], raw[i + 2]) for i in range(0, len(raw), 3)]


def coloured(pixel: tuple[int, ...]) -> bool:
    """A saturated pixel: data (axes, grid, threshold and text are grey; the plot is white)."""
    r, g, b = pixel[:3]
    return max(r, g, b) - min(r, g, b) > 80


def red(pixel: tuple[int, ...]) -> bool:
    r, g, b = pixel[:3]
    return r > 170 and g < 90 and b < 90


def test_the_report_renders_every_section_with_charts_that_show_data(
    loaded: LocalPlatform, tmp_path: Path
) -> None:
    platform = loaded

    page = tmp_path / "report.html"
    printed = report(platform, page, "--model", "bot", "--since", "1d")
    assert "drift_results_v" in printed
    html = page.read_text()
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in html and "<script" not in html

    # What the browser made of it.
    dumped = browse(page, tmp_path / "p1", "--virtual-time-budget=2000", "--dump-dom").stdout
    shown = dom(dumped)
    assert shown.headings == HEADINGS
    assert "<title>pwned" not in dumped and "document.title='pwned'" in dumped  # shown, never run
    titles = [c["attrs"]["aria-label"] for c in shown.charts]
    assert titles == [
        "prompt_tokens · psi",
        "Mean feedback score per hour",
        "Thumbs-up share per hour",
        "Latency per hour: p50 (solid) and p95 (dashed)",
        "Requests per hour",
    ]
    drift, score, thumbs, latency, requests = shown.charts
    assert [int(p["data-points"]) for p in drift["polylines"]] == [HOURS, HOURS]
    assert drift["circles"] == 2 * HOURS and drift["marked"] >= 2
    for chart in (score, thumbs, requests):
        assert [int(p["data-points"]) for p in chart["polylines"]] == [HOURS, HOURS]
    assert len(latency["polylines"]) == 4 and latency["circles"] == 4 * HOURS
    text = page.read_text()
    assert "&lt;script&gt;document.title=&#x27;pwned&#x27;&lt;/script&gt; mean score fell" in text
    assert "canary_started" in text and "observed = 0.52" in text
    challenger_row = re.search(r"<tr><td>bot/2</td><td>challenger</td>(.*?)</tr>", text)
    assert challenger_row, "the versions table has no row for bot/2"
    assert re.findall(r"<td>([^<]*)</td>", challenger_row.group(1))[:2] == [str(HOURS * 3), "1"]
    assert "champion: champion (version 1)" in text and "challenger: challenger (version 2)" in text
    # The canary's judge next to the users: every third answer judged, one of the champion's unrated.
    for label, expected in (
        ("answers judged", [str(2 * HOURS), str(HOURS)]),
        ("rated by the judge", [str(2 * HOURS - 1), str(HOURS)]),
        ("judge&#x27;s mean score", ["0.5", "0.75"]),
    ):
        row = re.search(rf"<tr><td>{label}</td>(.*?)</tr>", text)
        assert row, f"the canary table has no row {label!r}"
        cells = [c.split(" <svg")[0].strip() for c in re.findall(r"<td>(.*?)</td>", row.group(1))]
        assert cells == expected, (label, cells)
    assert "judge scores (0 to 1) from judge-model" in text

    # Where the charts are, then a screenshot of the whole page: each plot area has data's colours.
    measured = tmp_path / "measured.html"
    measured.write_text(html.replace("</body>", MEASURE + "</body>"))
    layout = dom(browse(measured, tmp_path / "p2", "--window-size=1280,900", "--dump-dom").stdout)
    height = int(layout.body["data-height"])
    shot = tmp_path / "report.png"
    browse(page, tmp_path / "p3", f"--window-size=1280,{height}", f"--screenshot={shot}")
    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, height)
    for chart in layout.charts:
        left, top, width, h = (int(v) for v in chart["attrs"]["data-rect"].split(","))
        assert width > 100 and h > 50, chart["attrs"]["aria-label"]
        area = image.crop((left, top, left + width, top + h))
        pixels = rgb(area)
        data_pixels = sum(coloured(p) for p in pixels)
        assert data_pixels > 200, (chart["attrs"]["aria-label"], data_pixels)
        if chart["attrs"]["aria-label"] == "prompt_tokens · psi":
            assert sum(red(p) for p in pixels) > 20  # the drifted points' rings
    # A control: the page's margin right of the charts holds no data colours.
    margin = image.crop((1240, 0, 1280, height))
    assert sum(coloured(p) for p in rgb(margin)) == 0


def test_drift_falls_back_to_drift_reports_for_a_model_without_drift_results(
    loaded: LocalPlatform, tmp_path: Path
) -> None:
    platform = loaded
    page = tmp_path / "faq.html"
    printed = report(platform, page, "--model", "faq", "--since", "1d")
    assert "drift_reports_v" in printed
    shown = dom(browse(page, tmp_path / "p", "--virtual-time-budget=2000", "--dump-dom").stdout)
    assert shown.headings == HEADINGS
    html = page.read_text()
    assert "Drawn from drift_reports_v" in html
    (drift,) = shown.charts
    assert drift["attrs"]["aria-label"] == "completion_tokens · psi"
    assert [int(p["data-points"]) for p in drift["polylines"]] == [3]
    assert drift["marked"] == 3
    # faq has no answers, canary, alerts or loop steps in this window: those sections say so.
    assert html.count("No data in this window.") == 4
