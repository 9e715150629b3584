"""DriftReport over gRPC and the scheduled drift job, against a chdb-backed AnalyticsStore.

One store serves the whole module (the migrations take a while) and is closed at its end; every
test reads the models the module writes once: "steady" (the same traffic in both windows) and
"slow" (latency x1.5 in the current window, and prompts about another subject), each with requests
that failed on the server side among its answers (drift leaves them out), and "down", whose every
request failed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from llmops.contracts.events import DriftDetected, Event, InferenceLogged
from llmops.contracts.rpc.monitoring.v1 import monitoring_pb2
from llmops.core.convert import timestamp
from llmops.core.errors import InvalidArgument
from llmops.core.settings import AuthSettings
from llmops.monitoring.drift import drift_report
from llmops.monitoring.drift_job import DriftJob, DriftJobSettings, DriftReporter, PromptEmbedder
from llmops.monitoring.grpc_server import MonitoringServicer
from llmops.monitoring.settings import Settings
from llmops.monitoring.store.analytics import AnalyticsStore

REFERENCE = (dt.datetime(2026, 11, 1, tzinfo=dt.UTC), dt.datetime(2026, 11, 8, tzinfo=dt.UTC))
CURRENT = (dt.datetime(2026, 11, 8, tzinfo=dt.UTC), dt.datetime(2026, 11, 9, tzinfo=dt.UTC))
N = 300


def _answers(
    model: str, window: tuple[dt.datetime, dt.datetime], seed: int, *, latency_factor: float = 1.0,
    subject: str = "billing",
) -> list[InferenceLogged]:  # fmt: skip
    """Synthetic answers in ``window``: lognormal lengths and timings, prompts about ``subject``."""
    rng = np.random.default_rng(seed)
    span = (window[1] - window[0]).total_seconds()
    times = np.sort(rng.uniform(0, span - 1, N))
    prompt_tokens = np.round(rng.lognormal(4.0, 0.6, N)).clip(1).astype(int)
    completion_tokens = np.round(rng.lognormal(5.0, 0.5, N)).clip(1).astype(int)
    latency = completion_tokens * rng.lognormal(3.0, 0.3, N) * latency_factor
    ttft = rng.lognormal(5.0, 0.4, N) * latency_factor
    return [
        InferenceLogged(
            request_id=f"{model}-{seed}-{i}", model=model, model_version=f"{model}/1", arm="champion",
            occurred_at=window[0] + dt.timedelta(seconds=float(times[i])),
            prompt=f"a question about {subject} number {i % 37} with detail {i % 11}", completion="ok",
            prompt_tokens=int(prompt_tokens[i]), completion_tokens=int(completion_tokens[i]),
            latency_ms=float(latency[i]), time_to_first_token_ms=float(ttft[i]),
        )
        for i in range(N)
    ]  # fmt: skip


def _failures(model: str, window: tuple[dt.datetime, dt.datetime], n: int) -> list[InferenceLogged]:
    """Requests that failed on the server side in ``window``: a deadline's latency, no output."""
    step = (window[1] - window[0]) / n
    return [
        InferenceLogged(
            request_id=f"{model}-failed-{window[0]:%d}-{i}", model=model, model_version=f"{model}/1",
            arm="champion", occurred_at=window[0] + step * i, prompt=f"failed request {i} about outages",
            completion="", prompt_tokens=40_000, completion_tokens=0, latency_ms=120_000.0,
            time_to_first_token_ms=0.0, error="DEADLINE_EXCEEDED",
        )
        for i in range(n)
    ]  # fmt: skip


def bag_of_words(texts: Sequence[str]) -> list[list[float]]:
    """A stand-in for the embedding model: words hashed into 32 dimensions (stable across runs)."""
    vectors = []
    for text in texts:
        vector = [0.0] * 32
        for word in text.split():
            vector[zlib.crc32(word.encode()) % 32] += 1.0
        vectors.append(vector)
    return vectors


class RecordingBus:
    """What the reporter needs of the event bus: publish, here recorded."""

    def __init__(self) -> None:
        self.published: list[Event] = []

    async def publish(self, event: Event) -> None:
        self.published.append(event)


class CountingLoader:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self):  # noqa: ANN204
        self.calls += 1
        return bag_of_words


@pytest.fixture(scope="module")
async def store(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AnalyticsStore]:
    folder: Path = tmp_path_factory.mktemp("drift-rpc")
    s = AnalyticsStore(f"chdb://{folder / 'analytics'}")
    try:
        await s.open()
        await s.insert(InferenceLogged, _answers("steady", REFERENCE, seed=1))
        await s.insert(InferenceLogged, _answers("steady", CURRENT, seed=2))
        await s.insert(InferenceLogged, _answers("slow", REFERENCE, seed=3))
        await s.insert(
            InferenceLogged, _answers("slow", CURRENT, seed=4, latency_factor=1.5, subject="shipping")
        )
        for model in ("steady", "slow"):
            for window in (REFERENCE, CURRENT):
                await s.insert(InferenceLogged, _failures(model, window, 60))
        await s.insert(InferenceLogged, _failures("down", CURRENT, 80))
        yield s
    finally:
        await s.close()


def _settings(**drift: object) -> Settings:
    return Settings(
        auth=AuthSettings(auth_disabled=True),
        drift=DriftJobSettings(**{"embedding_sample": 100, "permutations": 200, **drift}),
    )


def _servicer(store: AnalyticsStore, bus: RecordingBus, loader: CountingLoader) -> MonitoringServicer:
    settings = _settings()
    reporter = DriftReporter(store, settings.drift, bus.publish, PromptEmbedder(loader, process=False))
    return MonitoringServicer(settings, store, drift=reporter)


def _request(model: str = "slow", **fields: object) -> monitoring_pb2.DriftReportRequest:
    values: dict[str, object] = {
        "model": model,
        "baseline_start": timestamp(REFERENCE[0]),
        "baseline_end": timestamp(REFERENCE[1]),
        "window_start": timestamp(CURRENT[0]),
        "window_end": timestamp(CURRENT[1]),
        "signals": ["latency_ms", "prompt_embedding"],
    }
    values.update(fields)
    return monitoring_pb2.DriftReportRequest(**{k: v for k, v in values.items() if v is not None})


async def _drift_rows(store: AnalyticsStore, report_id: str) -> list[tuple]:
    sql = """
        SELECT source, model, signal, statistic, model_version, arm, value, p_value, drifted, status,
            reference_count, current_count, window_start, window_end, reference_start, reference_end
        FROM drift_results_v WHERE report_id = {r:String} ORDER BY signal, statistic
    """
    return await store.read(
        lambda c: [tuple(r) for r in c.query(sql, parameters={"r": report_id}).result_rows]
    )


async def test_drift_report_answers_every_result_and_writes_it(store: AnalyticsStore) -> None:
    bus, loader = RecordingBus(), CountingLoader()
    servicer = _servicer(store, bus, loader)
    reply = await servicer.DriftReport(_request(), context=None)

    # The same request straight through drift_report: every field of every result, converted.
    reporter = servicer._drift
    assert reporter is not None
    direct = await store.read(
        lambda c: drift_report(
            c, reporter.request("slow", REFERENCE, CURRENT, ("latency_ms", "prompt_embedding")), bag_of_words
        )
    )
    assert [s.name for s in reply.signals] == [r.signal for r in direct.results]
    assert len(reply.signals) == 3  # latency PSI and KS, prompt centroid distance
    for signal, result in zip(reply.signals, direct.results, strict=True):
        print(f"{signal.name} {signal.statistic}: value={signal.value:.4f} drifted={signal.drifted}")
        assert signal.statistic == result.statistic
        assert signal.value == pytest.approx(result.value)
        assert signal.threshold == result.threshold
        assert signal.drifted is bool(result.drifted)
        assert (signal.model_version, signal.arm) == ("slow/1", "champion")
        assert signal.HasField("p_value") is (result.p_value is not None)
        assert signal.HasField("alpha") is (result.alpha is not None)
        if result.p_value is not None:
            assert signal.p_value == pytest.approx(result.p_value)
            assert signal.alpha == result.alpha
        assert (signal.reference_count, signal.current_count) == (
            result.reference_count,
            result.current_count,
        )
        assert (signal.status, signal.collection, signal.mode, signal.note) == (
            result.status, result.collection, result.mode, result.note,
        )  # fmt: skip
    assert {(s.name, s.statistic) for s in reply.signals if s.drifted} == {
        ("latency_ms", "psi"), ("latency_ms", "ks"), ("prompt_embedding", "centroid_distance"),
    }  # fmt: skip
    assert reply.model == "slow" and reply.drifted
    # The largest counts among the results: all N values, and the embedding sample of 100.
    assert (reply.baseline_count, reply.window_count) == (N, N)
    assert len(reply.report_id) == 32

    rows = await _drift_rows(store, reply.report_id)
    assert len(rows) == 3
    assert {r[0] for r in rows} == {"rpc"} and {r[1] for r in rows} == {"slow"}
    assert {r[12:16] for r in rows} == {(*CURRENT, *REFERENCE)}
    assert bus.published == []  # publish was not asked for

    # The embedding model is loaded on first need only, and kept.
    assert loader.calls == 1
    second = await servicer.DriftReport(_request(signals=["latency_ms"]), context=None)
    await servicer.DriftReport(_request(), context=None)
    assert loader.calls == 1
    assert second.report_id != reply.report_id and [s.name for s in second.signals] == ["latency_ms"] * 2


async def test_drift_report_without_drift(store: AnalyticsStore) -> None:
    loader = CountingLoader()
    servicer = _servicer(store, RecordingBus(), loader)
    reply = await servicer.DriftReport(
        _request("steady", signals=[], reference_scope="group", publish=True), context=None
    )
    assert not reply.drifted and not any(s.drifted for s in reply.signals)
    # Empty signals: all; feedback and retrieval have no data here, so no group and no result.
    assert {s.name for s in reply.signals} == {
        "prompt_tokens", "completion_tokens", "latency_ms", "time_to_first_token_ms", "prompt_embedding",
    }  # fmt: skip
    assert loader.calls == 1


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"model": ""}, "model is required"),
        ({"baseline_start": None}, "baseline_start is required"),
        ({"baseline_end": None}, "baseline_end is required"),
        ({"window_start": None}, "window_start is required"),
        ({"window_end": None}, "window_end is required"),
        ({"baseline_end": timestamp(REFERENCE[0])}, r"baseline_start \(.*\) must be before baseline_end"),
        ({"window_start": timestamp(CURRENT[1])}, r"window_start \(.*\) must be before window_end"),
        ({"signals": ["latency_ms", "latency", "mood"]}, "signals: unknown signal.s. latency, mood"),
        ({"reference_scope": "pooled"}, "reference_scope must be 'model'.*'pooled'"),
        ({"numeric_method": "bins"}, "numeric_method must be 'histograms', 'exact' or empty.*got 'bins'"),
    ],
)
async def test_drift_report_refuses_bad_requests_naming_the_field(
    store: AnalyticsStore, fields: dict, named: str
) -> None:
    servicer = _servicer(store, RecordingBus(), CountingLoader())
    request = _request(**fields) if "model" not in fields else _request(fields["model"])
    with pytest.raises(InvalidArgument, match=named) as caught:
        await servicer.DriftReport(request, context=None)
    assert caught.value.status == "INVALID_ARGUMENT"


async def test_drift_report_numeric_method(store: AnalyticsStore) -> None:
    servicer = _servicer(store, RecordingBus(), CountingLoader())
    signals = ["prompt_tokens", "latency_ms"]
    default = await servicer.DriftReport(_request(signals=signals), context=None)
    exact = await servicer.DriftReport(_request(signals=signals, numeric_method="exact"), context=None)
    binned = await servicer.DriftReport(_request(signals=signals, numeric_method="histograms"), context=None)
    # Unnamed, the method is the service's setting, whose default is the histograms.
    assert [(s.name, s.statistic, s.value, s.note) for s in default.signals] == [
        (s.name, s.statistic, s.value, s.note) for s in binned.signals
    ]
    assert {s.note for s in exact.signals} == {""}
    assert [(s.name, s.statistic) for s in binned.signals] == [(s.name, s.statistic) for s in exact.signals]
    for b, e in zip(binned.signals, exact.signals, strict=True):
        print(f"{b.name} {b.statistic}: exact={e.value:.6f} histograms={b.value:.6f} ({b.note})")
        # Answers only, as the exact path counts them.
        assert (b.reference_count, b.current_count) == (e.reference_count, e.current_count) == (N, N)
        bounds = re.fullmatch(rf"from hourly histograms: {b.statistic} in \[(.+), (.+)\]", b.note)
        assert bounds, b.note
        low, high = float(bounds[1]), float(bounds[2])
        # The exact value lies within the stated bounds (300 answers: a log bin holds a few values).
        assert low - 1e-9 <= e.value <= high + 1e-9 and low - 1e-9 <= b.value <= high + 1e-9
        if b.name == "prompt_tokens":  # unit bins: exact
            assert b.value == pytest.approx(e.value, abs=1e-9)
        assert b.drifted == e.drifted
    rows = await store.read(
        lambda c: (
            c.query(
                "SELECT note FROM drift_results_v WHERE report_id = {r:String}",
                parameters={"r": binned.report_id},
            ).result_rows
        )
    )
    assert sorted(r[0] for r in rows) == sorted(s.note for s in binned.signals)


async def test_drift_report_publishes_drifted_results_when_asked(store: AnalyticsStore) -> None:
    bus = RecordingBus()
    reply = await _servicer(store, bus, CountingLoader()).DriftReport(_request(publish=True), context=None)
    drifted = [s for s in reply.signals if s.drifted]
    assert len(bus.published) == len(drifted) == 3
    for event, signal in zip(bus.published, drifted, strict=True):
        assert isinstance(event, DriftDetected)
        assert (event.model, event.signal, event.statistic) == ("slow", signal.name, signal.statistic)
        assert (event.model_version, event.arm, event.report_id) == ("slow/1", "champion", reply.report_id)
        assert event.value == pytest.approx(signal.value) and event.threshold == signal.threshold
        assert (event.window_start, event.window_end) == CURRENT
        assert (event.reference_start, event.reference_end) == REFERENCE
        assert (event.reference_count, event.current_count) == (signal.reference_count, signal.current_count)
        assert event.p_value == (signal.p_value if signal.HasField("p_value") else None)
        assert event.alpha == (signal.alpha if signal.HasField("alpha") else None)


async def test_job_checks_every_model_with_traffic_and_publishes_only_drift(store: AnalyticsStore) -> None:
    bus = RecordingBus()
    settings = DriftJobSettings(
        signals=["prompt_tokens", "latency_ms"], window_seconds=86400, reference_seconds=7 * 86400
    )
    job = DriftJob(
        DriftReporter(store, settings, bus.publish, PromptEmbedder(CountingLoader(), process=False))
    )
    reports = await job.run_once(now=CURRENT[1])

    assert sorted(reports) == ["slow", "steady"]
    for model, report in reports.items():
        for r in report.results:
            print(
                f"job {model} {r.signal} {r.statistic}: value={r.value:.4f} p={r.p_value} drifted={r.drifted}"
            )
    assert not reports["steady"].drifted
    assert {(r.signal, r.statistic) for r in reports["slow"].drifted} == {
        ("latency_ms", "psi"),
        ("latency_ms", "ks"),
    }

    sql = """
        SELECT model, any(source), uniqExact(report_id), count(), countIf(drifted)
        FROM drift_results_v WHERE source = 'schedule' AND window_end = {end:DateTime64(3, 'UTC')}
        GROUP BY model ORDER BY model
    """
    rows = await store.read(lambda c: c.query(sql, parameters={"end": CURRENT[1]}).result_rows)
    assert [tuple(r) for r in rows] == [("slow", "schedule", 1, 4, 2), ("steady", "schedule", 1, 4, 0)]
    assert {(e.model, e.signal) for e in bus.published} == {("slow", "latency_ms")}
    assert len(bus.published) == 2 and len({e.report_id for e in bus.published}) == 1


async def test_job_skips_models_without_traffic_and_survives_a_failing_one(
    store: AnalyticsStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus = RecordingBus()
    settings = DriftJobSettings(
        models="slow,steady,idle", signals="latency_ms", window_seconds=86400, reference_seconds=7 * 86400
    )
    reporter = DriftReporter(store, settings, bus.publish, PromptEmbedder(CountingLoader(), process=False))
    job = DriftJob(reporter)
    # "down" had requests in the window, but no answer: nothing to compare.
    assert await job.models_with_traffic(*CURRENT) == ["slow", "steady"]

    report = reporter.report

    async def failing_for_slow(request, **kwargs):  # noqa: ANN001, ANN202
        if request.model == "slow":
            raise RuntimeError("the engine went away")
        return await report(request, **kwargs)

    monkeypatch.setattr(reporter, "report", failing_for_slow)
    # A minute later than the other job test, so its rows are not counted there.
    reports = await job.run_once(now=CURRENT[1] + dt.timedelta(minutes=1))
    assert list(reports) == ["steady"] and bus.published == []


async def test_job_uses_the_numeric_method_of_its_settings(store: AnalyticsStore) -> None:
    settings = DriftJobSettings(
        signals="prompt_tokens,latency_ms", window_seconds=86400, reference_seconds=7 * 86400,
        numeric_method="histograms",
    )  # fmt: skip
    job = DriftJob(
        DriftReporter(
            store, settings, RecordingBus().publish, PromptEmbedder(CountingLoader(), process=False)
        )
    )
    # Two minutes later than the other job tests: windows off the hour (edges binned from the rows).
    reports = await job.run_once(now=CURRENT[1] + dt.timedelta(minutes=2))
    assert sorted(reports) == ["slow", "steady"]
    for report in reports.values():
        assert report.request.numeric_method == "histograms"
        assert all(r.note.startswith("from hourly histograms: ") for r in report.results)
    assert {(r.signal, r.statistic) for r in reports["slow"].drifted} == {
        ("latency_ms", "psi"),
        ("latency_ms", "ks"),
    }
    assert not reports["steady"].drifted


def test_job_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMOPS_MONITORING_DRIFT_MODELS", "bot, helper")
    monkeypatch.setenv("LLMOPS_MONITORING_DRIFT_SIGNALS", "latency_ms,prompt_embedding")
    monkeypatch.setenv("LLMOPS_MONITORING_DRIFT_INTERVAL_SECONDS", "5")
    s = DriftJobSettings()
    assert (s.models, s.signals, s.interval_seconds) == (
        ["bot", "helper"],
        ["latency_ms", "prompt_embedding"],
        5,
    )
    monkeypatch.setenv("LLMOPS_MONITORING_DRIFT_SIGNALS", "latency")
    with pytest.raises(ValueError, match="unknown signal.s. latency; known: prompt_tokens"):
        DriftJobSettings()
    monkeypatch.delenv("LLMOPS_MONITORING_DRIFT_SIGNALS")
    assert s.numeric_method == "histograms"
    monkeypatch.setenv("LLMOPS_MONITORING_DRIFT_NUMERIC_METHOD", "exact")
    assert DriftJobSettings().numeric_method == "exact"
    monkeypatch.setenv("LLMOPS_MONITORING_DRIFT_NUMERIC_METHOD", "bins")
    with pytest.raises(ValueError, match="numeric_method\n.*'exact' or 'histograms'"):
        DriftJobSettings()
    monkeypatch.delenv("LLMOPS_MONITORING_DRIFT_NUMERIC_METHOD")
    monkeypatch.setenv("LLMOPS_MONITORING_DRIFT_EMBEDDING_SAMPLE", "20")
    with pytest.raises(ValueError, match="EMBEDDING_SAMPLE .20. must be at least .*MIN_COUNT .50."):
        DriftJobSettings()


async def test_prompt_vectors_are_kept_between_runs_and_embedded_at_a_lower_priority() -> None:
    embedded: list[str] = []
    priorities: list[int] = []

    def embed(texts: Sequence[str]) -> list[list[float]]:
        embedded.extend(texts)
        priorities.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return bag_of_words(texts)

    embedder = PromptEmbedder(lambda: embed, cache_size=3, nice=5, process=False)
    try:
        vectors = await embedder.get()
        # Called from a reader thread, as drift_report calls it.
        first = await asyncio.to_thread(vectors, ["refund my order", "track my parcel", "refund my order"])
        assert first == bag_of_words(["refund my order", "track my parcel", "refund my order"])
        assert embedded == ["refund my order", "track my parcel"]  # a repeated text is embedded once
        second = await asyncio.to_thread(vectors, ["track my parcel", "reset my password"])
        assert second == bag_of_words(["track my parcel", "reset my password"])
        assert embedded == ["refund my order", "track my parcel", "reset my password"]
        assert (embedder.misses, embedder.hits) == (3, 2)
        # The cache holds three vectors: a fourth text pushes out the least recently used one.
        await asyncio.to_thread(vectors, ["cancel my plan"])
        await asyncio.to_thread(vectors, ["refund my order", "cancel my plan"])
        assert embedded[3:] == ["cancel my plan", "refund my order"]
        # Every embedding ran on the embedding thread, five steps below the test's own priority.
        assert priorities == [min(19, os.getpriority(os.PRIO_PROCESS, 0) + 5)] * 4
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == os.getpriority(
            os.PRIO_PROCESS, 0
        )
    finally:
        embedder.close()


def _where_embedded() -> Callable[[Sequence[str]], list[list[float]]]:
    """A loader the embedding process can import: each vector says which process embedded it, at
    which priority, and how long the text was."""

    def embed(texts: Sequence[str]) -> list[list[float]]:
        me = [float(os.getpid()), float(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))]
        return [[*me, float(len(t))] for t in texts]

    return embed


async def test_the_embedding_model_runs_in_a_child_process_at_a_lower_priority() -> None:
    embedder = PromptEmbedder(_where_embedded, cache_size=100, nice=3)
    try:
        vectors = await embedder.get()
        assert await embedder.get() == vectors  # loaded once
        first = await asyncio.to_thread(vectors, ["where is my order", "hi"])
        second = await asyncio.to_thread(vectors, ["hi", "cancel it"])
    finally:
        embedder.close()
    pids = {v[0] for v in first + second}
    assert len(pids) == 1 and pids != {float(os.getpid())}  # one child process, not this one
    assert {v[1] for v in first + second} == {float(min(19, os.getpriority(os.PRIO_PROCESS, 0) + 3))}
    assert [v[2] for v in first + second] == [17.0, 2.0, 2.0, 9.0]
    assert (embedder.misses, embedder.hits) == (3, 1)  # "hi" came from the cache the second time


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"  # a zombie has ended; whoever adopted it reaps it


def test_a_killed_service_leaves_no_embedding_process_behind() -> None:
    service = subprocess.Popen(
        [sys.executable, "-c", (
            "import asyncio, time\n"
            "from llmops.monitoring.drift_job import PromptEmbedder\n"
            "from tests.unit.test_monitoring_drift_rpc import _where_embedded\n"
            "embed = asyncio.run(PromptEmbedder(_where_embedded).get())\n"
            "print(int(embed(['x'])[0][0]), flush=True)\n"
            "time.sleep(600)\n"
        )],
        cwd=Path(__file__).parents[2], stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert service.stdout is not None
        child = int(service.stdout.readline())
        assert child != service.pid and _alive(child)
    finally:
        service.kill()
        service.wait()
    deadline = time.monotonic() + 15
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(child), f"embedding process {child} outlived its service"
