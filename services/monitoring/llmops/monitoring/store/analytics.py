"""The analytics store: inference logs and feedback in ClickHouse, and read-only SQL over them."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from clickhouse_connect.driver import Client
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from llmops.contracts.events import FeedbackAccepted, InferenceLogged
from llmops.core.clickhouse import (
    ClickHouseConnectionError,
    QueryResult,
    apply_migrations,
    connect,
    insert_rows,
    migrations_dir,
    run_read_only_query,
)
from llmops.core.errors import InvalidArgument, Unavailable

T = TypeVar("T")
log = logging.getLogger(__name__)

INFERENCE_TABLE = "inference_log"
FEEDBACK_TABLE = "feedback"
INFERENCE_COLUMNS = (
    "event_id", "request_id", "occurred_at", "model", "model_version", "prompt", "completion",
    "prompt_tokens", "completion_tokens", "latency_ms", "time_to_first_token_ms", "finish_reason",
    "streamed", "temperature", "top_p", "max_tokens", "metadata", "trace_id", "producer", "user", "arm",
    "template", "template_version", "retrieval_collection", "citation_chunk_ids", "citation_document_ids",
    "citation_scores",
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
        [c.score for c in event.citations],
    ]  # fmt: skip


def feedback_row(event: FeedbackAccepted) -> list[Any]:
    """``event`` as a ``feedback`` row, in :data:`FEEDBACK_COLUMNS` order."""
    return [
        event.event_id, event.feedback_id, event.request_id, _utc(event.occurred_at), event.score,
        event.thumb or "", event.comment, event.correction, event.user_id, dict(event.metadata),
        event.trace_id, event.producer,
    ]  # fmt: skip


class AnalyticsStore:
    """ClickHouse for the monitoring service, driven from asyncio through one worker thread.

    chdb has no async client and wants one thread at a time, so every ClickHouse call goes through a
    single-worker executor (in order). Writes and reads use two clients: the reader only ever runs
    read-only queries, so no session state an analyst's query might leave behind can reach ingestion.
    """

    def __init__(self, dsn: str, migrations: Path | None = None) -> None:
        """Args:
        dsn: ``chdb:///abs/folder`` or ``http(s)://user:password@host:8123/database``.
        migrations: the migrations folder; by default the repository's deploy/clickhouse/migrations.
        """
        self._dsn = dsn
        self._migrations = migrations
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")
        self._writer: Client | None = None
        self._reader: Client | None = None
        self._opened = False
        self._closed = False

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    async def _use(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` in the worker thread, refused at once when the store is closed."""
        if self._closed:
            raise RuntimeError("AnalyticsStore is closed")
        return await self._call(fn, *args)

    def _clients(self) -> tuple[Client, Client]:
        """The connected clients (in the worker thread); after a dropped connection, connect again.

        Raises:
            ClickHouseConnectionError: ClickHouse cannot be reached (the caller retries later).
        """
        if self._closed:
            raise RuntimeError("AnalyticsStore is closed")
        if not self._opened:
            raise RuntimeError("AnalyticsStore.open() must be awaited before it is used")
        if self._writer is None or self._reader is None:
            self._open()
            log.info("connected to ClickHouse again")
        assert self._writer is not None and self._reader is not None
        return self._writer, self._reader

    def _with_writer(self, fn: Callable[..., T], *args: Any) -> T:
        return self._with_client(0, fn, *args)

    def _with_reader(self, fn: Callable[..., T], *args: Any) -> T:
        return self._with_client(1, fn, *args)

    def _with_client(self, which: int, fn: Callable[..., T], *args: Any) -> T:
        client = self._clients()[which]
        try:
            return fn(client, *args)
        except (OperationalError, ClickHouseConnectionError):
            # The connection (or the engine) went away: connect again on the next call.
            self._close_clients()
            raise

    async def disconnect(self) -> None:
        """Drop the connections (the engine's folder is released); the next call connects again."""
        await self._call(self._close_clients)

    async def open(self) -> list[str]:
        """Connect and apply pending migrations; returns the migrations applied now."""
        if self._closed:
            raise RuntimeError("AnalyticsStore is closed")
        applied = await self._call(self._open)
        self._opened = True
        return applied

    def _open(self) -> list[str]:
        if self._writer is not None:
            return []
        folder = migrations_dir(self._migrations)
        writer = connect(self._dsn)
        try:
            applied = apply_migrations(writer, folder)
            reader = connect(self._dsn)
        except BaseException:
            writer.close()
            raise
        self._writer, self._reader = writer, reader
        return applied

    async def insert_inference(self, events: Sequence[InferenceLogged]) -> int:
        """Store ``events`` in ``inference_log``; returns rows written. Redelivered events collapse."""
        if not events:
            return 0
        rows = [inference_row(e) for e in events]
        return await self._use(self._with_writer, insert_rows, INFERENCE_TABLE, INFERENCE_COLUMNS, rows)

    async def insert_feedback(self, events: Sequence[FeedbackAccepted]) -> int:
        """Store ``events`` in ``feedback``; returns rows written. Redelivered events collapse."""
        if not events:
            return 0
        rows = [feedback_row(e) for e in events]
        return await self._use(self._with_writer, insert_rows, FEEDBACK_TABLE, FEEDBACK_COLUMNS, rows)

    async def query(
        self, sql: str, parameters: Mapping[str, str] | None = None, max_rows: int = 1000
    ) -> QueryResult:
        """Run one read-only statement (see :func:`llmops.core.clickhouse.run_read_only_query`)."""
        try:
            return await self._use(
                self._with_reader, run_read_only_query, sql, dict(parameters or {}), max_rows
            )
        except (OperationalError, ClickHouseConnectionError) as exc:
            raise Unavailable(f"ClickHouse is unavailable; retry shortly ({exc})") from exc
        except DatabaseError as exc:
            # Bad SQL, unknown tables or columns: the engine's own first line says what is wrong.
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InvalidArgument(f"query failed: {message}") from exc

    async def close(self) -> None:
        """Close both clients and the worker thread; the store cannot be reopened."""
        if self._closed:
            return
        # New calls are refused from here on; calls already queued run first, since the single
        # worker takes them in order, so the shutdown below does not wait.
        self._closed = True
        await self._call(self._close_clients)
        self._executor.shutdown(wait=True)

    def _close_clients(self) -> None:
        for client in (self._reader, self._writer):
            if client is not None:
                client.close()
        self._writer = self._reader = None
