"""The event outbox: events written in the transaction of the change they announce, until published."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import Connection, delete, insert, select

from llmops.contracts.events import Event
from llmops.core.sql import SqlStore, chunks
from llmops.registry.store.base import OutboxEvent
from llmops.registry.store.tables import outbox_t


def queue_event(conn: Connection, event: Event, producer: str, now: dt.datetime) -> None:
    """Write ``event`` to the outbox in ``conn``'s transaction, with ``producer`` where it names none."""
    # Stamped when stored, so the outbox holds each event exactly as it will be published.
    if not event.producer:
        event = event.model_copy(update={"producer": producer})
    conn.execute(
        insert(outbox_t).values(
            topic=event.topic, key=event.kafka_key(), payload=event.model_dump_json(), created_at=now
        )
    )


class SqlOutbox(SqlStore):
    """Reading and forgetting queued events (the relay is :meth:`Registry.publish_pending`)."""

    def pending_events(self, limit: int = 100) -> list[OutboxEvent]:
        with self._read() as conn:
            rows = conn.execute(select(outbox_t).order_by(outbox_t.c.id).limit(max(limit, 1)))
            return [OutboxEvent(r.id, r.topic, bytes(r.key), r.payload) for r in rows]

    def remove_events(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        with self._write() as conn:
            for chunk in chunks(list(ids)):
                conn.execute(delete(outbox_t).where(outbox_t.c.id.in_(chunk)))
