"""The kernel's delivery tables on a real SQLite store: events leave with their change and in order,
a broker outage delays them, and the handled mark commits with the change it protects, also when
two replicas race for one event."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Column, MetaData, String, Table, func, insert, select

from llmops.contracts.events import Event, FeedbackSubmitted
from llmops.core.handled_events import AlreadyHandled, delivering, handled_table
from llmops.core.outbox import outbox_table
from llmops.core.sql import SqlStore

metadata = MetaData()
notes_t = Table("notes_notes", metadata, Column("name", String(50), primary_key=True))
outbox_table(metadata, "notes")
handled_table(metadata, "notes")


class NotesStore(SqlStore):
    metadata = metadata
    migrations: Path  # set by the fixture: an empty revision folder (a new database is its tables)
    service = "notes"

    def add(self, name: str, *events: Event, fail_after: bool = False) -> None:
        with self._write() as conn:
            conn.execute(insert(notes_t).values(name=name))
            self._mark_handled(conn)
            self._announce(conn, *events)
            if fail_after:
                raise RuntimeError("the change failed after queueing")

    def names(self) -> list[str]:
        with self._read() as conn:
            return sorted(r.name for r in conn.execute(select(notes_t)))

    def count_notes(self) -> int:
        with self._read() as conn:
            return int(conn.execute(select(func.count()).select_from(notes_t)).scalar_one())


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "migrations" / "versions").mkdir(parents=True)
    monkeypatch.setattr(NotesStore, "migrations", tmp_path / "migrations", raising=False)
    return f"sqlite:///{tmp_path / 'notes.sqlite'}"


@pytest.fixture
def store(url: str) -> Iterator[NotesStore]:
    with NotesStore(url) as s:
        yield s


def _event(request_id: str) -> FeedbackSubmitted:
    # Keyed by request_id: events of one request must leave in order.
    return FeedbackSubmitted(request_id=request_id, thumb="up")


class FlakyBroker:
    """A publish function that fails while ``down``, and once for each event id in ``fail_once``."""

    def __init__(self, fail_once: set[str] | None = None) -> None:
        self.published: list[Event] = []
        self.fail_once = fail_once or set()
        self.down = False

    async def __call__(self, event: Event) -> None:
        await asyncio.sleep(0)
        if self.down or str(event.event_id) in self.fail_once:
            self.fail_once.discard(str(event.event_id))
            raise ConnectionError("broker unreachable")
        self.published.append(event)


async def _until_empty(store: NotesStore) -> None:
    for _ in range(250):
        if not store.outbox.pending():  # type: ignore[union-attr]
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the relay did not empty the outbox within 5 s")


def test_an_event_is_queued_only_with_a_committed_change(store: NotesStore) -> None:
    with pytest.raises(RuntimeError):
        store.add("lost", _event("r1"), fail_after=True)
    assert store.names() == [] and store.outbox.pending() == []  # type: ignore[union-attr]
    store.add("kept", _event("r2"))
    (queued,) = store.outbox.pending()  # type: ignore[union-attr]
    event = queued.event()
    assert isinstance(event, FeedbackSubmitted) and event.request_id == "r2" and event.producer == "notes"


async def test_the_relay_waits_out_an_outage_and_keeps_each_keys_order(store: NotesStore) -> None:
    outbox = store.outbox
    assert outbox is not None
    first, second, third, other = _event("a"), _event("a"), _event("a"), _event("b")
    store.add("n1", first, second, third, other)
    # The second event of key "a" fails once: the third must not overtake it; "b" is not held up.
    broker = FlakyBroker(fail_once={str(second.event_id)})
    relay = asyncio.create_task(outbox.relay(broker, poll_seconds=0.05, backoff_s=0.01, max_backoff_s=0.05))
    try:
        await _until_empty(store)
        ids = [str(e.event_id) for e in broker.published]
        assert sorted(ids) == sorted(str(e.event_id) for e in (first, second, third, other))
        of_a = [str(e.event_id) for e in (first, second, third)]
        assert [i for i in ids if i in of_a] == of_a

        # A full outage: events committed meanwhile wait, and all leave once it is over.
        broker.down = True
        for i in range(5):
            store.add(f"during-{i}", _event(f"o{i}"))
        await asyncio.sleep(0.3)
        assert len(outbox.pending()) == 5
        broker.down = False
        await _until_empty(store)
        assert [e.request_id for e in broker.published[4:]] == [f"o{i}" for i in range(5)]  # type: ignore[attr-defined]
    finally:
        relay.cancel()
        with pytest.raises(asyncio.CancelledError):
            await relay


def test_the_handled_mark_commits_with_the_change_and_a_second_replica_loses(url: str) -> None:
    with NotesStore(url) as one, NotesStore(url) as two:
        with delivering("group", "event-1") as delivery:
            with pytest.raises(RuntimeError):
                one.add("failed", fail_after=True)
            # Rolled back with the change: not marked, so the retry does the work.
            assert not delivery.marked and not one.handled.seen("group", "event-1")  # type: ignore[union-attr]
            one.add("done", _event("r"))
            assert delivery.marked
        # The other replica got the same event (a rebalance): it changes nothing and queues nothing.
        with delivering("group", "event-1"), pytest.raises(AlreadyHandled):
            two.add("twice", _event("r"))
        assert one.names() == ["done"] and len(one.outbox.pending()) == 1  # type: ignore[union-attr]
        assert two.handled.seen("group", "event-1") and not two.handled.seen("other", "event-1")  # type: ignore[union-attr]
        # Outside a delivery (a gRPC call) nothing is marked.
        one.add("call")
        assert one.count_notes() == 2


def test_marks_past_the_retention_window_are_pruned(store: NotesStore) -> None:
    handled = store.handled
    assert handled is not None
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    handled.mark("g", "old", now=now - dt.timedelta(days=20))
    handled.mark("g", "new", now=now - dt.timedelta(days=1))
    handled.mark("g", "new", now=now)  # marking twice is harmless
    assert handled.prune(dt.timedelta(days=14), now=now) == 1
    assert not handled.seen("g", "old") and handled.seen("g", "new")
