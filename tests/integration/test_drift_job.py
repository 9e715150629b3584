"""The scheduled drift job and DriftReport, over the real platform: monitoring as a process, the local
broker, chdb and the all-MiniLM-L6-v2 embedding model.

Model A's prompts move from lines of the GPL to README text (longer, and about something else); model
B's stay GPL lines. Within a bounded time the job, running every few seconds, has published drift for
A's prompt embedding and prompt length and nothing for B, and has written results for both; a
DriftReport call gives the same verdicts.
"""

from __future__ import annotations

import datetime as dt
import glob
import gzip
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from llmops.cli.local import LocalPlatform
from llmops.contracts.events import InferenceLogged
from llmops.contracts.rpc.monitoring.v1 import monitoring_pb2, monitoring_pb2_grpc
from llmops.core.convert import timestamp
from llmops.testing.platform import (
    auth,
    caught_up,
    eventually,
    publish_raw,
    query_monitoring,
    running_platform,
)

pytestmark = pytest.mark.integration

WINDOW = dt.timedelta(minutes=10)
REFERENCE = dt.timedelta(minutes=20)
PER_WINDOW = 150


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    env = {
        "LLMOPS_MONITORING_DRIFT_INTERVAL_SECONDS": "5",
        "LLMOPS_MONITORING_DRIFT_WINDOW_SECONDS": str(int(WINDOW.total_seconds())),
        "LLMOPS_MONITORING_DRIFT_REFERENCE_SECONDS": str(int(REFERENCE.total_seconds())),
        "LLMOPS_MONITORING_DRIFT_EMBEDDING_SAMPLE": "100",
    }
    with running_platform(tmp_path_factory.mktemp("drift"), ["monitoring"], **env) as platform:
        yield platform


def _licence_lines() -> list[str]:
    text = Path("/usr/share/common-licenses/GPL-3").read_text()
    return [line.strip() for line in text.splitlines() if len(line.strip()) > 40]


def _readme_paragraphs() -> list[str]:
    """Two consecutive lines of the README files under /usr/share/doc, joined."""
    lines: list[str] = []
    for path in sorted(glob.glob("/usr/share/doc/*/README*")):
        try:
            opened = (
                gzip.open(path, "rt", errors="replace")
                if path.endswith(".gz")
                else open(path, errors="replace")
            )  # noqa: SIM115
            with opened as f:
                text = f.read()
        except OSError:
            continue
        for line in text.splitlines():
            line = line.strip()
            if len(line) > 40 and line[0].isalpha() and "GNU" not in line and "icense" not in line:
                lines.append(line)
    return [f"{a} {b}" for a, b in zip(lines[::2], lines[1::2], strict=False)]


def _answers(model: str, prompts: list[str], start: dt.datetime, end: dt.datetime, seed: int) -> list[bytes]:
    """Answers spread over [start, end) with the same timing distribution for every model."""
    rng = np.random.default_rng(seed)
    span = (end - start).total_seconds()
    times = np.sort(rng.uniform(0, span, len(prompts)))
    completion = np.round(rng.lognormal(4.0, 0.4, len(prompts))).clip(1).astype(int)
    return [
        InferenceLogged(
            request_id=f"{model}-{seed}-{i}", model=model, model_version=f"{model}/1", arm="champion",
            occurred_at=start + dt.timedelta(seconds=float(times[i])), prompt=prompt, completion="...",
            prompt_tokens=round(1.3 * len(prompt.split())), completion_tokens=int(completion[i]),
            latency_ms=float(completion[i] * rng.lognormal(3.0, 0.2)),
            time_to_first_token_ms=float(rng.lognormal(4.0, 0.2)),
        ).model_dump_json().encode()
        for i, prompt in enumerate(prompts)
    ]  # fmt: skip


def _report(platform: LocalPlatform, model: str, now: dt.datetime) -> monitoring_pb2.DriftReportResponse:
    request = monitoring_pb2.DriftReportRequest(
        model=model,
        baseline_start=timestamp(now - WINDOW - REFERENCE),
        baseline_end=timestamp(now - WINDOW),
        window_start=timestamp(now - WINDOW),
        window_end=timestamp(now),
    )
    with grpc.insecure_channel(platform.address("monitoring")) as channel:
        stub = monitoring_pb2_grpc.MonitoringServiceStub(channel)
        return stub.DriftReport(request, metadata=auth(platform), timeout=60)


async def test_scheduled_drift_job_and_drift_report(platform: LocalPlatform) -> None:
    rng = np.random.default_rng(0)
    licence, readme = _licence_lines(), _readme_paragraphs()
    assert len(licence) >= 3 * PER_WINDOW and len(readme) >= PER_WINDOW, (len(licence), len(readme))
    licence = [licence[i] for i in rng.permutation(len(licence))]
    readme = [readme[i] for i in rng.permutation(len(readme))[:PER_WINDOW]]

    # Windows as the job sees them at any time in the next four minutes: the current one is the
    # last 10 minutes, the reference the 20 before it.
    now = dt.datetime.now(dt.UTC)
    reference = (now - dt.timedelta(minutes=25), now - dt.timedelta(minutes=12))
    current = (now - dt.timedelta(minutes=6), now - dt.timedelta(seconds=30))
    messages = [
        *_answers("drift-a", licence[:PER_WINDOW], *reference, seed=1),
        *_answers("drift-a", readme, *current, seed=2),
        *_answers("drift-b", licence[PER_WINDOW : 2 * PER_WINDOW], *reference, seed=3),
        *_answers("drift-b", licence[2 * PER_WINDOW : 3 * PER_WINDOW], *current, seed=4),
    ]
    started = time.monotonic()
    await publish_raw(platform.bootstrap_servers, InferenceLogged.topic, messages)
    await eventually(
        lambda: caught_up(platform.bootstrap_servers, "llmops-monitoring.inference", InferenceLogged.topic),
        timeout=60,
    )
    # Only runs that began once every answer was stored count (earlier ones saw part of them).
    stored_at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]

    def reports_after_stored() -> dict[str, set[str]]:
        rows = query_monitoring(
            platform,
            "SELECT model, groupUniqArray(signal) FROM drift_results_v"
            " WHERE source = 'schedule' AND computed_at > {t:DateTime64(3, 'UTC')} GROUP BY model",
            t=stored_at,
        )
        return {model: set(signals) for model, signals in rows}

    def detected_after_stored() -> list[list]:
        return query_monitoring(
            platform,
            "SELECT model, signal, statistic, round(value, 4), p_value, report_id FROM drift_reports_v"
            " WHERE report_id IN (SELECT report_id FROM drift_results_v"
            " WHERE source = 'schedule' AND computed_at > {t:DateTime64(3, 'UTC')})"
            " ORDER BY model, signal, statistic",
            t=stored_at,
        )

    def job_reported_a_drift() -> list[list]:
        results = reports_after_stored()
        if not {"drift-a", "drift-b"} <= set(results):
            return []
        detected = detected_after_stored()
        return detected if {"prompt_embedding", "prompt_tokens"} <= {r[1] for r in detected} else []

    detected = await eventually(job_reported_a_drift, timeout=120, interval=2)
    print(f"job: drift detected {time.monotonic() - started:.1f} s after the answers were published")
    for model, signal, statistic, value, p_value, _ in detected:
        print(f"job drift_detected: {model} {signal} {statistic} value={value} p={p_value}")
    assert {r[0] for r in detected} == {"drift-a"}
    assert len({r[5] for r in detected}) >= 1
    assert {"prompt_embedding", "prompt_tokens"} <= set(reports_after_stored()["drift-b"])

    figures = query_monitoring(
        platform,
        "SELECT model, signal, statistic, round(value, 4), round(p_value, 6), drifted"
        " FROM drift_results_v WHERE source = 'schedule' AND report_id ="
        " (SELECT argMax(report_id, computed_at) FROM drift_results_v WHERE model = {m:String})"
        " ORDER BY signal, statistic",
        m="drift-b",
    )
    for model, signal, statistic, value, p_value, drifted in figures:
        print(f"job result: {model} {signal} {statistic} value={value} p={p_value} drifted={drifted}")
    assert figures and not any(r[5] for r in figures)

    # The same verdicts on request.
    at = dt.datetime.now(dt.UTC)
    for model, expected in (("drift-a", True), ("drift-b", False)):
        reply = _report(platform, model, at)
        for s in reply.signals:
            p = f"{s.p_value:.6f}" if s.HasField("p_value") else "-"
            print(
                f"DriftReport {model}: {s.name} {s.statistic} value={s.value:.4f} p={p} drifted={s.drifted}"
            )
        assert reply.drifted is expected
        assert (reply.baseline_count, reply.window_count) == (PER_WINDOW, PER_WINDOW)
        drifted = {s.name for s in reply.signals if s.drifted}
        if expected:
            assert {"prompt_embedding", "prompt_tokens"} <= drifted
            assert "latency_ms" not in drifted
        else:
            assert drifted == set()

    with grpc.insecure_channel(platform.address("monitoring")) as channel:
        stub = monitoring_pb2_grpc.MonitoringServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.DriftReport(
                monitoring_pb2.DriftReportRequest(model="drift-a"), metadata=auth(platform), timeout=30
            )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "baseline_start is required" in caught.value.details()
