"""Which events a consumer group has already handled, so a redelivery does no harm.

Kafka delivers at least once: after a crash between handling a message and committing its offset,
the same message comes again. The record of handled events is a table in the service's own
database (``<service>_handled_events``), next to the data it protects:

- a store method that is *the* effect of a handler marks the event in its own write transaction
  (:meth:`llmops.core.sql.SqlStore._mark_handled`), so the change and the mark commit together or
  not at all;
- where a handler marked nothing, the bus marks the event once the handler returned.

Replicas of a service share the database, so the record works across a consumer group: the mark is
the table's primary key (group, event id), and a replica that handles an event another one already
committed loses on that key (:class:`AlreadyHandled`), its transaction is rolled back, and the event
counts as a duplicate. Marks older than the retention window (longer than the topics keep messages,
so no message can come again after its mark is gone) are pruned.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    delete,
    select,
)
from sqlalchemy.exc import IntegrityError

from llmops.core.sql import (
    MARK_FLAG,
    UTCDateTime,
    insert_ignoring_duplicates,
    read_transaction,
    utc_now,
    write_transaction,
)

MAX_GROUP_CHARS = 255
MAX_EVENT_ID_CHARS = 64


def handled_table(metadata: MetaData, service: str) -> Table:
    """``<service>_handled_events`` in ``metadata``."""
    return Table(
        f"{service}_handled_events",
        metadata,
        Column("consumer_group", String(MAX_GROUP_CHARS), nullable=False),
        Column("event_id", String(MAX_EVENT_ID_CHARS), nullable=False),
        Column("handled_at", UTCDateTime, nullable=False, index=True),
        PrimaryKeyConstraint("consumer_group", "event_id"),
    )


class AlreadyHandled(Exception):
    """Another replica (or an earlier delivery) committed this event first; nothing was changed."""


@dataclass
class Delivery:
    """The message a handler is working on (set by the bus around the handler)."""

    group: str
    event_id: str
    marked: bool = False


_CURRENT: ContextVar[Delivery | None] = ContextVar("llmops_delivery", default=None)


@contextlib.contextmanager
def delivering(group: str, event_id: str) -> Iterator[Delivery]:
    """Make ``(group, event_id)`` the delivery in progress for the code run inside (and the worker
    threads it starts with ``asyncio.to_thread``, which copy the context)."""
    delivery = Delivery(group, event_id)
    token = _CURRENT.set(delivery)
    try:
        yield delivery
    finally:
        _CURRENT.reset(token)


def current_delivery() -> Delivery | None:
    return _CURRENT.get()


class HandledEvents:
    """The handled-events table of one service's database."""

    def __init__(self, engine: Engine, table: Table) -> None:
        self.engine = engine
        self.table = table

    def seen(self, group: str, event_id: str) -> bool:
        t = self.table
        with read_transaction(self.engine) as conn:
            row = conn.execute(
                select(t.c.event_id).where(t.c.consumer_group == group, t.c.event_id == event_id)
            ).first()
        return row is not None

    def mark(self, group: str, event_id: str, now: dt.datetime | None = None) -> None:
        """Record the event as handled (after a handler that marked nothing itself)."""
        with write_transaction(self.engine) as conn:
            conn.execute(
                insert_ignoring_duplicates(self.table, conn.dialect.name),
                {"consumer_group": group, "event_id": event_id, "handled_at": utc_now(now)},
            )

    def mark_current(self, conn: Connection, now: dt.datetime | None = None) -> None:
        """Mark the delivery in progress in ``conn``'s transaction (nothing outside a delivery).

        Raises:
            AlreadyHandled: it was already marked; the caller's transaction must not commit.
        """
        delivery = _CURRENT.get()
        if delivery is None or delivery.marked or conn.info.get(MARK_FLAG) is delivery:
            return
        try:
            # A savepoint, so the failed insert does not poison the transaction before it is rolled back.
            with conn.begin_nested():
                conn.execute(
                    self.table.insert().values(
                        consumer_group=delivery.group, event_id=delivery.event_id, handled_at=utc_now(now)
                    )
                )
        except IntegrityError:
            raise AlreadyHandled(
                f"event {delivery.event_id} was already handled by {delivery.group}"
            ) from None
        # Marked for good only when the transaction commits (the store's write does that).
        conn.info[MARK_FLAG] = delivery

    def prune(self, older_than: dt.timedelta, now: dt.datetime | None = None) -> int:
        """Forget marks older than ``older_than``; how many were removed."""
        cutoff = utc_now(now) - older_than
        with write_transaction(self.engine) as conn:
            return conn.execute(delete(self.table).where(self.table.c.handled_at < cutoff)).rowcount or 0
