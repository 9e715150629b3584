"""The analytics store: every event the platform emits in ClickHouse, and read-only SQL over them.

Each consumed event type has a table, its columns and a row function (the event as a row, in column
order), side by side below; :data:`EVENT_TABLES` maps the event type to them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import hashlib
import json
import logging
import threading
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from clickhouse_connect.driver import Client
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from llmops.contracts.events import (
    AlertRaised,
    AnswerJudged,
    DatasetVersionCreated,
    DocumentCleaned,
    DocumentRaw,
    DriftDetected,
    Event,
    FeedbackAccepted,
    FeedbackRejected,
    InferenceLogged,
    IngestionBatchCompleted,
    LabelCreated,
    LoopStepped,
    ModelAliasChanged,
    ModelCanaryChanged,
    ModelVersionRegistered,
    RetrievalLogged,
    TrainingCompleted,
    TrainingFailed,
    TrainingProgress,
    TrainingRequested,
)
from llmops.core.clickhouse import (
    ClickHouseConnectionError,
    QueryLimits,
    QueryResult,
    apply_migrations,
    connect,
    insert_rows,
    kill_query,
    migrations_dir,
    run_read_only_query,
)
from llmops.core.errors import InvalidArgument, Unavailable

T = TypeVar("T")
E = TypeVar("E", bound=Event)
log = logging.getLogger(__name__)

INFERENCE_TABLE = "inference_log"
FEEDBACK_TABLE = "feedback"
INFERENCE_COLUMNS = (
    "event_id", "request_id", "occurred_at", "model", "model_version", "prompt", "completion",
    "prompt_tokens", "completion_tokens", "latency_ms", "time_to_first_token_ms", "finish_reason",
    "streamed", "temperature", "top_p", "max_tokens", "metadata", "trace_id", "producer", "user", "arm",
    "template", "template_version", "retrieval_collection", "citation_chunk_ids", "citation_document_ids",
    "citation_scores", "error",
)  # fmt: skip
FEEDBACK_COLUMNS = (
    "event_id", "feedback_id", "request_id", "occurred_at", "score", "thumb", "comment", "correction",
    "user_id", "metadata", "trace_id", "producer",
)  # fmt: skip


def _utc(value: dt.datetime) -> dt.datetime:
    # A producer may send a naive time; the platform's times are UTC (most already are: kept as is).
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value if value.utcoffset() == _ZERO else value.astimezone(dt.UTC)


_ZERO = dt.timedelta(0)


def inference_row(event: InferenceLogged) -> list[Any]:
    """``event`` as an ``inference_log`` row, in :data:`INFERENCE_COLUMNS` order."""
    return [
        event.event_id, event.request_id, _utc(event.occurred_at), event.model, event.model_version,
        event.prompt, event.completion, event.prompt_tokens, event.completion_tokens, event.latency_ms,
        event.time_to_first_token_ms, event.finish_reason, event.streamed, event.temperature, event.top_p,
        event.max_tokens, dict(event.metadata), event.trace_id, event.producer, event.user, event.arm,
        event.template, event.template_version, event.retrieval_collection,
        [c.chunk_id for c in event.citations], [c.document_id for c in event.citations],
        [c.score for c in event.citations], event.error,
    ]  # fmt: skip


def feedback_row(event: FeedbackAccepted) -> list[Any]:
    """``event`` as a ``feedback`` row, in :data:`FEEDBACK_COLUMNS` order."""
    return [
        event.event_id, event.feedback_id, event.request_id, _utc(event.occurred_at), event.score,
        event.thumb or "", event.comment, event.correction, event.user_id, dict(event.metadata),
        event.trace_id, event.producer,
    ]  # fmt: skip


# The envelope's trace and producer: the last values of each row function below.
_ENVELOPE_COLUMNS = ("trace_id", "producer")


def _envelope(event: Event) -> list[Any]:
    return [event.trace_id, event.producer]


RETRIEVAL_COLUMNS = (
    "event_id", "request_id", "occurred_at", "collection", "mode", "query", "top_k", "document_ids",
    "chunk_ids", "scores", "latency_ms", *_ENVELOPE_COLUMNS,
)  # fmt: skip


def retrieval_row(event: RetrievalLogged) -> list[Any]:
    """``event`` as a ``retrieval_log`` row, in :data:`RETRIEVAL_COLUMNS` order."""
    return [
        event.event_id, event.request_id, _utc(event.occurred_at), event.collection, event.mode, event.query,
        event.top_k, list(event.document_ids), list(event.chunk_ids), list(event.scores), event.latency_ms,
        *_envelope(event),
    ]  # fmt: skip


TRAINING_REQUEST_COLUMNS = (
    "event_id", "request_key", "occurred_at", "base_model", "dataset_version_id", "method", "model_name",
    "hyperparameters", "resources", "reason", *_ENVELOPE_COLUMNS,
)  # fmt: skip


def _as_text(value: object) -> str:
    # Hyperparameters mix numbers, text and lists: text as is, the rest as JSON (2e-4 -> '0.0002').
    return value if isinstance(value, str) else json.dumps(value)


def training_request_row(event: TrainingRequested) -> list[Any]:
    """``event`` as a ``training_requests`` row, in :data:`TRAINING_REQUEST_COLUMNS` order."""
    return [
        event.event_id, event.request_key, _utc(event.occurred_at), event.base_model,
        event.dataset_version_id, event.method, event.model_name,
        {k: _as_text(v) for k, v in event.hyperparameters.items()},
        {k: float(v) for k, v in event.resources.items()}, event.reason, *_envelope(event),
    ]  # fmt: skip


TRAINING_PROGRESS_COLUMNS = (
    "event_id", "job_id", "occurred_at", "step", "total_steps", "epoch", "loss", "learning_rate",
    "tokens_per_second", *_ENVELOPE_COLUMNS,
)  # fmt: skip


def training_progress_row(event: TrainingProgress) -> list[Any]:
    """``event`` as a ``training_progress`` row, in :data:`TRAINING_PROGRESS_COLUMNS` order."""
    return [
        event.event_id, event.job_id, _utc(event.occurred_at), event.step, event.total_steps, event.epoch,
        event.loss, event.learning_rate, event.tokens_per_second, *_envelope(event),
    ]  # fmt: skip


TRAINING_COMPLETED_COLUMNS = (
    "event_id", "job_id", "occurred_at", "model_name", "base_model", "dataset_version_id", "adapter_uri",
    "method", "params", "metrics", *_ENVELOPE_COLUMNS,
)  # fmt: skip


def training_completed_row(event: TrainingCompleted) -> list[Any]:
    """``event`` as a ``training_completed`` row, in :data:`TRAINING_COMPLETED_COLUMNS` order."""
    return [
        event.event_id, event.job_id, _utc(event.occurred_at), event.model_name, event.base_model,
        event.dataset_version_id, event.adapter_uri, event.method, dict(event.params), dict(event.metrics),
        *_envelope(event),
    ]  # fmt: skip


TRAINING_FAILED_COLUMNS = ("event_id", "job_id", "occurred_at", "reason", *_ENVELOPE_COLUMNS)


def training_failed_row(event: TrainingFailed) -> list[Any]:
    """``event`` as a ``training_failed`` row, in :data:`TRAINING_FAILED_COLUMNS` order."""
    return [event.event_id, event.job_id, _utc(event.occurred_at), event.reason, *_envelope(event)]


MODEL_VERSION_COLUMNS = (
    "event_id", "model", "version", "occurred_at", "artifact_uri", "base_model", "metrics",
    *_ENVELOPE_COLUMNS,
)  # fmt: skip


def model_version_row(event: ModelVersionRegistered) -> list[Any]:
    """``event`` as a ``model_versions`` row, in :data:`MODEL_VERSION_COLUMNS` order."""
    return [
        event.event_id, event.model, event.version, _utc(event.occurred_at), event.artifact_uri,
        event.base_model, dict(event.metrics), *_envelope(event),
    ]  # fmt: skip


MODEL_ALIAS_COLUMNS = (
    "event_id", "model", "alias", "occurred_at", "version", "previous_version", "artifact_uri",
    "base_model", "actor", "reason", *_ENVELOPE_COLUMNS,
)  # fmt: skip


def model_alias_row(event: ModelAliasChanged) -> list[Any]:
    """``event`` as a ``model_alias_changes`` row, in :data:`MODEL_ALIAS_COLUMNS` order."""
    return [
        event.event_id, event.model, event.alias, _utc(event.occurred_at), event.version,
        event.previous_version, event.artifact_uri, event.base_model, event.actor, event.reason,
        *_envelope(event),
    ]  # fmt: skip


MODEL_CANARY_COLUMNS = (
    "event_id", "model", "alias", "occurred_at", "challenger_alias", "share", "champion_version",
    "challenger_version", "active", "outcome", "actor", "reason", *_ENVELOPE_COLUMNS,
)  # fmt: skip


def model_canary_row(event: ModelCanaryChanged) -> list[Any]:
    """``event`` as a ``model_canary_changes`` row, in :data:`MODEL_CANARY_COLUMNS` order."""
    return [
        event.event_id, event.model, event.alias, _utc(event.occurred_at), event.challenger_alias,
        event.share, event.champion_version, event.challenger_version, event.active, event.outcome,
        event.actor, event.reason, *_envelope(event),
    ]  # fmt: skip


# Documents are stored without their text (it lives in the ingestion snapshots): its size and a hash.
DOCUMENT_RAW_COLUMNS = (
    "event_id", "document_id", "occurred_at", "dataset", "source", "mime_type", "text_chars", "text_bytes",
    "text_sha256", "metadata", *_ENVELOPE_COLUMNS,
)  # fmt: skip


def document_raw_row(event: DocumentRaw) -> list[Any]:
    """``event`` as a ``documents_raw`` row (no text), in :data:`DOCUMENT_RAW_COLUMNS` order."""
    data = event.text.encode("utf-8", errors="surrogatepass")
    return [
        event.event_id, event.document_id, _utc(event.occurred_at), event.dataset, event.source,
        event.mime_type, len(event.text), len(data), hashlib.sha256(data).hexdigest(), dict(event.metadata),
        *_envelope(event),
    ]  # fmt: skip


DOCUMENT_CLEANED_COLUMNS = (
    "event_id", "document_id", "occurred_at", "dataset", "batch_id", "snapshot_id", "content_hash", "source",
    "text_chars", "text_bytes", "pii_redacted", "metadata", *_ENVELOPE_COLUMNS,
)  # fmt: skip


def document_cleaned_row(event: DocumentCleaned) -> list[Any]:
    """``event`` as a ``documents_cleaned`` row (no text), in :data:`DOCUMENT_CLEANED_COLUMNS` order."""
    return [
        event.event_id, event.document_id, _utc(event.occurred_at), event.dataset, event.batch_id,
        event.snapshot_id, event.content_hash, event.source, len(event.text),
        len(event.text.encode("utf-8", errors="surrogatepass")), dict(event.pii_redacted),
        dict(event.metadata), *_envelope(event),
    ]  # fmt: skip


INGESTION_BATCH_COLUMNS = (
    "event_id", "batch_id", "occurred_at", "dataset", "snapshot_id", "snapshot_uri", "counts",
    *_ENVELOPE_COLUMNS,
)  # fmt: skip


def ingestion_batch_row(event: IngestionBatchCompleted) -> list[Any]:
    """``event`` as an ``ingestion_batches`` row, in :data:`INGESTION_BATCH_COLUMNS` order."""
    return [
        event.event_id, event.batch_id, _utc(event.occurred_at), event.dataset, event.snapshot_id,
        event.snapshot_uri, dict(event.counts), *_envelope(event),
    ]  # fmt: skip


LABEL_COLUMNS = (
    "event_id", "label_id", "task_id", "occurred_at", "queue", "source", "labeler_id", "value",
    "document_id", *_ENVELOPE_COLUMNS,
)  # fmt: skip


def label_row(event: LabelCreated) -> list[Any]:
    """``event`` as a ``labels`` row, in :data:`LABEL_COLUMNS` order."""
    return [
        event.event_id, event.label_id, event.task_id, _utc(event.occurred_at), event.queue, event.source,
        event.labeler_id, event.value, event.document_id, *_envelope(event),
    ]  # fmt: skip


DATASET_VERSION_COLUMNS = (
    "event_id", "version_id", "occurred_at", "dataset", "uri", "train_count", "eval_count", "snapshot_ids",
    "queues", *_ENVELOPE_COLUMNS,
)  # fmt: skip


def dataset_version_row(event: DatasetVersionCreated) -> list[Any]:
    """``event`` as a ``dataset_versions`` row, in :data:`DATASET_VERSION_COLUMNS` order."""
    return [
        event.event_id, event.version_id, _utc(event.occurred_at), event.dataset, event.uri,
        event.train_count, event.eval_count, list(event.snapshot_ids), list(event.queues), *_envelope(event),
    ]  # fmt: skip


FEEDBACK_REJECTED_COLUMNS = (
    "event_id", "request_id", "feedback_id", "occurred_at", "reasons", "submitted_event_id",
    *_ENVELOPE_COLUMNS,
)  # fmt: skip


def feedback_rejected_row(event: FeedbackRejected) -> list[Any]:
    """``event`` as a ``feedback_rejected`` row, in :data:`FEEDBACK_REJECTED_COLUMNS` order."""
    return [
        event.event_id, event.request_id, event.feedback_id, _utc(event.occurred_at), list(event.reasons),
        event.submitted_event_id, *_envelope(event),
    ]  # fmt: skip


DRIFT_COLUMNS = (
    "event_id", "model", "model_version", "arm", "occurred_at", "signal", "statistic", "value",
    "threshold", "p_value", "alpha", "window_start", "window_end", "reference_start", "reference_end",
    "reference_count", "current_count", "collection", "mode", "report_id", *_ENVELOPE_COLUMNS,
)  # fmt: skip


def _utc_or_none(value: dt.datetime | None) -> dt.datetime | None:
    return None if value is None else _utc(value)


def drift_row(event: DriftDetected) -> list[Any]:
    """``event`` as a ``drift_reports`` row, in :data:`DRIFT_COLUMNS` order."""
    return [
        event.event_id, event.model, event.model_version, event.arm, _utc(event.occurred_at), event.signal,
        event.statistic, event.value, event.threshold, event.p_value, event.alpha,
        _utc(event.window_start), _utc(event.window_end), _utc_or_none(event.reference_start),
        _utc_or_none(event.reference_end), event.reference_count, event.current_count, event.collection,
        event.mode, event.report_id, *_envelope(event),
    ]  # fmt: skip


ALERT_COLUMNS = (
    "event_id", "rule", "occurred_at", "severity", "message", "labels", "model", "subject", "query",
    "parameters", "window_start", "window_end", "values", *_ENVELOPE_COLUMNS,
)  # fmt: skip


def alert_row(event: AlertRaised) -> list[Any]:
    """``event`` as an ``alerts`` row, in :data:`ALERT_COLUMNS` order."""
    return [
        event.event_id, event.rule, _utc(event.occurred_at), event.severity, event.message,
        dict(event.labels), event.model, event.subject, event.query, dict(event.parameters),
        _utc_or_none(event.window_start), _utc_or_none(event.window_end), dict(event.values),
        *_envelope(event),
    ]  # fmt: skip


LOOP_STEP_COLUMNS = (
    "event_id", "loop_id", "model", "occurred_at", "step", "reason", "trigger", "dataset_version_id",
    "training_request_key", "training_job_id", "champion_version", "challenger_version", "canary_share",
    "next_step", "actor", "values", "evidence", *_ENVELOPE_COLUMNS,
)  # fmt: skip


def loop_step_row(event: LoopStepped) -> list[Any]:
    """``event`` as a ``loop_steps`` row, in :data:`LOOP_STEP_COLUMNS` order."""
    return [
        event.event_id, event.loop_id, event.model, _utc(event.occurred_at), event.step, event.reason,
        event.trigger, event.dataset_version_id, event.training_request_key, event.training_job_id,
        event.champion_version, event.challenger_version, event.canary_share, event.next_step,
        event.actor, dict(event.values), dict(event.evidence), *_envelope(event),
    ]  # fmt: skip


JUDGE_SCORE_COLUMNS = (
    "event_id", "request_id", "occurred_at", "model", "model_version", "arm", "judge", "prompt_version",
    "score", "rating", "judge_answer", "loop_id", *_ENVELOPE_COLUMNS,
)  # fmt: skip


def judge_score_row(event: AnswerJudged) -> list[Any]:
    """``event`` as a ``judge_scores`` row, in :data:`JUDGE_SCORE_COLUMNS` order."""
    return [
        event.event_id, event.request_id, _utc(event.occurred_at), event.model, event.model_version,
        event.arm, event.judge, event.prompt_version, event.score, event.rating, event.judge_answer,
        event.loop_id, *_envelope(event),
    ]  # fmt: skip


# The tag of the service's own reads (AnalyticsStore.read), which never reaches the engine.
READ_TAG_PREFIX = "llmops-read-"


@dataclass(frozen=True)
class EventTable(Generic[E]):
    """Where one event type is stored: the table, the columns written, and the event as such a row."""

    table: str
    columns: tuple[str, ...]
    row: Callable[[E], list[Any]]


# Every event type monitoring stores. feedback.submitted is not here: the feedback service answers each
# submission with feedback.accepted or feedback.rejected, and those two are stored.
EVENT_TABLES: dict[type[Event], EventTable[Any]] = {
    InferenceLogged: EventTable(INFERENCE_TABLE, INFERENCE_COLUMNS, inference_row),
    FeedbackAccepted: EventTable(FEEDBACK_TABLE, FEEDBACK_COLUMNS, feedback_row),
    FeedbackRejected: EventTable("feedback_rejected", FEEDBACK_REJECTED_COLUMNS, feedback_rejected_row),
    RetrievalLogged: EventTable("retrieval_log", RETRIEVAL_COLUMNS, retrieval_row),
    TrainingRequested: EventTable("training_requests", TRAINING_REQUEST_COLUMNS, training_request_row),
    TrainingProgress: EventTable("training_progress", TRAINING_PROGRESS_COLUMNS, training_progress_row),
    TrainingCompleted: EventTable("training_completed", TRAINING_COMPLETED_COLUMNS, training_completed_row),
    TrainingFailed: EventTable("training_failed", TRAINING_FAILED_COLUMNS, training_failed_row),
    ModelVersionRegistered: EventTable("model_versions", MODEL_VERSION_COLUMNS, model_version_row),
    ModelAliasChanged: EventTable("model_alias_changes", MODEL_ALIAS_COLUMNS, model_alias_row),
    ModelCanaryChanged: EventTable("model_canary_changes", MODEL_CANARY_COLUMNS, model_canary_row),
    DocumentRaw: EventTable("documents_raw", DOCUMENT_RAW_COLUMNS, document_raw_row),
    DocumentCleaned: EventTable("documents_cleaned", DOCUMENT_CLEANED_COLUMNS, document_cleaned_row),
    IngestionBatchCompleted: EventTable("ingestion_batches", INGESTION_BATCH_COLUMNS, ingestion_batch_row),
    LabelCreated: EventTable("labels", LABEL_COLUMNS, label_row),
    DatasetVersionCreated: EventTable("dataset_versions", DATASET_VERSION_COLUMNS, dataset_version_row),
    DriftDetected: EventTable("drift_reports", DRIFT_COLUMNS, drift_row),
    AlertRaised: EventTable("alerts", ALERT_COLUMNS, alert_row),
    LoopStepped: EventTable("loop_steps", LOOP_STEP_COLUMNS, loop_step_row),
    AnswerJudged: EventTable("judge_scores", JUDGE_SCORE_COLUMNS, judge_score_row),
}


class AnalyticsStore:
    """ClickHouse for the monitoring service, driven from asyncio through worker threads.

    The clickhouse-connect client is synchronous (and chdb has no async client), so calls run in
    threads, each client in one thread only. Writes go through one writer thread, in order; reads
    through a pool of reader threads with a client each, so an analyst's long query never holds up
    the consumers' inserts or another reader. Readers only ever run read-only queries: no session
    state an analyst's query might leave behind can reach the writer. Each query runs within
    ``limits`` and with a tag; a caller that goes away (a cancelled RPC) has its query stopped in
    the engine, not only abandoned here.
    """

    def __init__(
        self,
        dsn: str,
        migrations: Path | None = None,
        *,
        limits: QueryLimits | None = None,
        readers: int = 4,
    ) -> None:
        """Args:
        dsn: ``chdb:///abs/folder`` or ``http(s)://user:password@host:8123/database``.
        migrations: the migrations folder; by default the repository's deploy/clickhouse/migrations.
        limits: what one query may cost (default: :class:`QueryLimits` ()).
        readers: queries that run at the same time; more wait for a free reader.
        """
        self._dsn = dsn
        self._migrations = migrations
        self._limits = limits or QueryLimits()
        self._writes = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse-write")
        self._reads = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="clickhouse-read")
        self._lock = threading.Lock()  # guards the client bookkeeping below, across the threads
        self._writer: Client | None = None
        self._readers: dict[int, Client] = {}  # by reader thread id
        self._busy: set[int] = set()  # reader threads running a query now
        self._stale: set[int] = set()  # busy readers to close when their query ends (disconnect)
        self._running: set[str] = set()  # tags of queries a reader thread runs now
        self._abandoned: set[str] = set()  # tags whose caller went away after a reader took them
        self._background: set[asyncio.Task[None]] = set()
        self._opened = False
        self._closed = False

    async def _on(self, executor: ThreadPoolExecutor, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise RuntimeError("AnalyticsStore is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, functools.partial(fn, *args))

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("AnalyticsStore is closed")
        if not self._opened:
            raise RuntimeError("AnalyticsStore.open() must be awaited before it is used")

    def _write(self, fn: Callable[..., T], *args: Any) -> T:
        """In the writer thread: ``fn(writer, *args)``; after a dropped connection, connect again."""
        self._check_open()
        if self._writer is None:
            self._open()
            log.info("connected to ClickHouse again")
        assert self._writer is not None
        try:
            return fn(self._writer, *args)
        except (OperationalError, ClickHouseConnectionError):
            # The connection (or the engine) went away: connect again on the next call.
            self._drop_writer()
            raise

    def _read(self, tag: str, fn: Callable[..., T], *args: Any) -> T:
        """In a reader thread: ``fn(this thread's reader, *args, tag=tag)``, unless its caller left."""
        self._check_open()
        with self._lock:
            if tag in self._abandoned:
                raise RuntimeError(f"the caller of query {tag} went away before it started")
            self._running.add(tag)
        me = threading.get_ident()
        try:
            with self._lock:
                self._busy.add(me)
                client = self._readers.get(me)
            if client is None:
                client = connect(self._dsn)
                with self._lock:
                    self._readers[me] = client
            try:
                return fn(client, *args, tag=tag)
            except Exception:
                # A connection that went away, or a session a failed query left its settings on
                # (chdb keeps a refused query's readonly=1, so the next query could not set its
                # limits): this thread connects afresh next time.
                self._stale.add(me)
                raise
        finally:
            with self._lock:
                self._running.discard(tag)
                self._abandoned.discard(tag)
                self._busy.discard(me)
                stale = me in self._stale
                self._stale.discard(me)
            if stale:
                self._drop_reader(me)

    def _drop_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _drop_reader(self, thread_id: int) -> None:
        with self._lock:
            client = self._readers.pop(thread_id, None)
        if client is not None:
            client.close()

    def _drop_idle_readers(self) -> None:
        """Close the readers no query is using now; a busy one is closed by its own thread when its
        query ends (a client is only ever used, and closed, by one thread at a time)."""
        with self._lock:
            idle = [tid for tid in self._readers if tid not in self._busy]
            clients = [self._readers.pop(tid) for tid in idle]
            self._stale.update(self._busy)
        for client in clients:
            client.close()

    async def disconnect(self) -> None:
        """Drop the connections (the engine's folder is released); the next call connects again."""
        await self._on(self._writes, self._drop_writer)
        self._drop_idle_readers()

    async def open(self) -> list[str]:
        """Connect and apply pending migrations; returns the migrations applied now."""
        if self._closed:
            raise RuntimeError("AnalyticsStore is closed")
        applied = await self._on(self._writes, self._open)
        self._opened = True
        return applied

    def _open(self) -> list[str]:
        if self._writer is not None:
            return []
        writer = connect(self._dsn)
        try:
            applied = apply_migrations(writer, migrations_dir(self._migrations))
        except BaseException:
            writer.close()
            raise
        self._writer = writer
        return applied

    async def insert(self, event_type: type[E], events: Sequence[E]) -> int:
        """Store ``events`` in ``event_type``'s table (see :data:`EVENT_TABLES`); returns rows written.

        Redelivered events collapse (every table is a ReplacingMergeTree keyed on the event).
        """
        if not events:
            return 0
        target = EVENT_TABLES[event_type]
        rows = [target.row(e) for e in events]
        return await self._on(self._writes, self._write, insert_rows, target.table, target.columns, rows)

    def writer(self, event_type: type[E]) -> Callable[[Sequence[E]], Awaitable[int]]:
        """A batch handler that stores events of ``event_type`` (for ``bus.consume_batches``)."""
        if event_type not in EVENT_TABLES:
            raise KeyError(f"{event_type.__name__} has no ClickHouse table; add it to EVENT_TABLES")
        return functools.partial(self.insert, event_type)

    async def insert_inference(self, events: Sequence[InferenceLogged]) -> int:
        """Store ``events`` in ``inference_log``; returns rows written. Redelivered events collapse."""
        return await self.insert(InferenceLogged, events)

    async def insert_feedback(self, events: Sequence[FeedbackAccepted]) -> int:
        """Store ``events`` in ``feedback``; returns rows written. Redelivered events collapse."""
        return await self.insert(FeedbackAccepted, events)

    async def query(
        self, sql: str, parameters: Mapping[str, str] | None = None, max_rows: int = 1000
    ) -> QueryResult:
        """Run one read-only statement within the store's limits (see
        :func:`llmops.core.clickhouse.run_read_only_query`). Cancelling the call stops the query."""
        tag = f"llmops-query-{uuid.uuid4().hex}"
        limits = self._limits

        def run(client: Client, *, tag: str) -> QueryResult:
            return run_read_only_query(client, sql, dict(parameters or {}), max_rows, limits=limits, tag=tag)

        return await self._await_read(tag, run)

    async def read(self, fn: Callable[[Client], T]) -> T:
        """``fn(client)`` in a reader thread, with query()'s error mapping; for the service's own
        reads (drift, alerts, the loop), which pass their statements to ``client`` themselves.

        A cancelled call is not stopped in the engine (its statements carry no tag, so no KILL is
        sent for it), and an engine error is the service's own fault, not the caller's: it is raised
        as such, never as INVALID_ARGUMENT.
        """
        tag = f"{READ_TAG_PREFIX}{uuid.uuid4().hex}"
        return await self._await_read(tag, lambda client, *, tag: fn(client), callers_sql=False)

    async def _await_read(self, tag: str, run: Callable[..., T], *, callers_sql: bool = True) -> T:
        if self._closed:
            raise RuntimeError("AnalyticsStore is closed")
        job = self._reads.submit(self._read, tag, run)
        try:
            return await asyncio.wrap_future(job)
        except asyncio.CancelledError:
            # A reader took it (cancelled ones never run): stop it there, when it carries the tag.
            if callers_sql and not job.cancelled():
                with self._lock:
                    self._abandoned.add(tag)
                task = asyncio.get_running_loop().create_task(self._stop(tag))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
            raise
        except (OperationalError, ClickHouseConnectionError) as exc:
            raise Unavailable(f"ClickHouse is unavailable; retry shortly ({exc})") from exc
        except DatabaseError as exc:
            if not callers_sql:
                raise  # the service's own statement failed: an internal error, logged by the caller
            if "(QUERY_WAS_CANCELLED)" in str(exc):
                raise Unavailable(
                    "the query was stopped in ClickHouse (the service is shutting down, or an operator"
                    " killed it); retry"
                ) from exc
            # Bad SQL, unknown tables or columns: the engine's own first line says what is wrong.
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InvalidArgument(f"query failed: {message}") from exc

    async def _stop(self, tag: str, attempts: int = 50) -> None:
        """Stop query ``tag`` in the engine, from the writer's connection. A query a reader has just
        taken may not be in the engine's process list yet: look again for a few seconds."""
        for _ in range(attempts):
            with self._lock:
                if tag not in self._running:
                    return  # ended, or refused by _read before it began
            try:
                stopped = await self._on(self._writes, self._write, kill_query, tag)
            except Exception:  # noqa: BLE001 - it still ends at its time limit
                log.warning("could not stop query %s; it ends at its time limit", tag, exc_info=True)
                return
            if stopped:
                log.info("stopped the query of a caller that went away (%s)", tag)
                return
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        """Stop running queries, close every client and the threads; the store cannot be reopened."""
        if self._closed:
            return
        with self._lock:
            # Only callers' queries carry their tag into the engine; the service's own reads end
            # on their own (the periodic jobs stop before the store closes).
            running = [tag for tag in self._running if not tag.startswith(READ_TAG_PREFIX)]
        for tag in running:
            await self._stop(tag)
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        # New calls are refused from here on; calls already queued run first.
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._writes, self._drop_writer)
        self._writes.shutdown(wait=True)
        self._reads.shutdown(wait=True)
        self._drop_idle_readers()

    # drift_results is written by monitoring itself (no event): every result of every drift run.
    DRIFT_RESULT_COLUMNS = (
        "report_id", "computed_at", "source", "model", "model_version", "arm", "collection", "mode",
        "signal", "statistic", "value", "p_value", "threshold", "alpha", "drifted", "status", "note",
        "reference_count", "current_count", "window_start", "window_end", "reference_start",
        "reference_end",
    )  # fmt: skip

    async def insert_drift_results(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Store drift results (dicts with every :attr:`DRIFT_RESULT_COLUMNS` key) in ``drift_results``,
        on the writer thread; returns rows written."""
        if not rows:
            return 0
        columns = self.DRIFT_RESULT_COLUMNS
        values = [[row[c] for c in columns] for row in rows]
        return await self._on(self._writes, self._write, insert_rows, "drift_results", columns, values)
