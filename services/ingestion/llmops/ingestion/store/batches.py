"""Batch records and the exact-dedup memory, in SQL (SQLite by default, PostgreSQL by URL).

The schema is managed by Alembic (``migrations/``), applied when the store opens.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import JSON, Column, MetaData, String, Table, insert, select, update

from llmops.contracts.events import Event
from llmops.core.handled_events import handled_table
from llmops.core.outbox import outbox_table
from llmops.core.sql import SqlStore, UTCDateTime, insert_ignoring_duplicates, utc_now, values_of

metadata = MetaData()

batches = Table(
    "ingestion_batches",
    metadata,
    Column("batch_id", String(64), primary_key=True),
    Column("dataset", String(200), nullable=False, index=True),
    Column("state", String(16), nullable=False),
    Column("source_description", String(1000), nullable=False, default=""),
    Column("metadata", JSON, nullable=False, default=dict),
    Column("counts", JSON, nullable=False, default=dict),
    Column("errors", JSON, nullable=False, default=list),
    Column("snapshot_id", String(80), nullable=False, default=""),
    Column("snapshot_uri", String(1000), nullable=False, default=""),
    Column("created_at", UTCDateTime, nullable=False),
    Column("completed_at", UTCDateTime, nullable=True),
)

seen_hashes = Table(
    "ingestion_seen_hashes",
    metadata,
    Column("content_hash", String(64), primary_key=True),
    Column("document_id", String(500), nullable=False),
    Column("batch_id", String(64), nullable=False),
)

# Events written with the changes they announce, and the events this service's consumers handled.
outbox_t = outbox_table(metadata, "ingestion")
handled_t = handled_table(metadata, "ingestion")

RECEIVING, PROCESSING, SUCCEEDED, FAILED = "RECEIVING", "PROCESSING", "SUCCEEDED", "FAILED"
MAX_STORED_ERRORS = 1000


@dataclass
class BatchRecord:
    batch_id: str
    dataset: str
    state: str
    source_description: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    counts: dict = field(default_factory=dict)
    errors: list[dict] = field(default_factory=list)
    snapshot_id: str = ""
    snapshot_uri: str = ""
    created_at: datetime = field(default_factory=utc_now)
    completed_at: datetime | None = None


class BatchStore(SqlStore):
    """Ingestion batches and the content hashes of every document kept so far."""

    metadata = metadata
    migrations = Path(__file__).parent / "migrations"
    service = "ingestion"

    def create(self, record: BatchRecord) -> None:
        with self._write() as conn:
            conn.execute(insert(batches).values(values_of(batches, record)))

    def finish(
        self,
        record: BatchRecord,
        *,
        hashes: Iterable[tuple[str, str, str]] = (),
        announce: Sequence[Event] = (),
    ) -> None:
        """Store the batch's outcome; with it, in one transaction, remember (content_hash,
        document_id, batch_id) of its kept documents (a known hash is left as is) and queue its events
        (the outbox)."""
        values = [{"content_hash": h, "document_id": d, "batch_id": b} for h, d, b in hashes]
        with self._write() as conn:
            conn.execute(
                update(batches)
                .where(batches.c.batch_id == record.batch_id)
                .values(
                    state=record.state,
                    counts=record.counts,
                    errors=record.errors[:MAX_STORED_ERRORS],
                    snapshot_id=record.snapshot_id,
                    snapshot_uri=record.snapshot_uri,
                    completed_at=record.completed_at,
                )
            )
            if values:
                conn.execute(insert_ignoring_duplicates(seen_hashes, conn.dialect.name), values)
            self._announce(conn, *announce)

    def get(self, batch_id: str) -> BatchRecord | None:
        with self._read() as conn:
            row = conn.execute(select(batches).where(batches.c.batch_id == batch_id)).mappings().first()
        return None if row is None else BatchRecord(**row)

    def load_hashes(self) -> set[str]:
        with self._read() as conn:
            return {row[0] for row in conn.execute(select(seen_hashes.c.content_hash))}
