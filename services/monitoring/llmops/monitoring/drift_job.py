"""Drift reports as monitoring runs them: on a schedule for every model with traffic, and on request.

Both paths go through :class:`DriftReporter`: compute the report in ClickHouse (see
:mod:`llmops.monitoring.drift`), write every result to ``drift_results`` (drifted or not, so drift
can be followed over time), and publish ``monitoring.drift_detected`` for each drifted one, all
under one ``report_id``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import multiprocessing
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from llmops.contracts.events import DriftDetected, Event
from llmops.core.convert import copy_fields
from llmops.core.settings import comma_list
from llmops.monitoring.drift import (
    ALL_SIGNALS,
    EMBEDDING_SIGNAL,
    DriftReport,
    DriftRequest,
    DriftThresholds,
    Embed,
    drift_report,
)
from llmops.monitoring.store.analytics import AnalyticsStore

log = logging.getLogger(__name__)

Publish = Callable[[Event], Awaitable[None]]
Source = Literal["schedule", "rpc"]


class DriftJobSettings(BaseSettings):
    """The scheduled drift job, and the sample sizes DriftReport calls use too (prefix
    ``LLMOPS_MONITORING_DRIFT_``): ``LLMOPS_MONITORING_DRIFT_MODELS=bot,helper``."""

    model_config = SettingsConfigDict(env_prefix="LLMOPS_MONITORING_DRIFT_", extra="ignore")

    enabled: bool = True
    interval_seconds: float = Field(300.0, gt=0, description="From the end of one run to the next.")
    window_seconds: float = Field(3600.0, gt=0, description="The current window, ending at the run.")
    reference_seconds: float = Field(86400.0, gt=0, description="The window just before the current one.")
    models: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated models to check; empty: every model with traffic in the window.",
    )
    signals: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(ALL_SIGNALS),
        description=f"Comma-separated signals of {', '.join(ALL_SIGNALS)}; default: all of them.",
    )
    embedding_sample: int = Field(200, ge=2, description="Prompts embedded per window and group.")
    embedding_cache: int = Field(
        20_000, ge=0, description="Prompt vectors kept between runs (about 1.5 kB each); 0: none."
    )
    preload: bool = Field(
        False,
        description=(
            "Load the embedding model at start, before consuming (start-up takes seconds longer; the "
            "first run with prompt_embedding then takes no load time from the consumers)."
        ),
    )
    embedding_nice: int = Field(
        10, ge=0, le=19, description="How much lower than the service's the embedding thread's priority is."
    )
    # The smallest p-value a permutation test can give is 1 / (permutations + 1): it must be able
    # to go under the embedding alpha (0.01).
    permutations: int = Field(1000, ge=100)
    min_count: int = Field(50, ge=2, description="Values per window and group for any verdict.")
    numeric_method: Literal["exact", "histograms"] = Field(
        "histograms",
        description=(
            "How the numeric signals are computed by the scheduled job, and by DriftReport calls that "
            "do not choose: 'histograms' reads the hourly histograms (token counts exact, timings within "
            "a 1.1% bin; each result's note gives the bounds; about 6x faster than 'exact' over 1M "
            "rows); 'exact' sorts the rows."
        ),
    )

    @field_validator("models", "signals", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return comma_list(value)

    @field_validator("signals")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError(
                f"LLMOPS_MONITORING_DRIFT_SIGNALS is empty: name one or more of {', '.join(ALL_SIGNALS)}"
            )
        unknown = sorted(set(value) - set(ALL_SIGNALS))
        if unknown:
            raise ValueError(
                f"LLMOPS_MONITORING_DRIFT_SIGNALS: unknown signal(s) {', '.join(unknown)}; "
                f"known: {', '.join(ALL_SIGNALS)}"
            )
        return value

    @model_validator(mode="after")
    def _sample_holds_a_verdict(self) -> DriftJobSettings:
        if self.embedding_sample < self.min_count:
            raise ValueError(
                f"LLMOPS_MONITORING_DRIFT_EMBEDDING_SAMPLE ({self.embedding_sample}) must be at least "
                f"LLMOPS_MONITORING_DRIFT_MIN_COUNT ({self.min_count})"
            )
        return self


class PromptEmbedder:
    """The embedding model for prompt_embedding drift: loaded on first need, then kept.

    One per service, shared by DriftReport calls and the scheduled job (the model takes seconds to
    load and about 100 MB; a service that never compares prompts never loads it).

    Embedding is what a drift run spends its time on (measured: 8 s of a run's 8.5 s for two samples
    of 200 prompts on one core), and monitoring's first duty is storing what arrives. So:

    * the model runs in a child process of its own (``process``), whose nice value is raised by
      ``nice``: it shares no interpreter lock with the consumers (measured: embedding in a thread of
      the service, even at nice 19, slowed the consumers' event loop through the lock), and under
      load the consumers and ClickHouse's threads get the CPU first;
    * vectors are kept by the text's digest, up to ``cache_size`` of them (least recently used goes
      first): the samples are the first rows by a hash of the request id, so consecutive runs over a
      sliding window draw mostly the same prompts, and only the new ones are embedded.

    ``process=False`` runs the model in a thread of this process instead (for loaders that cannot
    be sent to another process, such as tests' fakes); the thread's nice value is raised alike.
    """

    def __init__(
        self,
        load: Callable[[], Embed] | None = None,
        *,
        cache_size: int = 20_000,
        nice: int = 10,
        process: bool = True,
    ) -> None:
        self._load = load or _load_minilm
        self.process = process
        self._embed: Embed | None = None  # in this process (process=False)
        self._worker: Executor | None = None
        self._lock = asyncio.Lock()
        self._cache: OrderedDict[bytes, Sequence[float]] = OrderedDict()
        self._cache_lock = threading.Lock()
        self.cache_size = cache_size
        self.nice = nice
        # Counters of texts served from the cache and embedded, since start (logged by the job).
        self.hits = self.misses = 0

    async def get(self) -> Embed:
        async with self._lock:
            if self._worker is None:
                loop = asyncio.get_running_loop()
                if self.process:
                    worker: Executor = ProcessPoolExecutor(
                        max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                        initializer=_start_worker, initargs=(self.nice, os.getpid()),
                    )  # fmt: skip
                    try:
                        pid = await loop.run_in_executor(worker, _load_in_worker, self._load)
                    except BaseException:
                        worker.shutdown(wait=False, cancel_futures=True)
                        raise
                    where = f"process {pid}"
                else:
                    worker = ThreadPoolExecutor(
                        max_workers=1, thread_name_prefix="drift-embed", initializer=_lower_priority,
                        initargs=(self.nice,),
                    )  # fmt: skip
                    self._embed = await loop.run_in_executor(worker, self._load)
                    where = "a thread"
                self._worker = worker
                log.info("loaded the embedding model for prompt drift in %s (nice +%d)", where, self.nice)
        return self._cached

    def close(self) -> None:
        if self._worker is not None:
            self._worker.shutdown(wait=False, cancel_futures=True)

    def _cached(self, texts: Sequence[str]) -> list[Sequence[float]]:
        """Vectors of ``texts``, in order: the cached ones as they are, the others embedded (by the
        worker, waited for) and cached. Called from a reader thread."""
        assert self._worker is not None
        keys = [hashlib.blake2b(t.encode(), digest_size=16).digest() for t in texts]
        found: dict[bytes, Sequence[float]] = {}
        with self._cache_lock:
            for key in keys:
                if key in self._cache:
                    self._cache.move_to_end(key)
                    found[key] = self._cache[key]
        missing = {key: text for key, text in zip(keys, texts, strict=True) if key not in found}
        if missing:
            batch = list(missing.values())
            if self.process:
                vectors = self._worker.submit(_embed_in_worker, batch).result()
            else:
                assert self._embed is not None
                vectors = self._worker.submit(self._embed, batch).result()
            found.update(zip(missing, vectors, strict=True))
            with self._cache_lock:
                for key in missing:
                    self._cache[key] = found[key]
                    self._cache.move_to_end(key)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        with self._cache_lock:
            self.misses += len(missing)
            self.hits += len(texts) - len(missing)
        return [found[key] for key in keys]


def _lower_priority(nice: int) -> None:
    """Raise the calling thread's nice value by ``nice`` (on Linux a thread's priority is its own; in
    the child process, its one worker thread); anywhere it cannot be set, the priority stays."""
    if nice <= 0:
        return
    try:
        os.setpriority(
            os.PRIO_PROCESS, threading.get_native_id(), min(19, os.getpriority(os.PRIO_PROCESS, 0) + nice)
        )
    except (AttributeError, OSError) as exc:
        log.info("drift embeddings keep the process's priority: %s", exc)


# The model, in the embedding child process (PromptEmbedder with process=True): one per process.
_worker_embed: Embed | None = None


def _start_worker(nice: int, parent: int) -> None:
    """In the embedding child process: a lower priority, and an end with the service's, however it
    ends (a killed service leaves no embedding process behind)."""
    _lower_priority(nice)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _load_in_worker(load: Callable[[], Embed]) -> int:
    global _worker_embed  # noqa: PLW0603 - the child process's one model
    _worker_embed = load()
    return os.getpid()


def _embed_in_worker(texts: list[str]) -> list[list[float]]:
    assert _worker_embed is not None, "the embedding model is loaded first"
    return [[float(x) for x in vector] for vector in _worker_embed(texts)]


def _load_minilm() -> Embed:
    import torch

    from llmops.core.embedding import Embedder

    # The embedding model (the only torch user in this process) takes one core, on its own thread.
    torch.set_num_threads(1)
    return Embedder()


def result_rows(report: DriftReport, report_id: str, source: Source, computed_at: dt.datetime) -> list[dict]:
    """Every result of ``report`` as a ``drift_results`` row (see AnalyticsStore.insert_drift_results)."""
    request = report.request
    return [
        {
            "report_id": report_id, "computed_at": computed_at, "source": source, "model": request.model,
            "model_version": r.model_version, "arm": r.arm, "collection": r.collection, "mode": r.mode,
            "signal": r.signal, "statistic": r.statistic, "value": r.value, "p_value": r.p_value,
            "threshold": r.threshold, "alpha": r.alpha, "drifted": r.drifted, "status": r.status,
            "note": r.note, "reference_count": r.reference_count, "current_count": r.current_count,
            "window_start": request.current_start, "window_end": request.current_end,
            "reference_start": request.reference_start, "reference_end": request.reference_end,
        }
        for r in report.results
    ]  # fmt: skip


def drift_events(report: DriftReport, report_id: str) -> list[DriftDetected]:
    """One DriftDetected per drifted result of ``report``."""
    request = report.request
    return [
        copy_fields(
            DriftDetected,
            r,
            model=request.model,
            window_start=request.current_start,
            window_end=request.current_end,
            reference_start=request.reference_start,
            reference_end=request.reference_end,
            report_id=report_id,
        )  # fmt: skip
        for r in report.drifted
    ]


class DriftReporter:
    """Computes drift reports, writes every result and publishes the drifted ones."""

    def __init__(
        self,
        store: AnalyticsStore,
        settings: DriftJobSettings,
        publish: Publish,
        embedder: PromptEmbedder | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self._publish = publish
        self.embedder = embedder or PromptEmbedder()

    def request(
        self,
        model: str,
        reference: tuple[dt.datetime, dt.datetime],
        current: tuple[dt.datetime, dt.datetime],
        signals: Sequence[str] = (),
        reference_scope: Literal["model", "group"] = "model",
        numeric_method: Literal["exact", "histograms"] | None = None,
    ) -> DriftRequest:
        """A DriftRequest with the service's sample sizes; ``signals`` empty: the settings' signals,
        ``numeric_method`` None: the settings' method."""
        s = self.settings
        return DriftRequest(
            model, *reference, *current,
            signals=tuple(signals or s.signals), thresholds=DriftThresholds(min_count=s.min_count),
            reference_scope=reference_scope, embedding_sample=s.embedding_sample, permutations=s.permutations,
            numeric_method=numeric_method or s.numeric_method,
        )  # fmt: skip

    async def report(
        self, request: DriftRequest, *, source: Source, publish: bool
    ) -> tuple[str, DriftReport]:
        """Compute ``request``, write its results and (if ``publish``) announce its drift.

        Returns:
            The report id (in drift_results and on every event) and the report.
        """
        computed_at = dt.datetime.now(dt.UTC)
        embed = await self.embedder.get() if EMBEDDING_SIGNAL in request.signals else None
        report = await self.store.read(lambda client: drift_report(client, request, embed))
        report_id = uuid.uuid4().hex
        # Written before anything is published: an event always has its report in drift_results.
        await self.store.insert_drift_results(result_rows(report, report_id, source, computed_at))
        if publish:
            for event in drift_events(report, report_id):
                await self._publish(event)
        return report_id, report


# Answers only: a model whose every request failed has nothing to compare (the error-rate alert
# covers it), and a report of no results would only add a log line.
_MODELS_WITH_TRAFFIC = """
SELECT model, count() AS answers
FROM inference_log_v
WHERE error = '' AND occurred_at >= {start:DateTime64(3, 'UTC')} AND occurred_at < {end:DateTime64(3, 'UTC')}
    AND (empty({models:Array(String)}) OR has({models:Array(String)}, model))
GROUP BY model
ORDER BY model
"""


class DriftJob:
    """The scheduled drift check: each run compares the last ``window_seconds`` of every model with
    traffic (or of the configured models) with the ``reference_seconds`` before them."""

    def __init__(self, reporter: DriftReporter) -> None:
        self.reporter = reporter
        self.settings = reporter.settings

    async def models_with_traffic(self, start: dt.datetime, end: dt.datetime) -> list[str]:
        """The models (of the configured ones, if any) that answered in [start, end)."""
        parameters: dict[str, Any] = {"start": start, "end": end, "models": list(self.settings.models)}
        rows = await self.reporter.store.read(
            lambda client: client.query(_MODELS_WITH_TRAFFIC, parameters=parameters).result_rows
        )
        return [model for model, _ in rows]

    async def run_once(self, now: dt.datetime | None = None) -> dict[str, DriftReport]:
        """One run over every model; returns the reports by model. A model whose report fails is
        logged and skipped, so one bad model does not keep the others from being checked."""
        s = self.settings
        end = now or dt.datetime.now(dt.UTC)
        start = end - dt.timedelta(seconds=s.window_seconds)
        reference = (start - dt.timedelta(seconds=s.reference_seconds), start)
        models = await self.models_with_traffic(start, end)
        skipped = sorted(set(s.models) - set(models))
        if skipped:
            log.info(
                "drift: no traffic in the last %.0f s for %s; skipped", s.window_seconds, ", ".join(skipped)
            )
        reports = {}
        for model in models:
            try:
                request = self.reporter.request(model, reference, (start, end))
                report_id, report = await self.reporter.report(request, source="schedule", publish=True)
            except Exception:  # noqa: BLE001 - the other models still get their run
                log.warning("drift: the report for model %s failed; next run in %.0f s", model,
                            s.interval_seconds, exc_info=True)  # fmt: skip
                continue
            reports[model] = report
            embedder = self.reporter.embedder
            log.info("drift: model %s, report %s: %d result(s), %d drifted (prompt vectors since start: "
                     "%d embedded, %d from the cache)", model, report_id, len(report.results),
                     len(report.drifted), embedder.misses, embedder.hits)  # fmt: skip
        return reports

    async def scheduled(self) -> None:
        """The job for ``Runtime.every`` (whose first run comes one interval after start, once the bus
        is connected: a run publishes)."""
        await self.run_once()
