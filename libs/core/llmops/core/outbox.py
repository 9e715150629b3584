"""Write, then announce, as one mechanism: the transactional outbox.

A service that stores something and then publishes an event about it writes the event into its own
database, in the transaction of the change (:meth:`Outbox.add`, from a store's write transaction:
:meth:`llmops.core.sql.SqlStore._announce`). A relay publishes the queued events to Kafka in the order
they were written and forgets each one once the broker has acknowledged it. So an event is published
if and only if its change was committed; a broker outage delays events and never drops them, and the
caller whose change was stored gets no error for it.

Delivery is at least once: a relay that dies between the broker's ack and forgetting the event
publishes it again, with the same ``event_id`` (consumers collapse it). Per Kafka key, events leave in
the order they were written: one window of concurrent publishes holds at most one event per key, and
a round stops at the first failure, so a later event never overtakes an earlier one of its key.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
)

from llmops.contracts.events import EVENT_BY_TOPIC, Event
from llmops.core.logging import current_request_id
from llmops.core.metrics import OUTBOX_PENDING, OUTBOX_RELAYED
from llmops.core.retry import short_error
from llmops.core.sql import (
    QUEUED_FLAG,
    UTCDateTime,
    auto_id,
    chunks,
    read_transaction,
    utc_now,
    write_transaction,
)

log = logging.getLogger(__name__)

# How many events the relay publishes at once (distinct keys), and reads per round.
WINDOW = 200
_READ = 1000


def outbox_table(metadata: MetaData, service: str) -> Table:
    """``<service>_outbox`` in ``metadata``: the events ``service`` wrote and has not yet published."""
    return Table(
        f"{service}_outbox",
        metadata,
        # Publication order is id order, so events leave in the order their changes were made.
        auto_id(),
        Column("topic", String(255), nullable=False),
        Column("key", LargeBinary, nullable=False),
        Column("payload", Text, nullable=False),
        Column("created_at", UTCDateTime, nullable=False),
    )


def stamp(event: Event, producer: str) -> Event:
    """``event`` with ``producer`` and, where unset, the current request as its trace."""
    update: dict[str, str] = {}
    if not event.producer:
        update["producer"] = producer
    if not event.trace_id and (request_id := current_request_id()):
        update["trace_id"] = request_id
    return event.model_copy(update=update) if update else event


@dataclass(frozen=True)
class QueuedEvent:
    """An event written with the change it announces, waiting to be published to Kafka."""

    id: int
    topic: str
    key: bytes
    # The event as JSON: its event_id is fixed, so a second publication is collapsed downstream.
    payload: str

    def event(self) -> Event:
        return EVENT_BY_TOPIC[self.topic].model_validate_json(self.payload)


class Outbox:
    """One service's outbox table: queueing in a transaction, and the relay that empties it."""

    def __init__(self, engine: Engine, table: Table, producer: str) -> None:
        self.engine = engine
        self.table = table
        self.producer = producer
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._lock: asyncio.Lock | None = None

    # --- queueing (in the caller's transaction; called from worker threads) ---------------------

    def add(self, conn: Connection, events: Iterable[Event], now: dt.datetime | None = None) -> None:
        """Write ``events`` in ``conn``'s transaction; they are published once it commits."""
        at = utc_now(now)
        rows = []
        for event in events:
            # Stamped when stored, so the outbox holds each event exactly as it will be published.
            event = stamp(event, self.producer)
            rows.append(
                {
                    "topic": event.topic,
                    "key": event.kafka_key(),
                    "payload": event.model_dump_json(),
                    "created_at": at,
                }
            )
        if rows:
            conn.execute(insert(self.table), rows)
            conn.info[QUEUED_FLAG] = True

    def wake(self) -> None:
        """Tell the relay that events were committed (safe from any thread)."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop is closing
                loop.call_soon_threadsafe(wake.set)

    # --- reading and forgetting -----------------------------------------------------------------

    def pending(self, limit: int = _READ) -> list[QueuedEvent]:
        """Events not yet published, oldest first."""
        with read_transaction(self.engine) as conn:
            rows = conn.execute(select(self.table).order_by(self.table.c.id).limit(max(limit, 1)))
            return [QueuedEvent(r.id, r.topic, bytes(r.key), r.payload) for r in rows]

    def count(self) -> int:
        with read_transaction(self.engine) as conn:
            return int(conn.execute(select(func.count()).select_from(self.table)).scalar_one())

    def remove(self, ids: Sequence[int]) -> None:
        """Forget events once Kafka has acknowledged them."""
        if not ids:
            return
        with write_transaction(self.engine) as conn:
            for chunk in chunks(list(ids)):
                conn.execute(delete(self.table).where(self.table.c.id.in_(chunk)))

    # --- the relay --------------------------------------------------------------------------------

    async def publish_pending(self, publish: Callable[[Event], Awaitable[None]]) -> int:
        """Publish queued events in order until none is left or one fails; how many were sent.

        A failure is raised after the events acknowledged before it are forgotten."""
        lock = self._lock or asyncio.Lock()
        self._lock = lock
        sent = 0
        async with lock:
            while True:
                pending = await asyncio.to_thread(self.pending)
                if not pending:
                    OUTBOX_PENDING.labels(self.producer).set(0)
                    return sent
                for window in _windows(pending):
                    results = await asyncio.gather(
                        *(publish(item.event()) for item in window), return_exceptions=True
                    )
                    done = [item.id for item, r in zip(window, results, strict=True) if r is None]
                    # Even when one failed, the acknowledged ones must not go out twice.
                    await asyncio.to_thread(self.remove, done)
                    sent += len(done)
                    OUTBOX_RELAYED.labels(self.producer).inc(len(done))
                    failed = [r for r in results if isinstance(r, BaseException)]
                    if failed:
                        if any(isinstance(r, asyncio.CancelledError) for r in failed):
                            raise asyncio.CancelledError
                        raise failed[0]

    async def relay(
        self,
        publish: Callable[[Event], Awaitable[None]],
        *,
        poll_seconds: float,
        backoff_s: float = 0.2,
        max_backoff_s: float = 5.0,
    ) -> None:
        """Publish what is queued, as soon as a change commits, until cancelled.

        It also looks every ``poll_seconds`` (events written by another process sharing the database,
        or left by an earlier run). While the broker is away it retries with capped exponential
        backoff; what waits is counted in ``llmops_outbox_pending_events``."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        delay = backoff_s
        waiting_since: float | None = None
        while True:
            try:
                sent = await self.publish_pending(publish)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - kept in the outbox and tried again
                waiting = await asyncio.to_thread(self.count)
                OUTBOX_PENDING.labels(self.producer).set(waiting)
                if waiting_since is None:
                    waiting_since = time.monotonic()
                    log.warning("%d queued event(s) wait for Kafka (%s); retrying", waiting, short_error(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, max_backoff_s)
                continue
            if waiting_since is not None:
                log.info(
                    "Kafka is back: queued events published after %.1fs", time.monotonic() - waiting_since
                )
                waiting_since = None
            elif sent:
                log.debug("published %d queued event(s)", sent)
            delay = backoff_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), poll_seconds)
            self._wake.clear()

    async def drain(self, publish: Callable[[Event], Awaitable[None]], timeout: float) -> None:
        """At shutdown, while the bus is still up: publish what the last calls queued, within ``timeout``."""
        try:
            sent = await asyncio.wait_for(self.publish_pending(publish), timeout)
            if sent:
                log.info("published %d queued event(s) before stopping", sent)
        except Exception as exc:  # noqa: BLE001 - stopping anyway; they stay queued
            log.warning("queued events stay in the outbox for the next start (%s)", short_error(exc))


def _windows(pending: list[QueuedEvent]) -> Iterable[list[QueuedEvent]]:
    """``pending`` in id order, cut into windows of at most WINDOW events with distinct keys."""
    window: list[QueuedEvent] = []
    keys: set[tuple[str, bytes]] = set()
    for item in pending:
        key = (item.topic, item.key)
        if key in keys or len(window) >= WINDOW:
            yield window
            window, keys = [], set()
        window.append(item)
        keys.add(key)
    if window:
        yield window
