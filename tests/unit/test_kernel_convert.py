"""The kernel's conversions (messages, records, enums by name) and keyset paging over a real SQLite."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

import pytest
from sqlalchemy import Column, MetaData, String, Table, insert, select

from llmops.contracts.rpc.labeling.v1 import labeling_pb2 as pb
from llmops.core.convert import EnumMap, copy_fields, datetime_of, message, timestamp
from llmops.core.errors import InvalidArgument
from llmops.core.sql import auto_id, keyset_page, make_engine

WHEN = dt.datetime(2026, 12, 2, 9, 30, 15, 250000, tzinfo=dt.UTC)


class TaskState(enum.StrEnum):
    OPEN = "open"
    LEASED = "leased"
    COMPLETED = "completed"
    SKIPPED = "skipped"


class TaskType(enum.StrEnum):
    CLASSIFICATION = "classification"
    RATING = "rating"
    CORRECTION = "correction"
    PAIRWISE_PREFERENCE = "pairwise_preference"


@dataclass(frozen=True)
class Queue:
    name: str
    task_type: TaskType
    label_set: tuple[str, ...]
    labelers_per_task: int
    created_at: dt.datetime
    metadata: dict[str, str]


def test_a_record_becomes_its_message_field_by_field() -> None:
    queue = Queue("q", TaskType.PAIRWISE_PREFERENCE, ("a", "b"), 2, WHEN, {"lang": "en"})
    out = message(pb.Queue, queue, open_tasks=7)
    assert out.name == "q" and list(out.label_set) == ["a", "b"] and out.labelers_per_task == 2
    assert out.task_type == pb.TASK_TYPE_PAIRWISE_PREFERENCE
    assert out.created_at.ToDatetime(tzinfo=dt.UTC) == WHEN
    assert dict(out.metadata) == {"lang": "en"}
    assert out.open_tasks == 7
    # A None leaves the field unset, so presence says "not given".
    assert not message(pb.Queue, queue, created_at=None).HasField("created_at")
    with pytest.raises(TypeError, match="no field 'tasks'"):
        message(pb.Queue, queue, tasks=3)


def test_a_message_becomes_a_record_and_the_enum_must_be_said() -> None:
    queue = Queue("q", TaskType.RATING, ("a",), 2, WHEN, {"a": "b"})
    out = message(pb.Queue, queue)
    with pytest.raises(TypeError, match="task_type needs converting"):
        copy_fields(Queue, out)
    types = EnumMap(pb.TaskType, TaskType)
    back = copy_fields(
        Queue,
        out,
        task_type=types.require(out.task_type, "task_type"),
        created_at=datetime_of(out, "created_at"),
    )
    assert back == queue
    assert type(back.metadata) is dict and type(back.label_set) is tuple


def test_an_enum_map_refuses_what_it_does_not_know() -> None:
    states = EnumMap(pb.TaskState, TaskState)
    assert [states.to_pb(s) for s in TaskState] == [1, 2, 3, 4]
    assert states.from_pb(0, "state") is None
    with pytest.raises(InvalidArgument, match="state 42 is not a known TaskState"):
        states.from_pb(42, "state")
    with pytest.raises(InvalidArgument, match="state is required"):
        states.require(0, "state")

    class Extra(enum.StrEnum):
        OPEN = "open"
        ARCHIVED = "archived"

    with pytest.raises(TypeError, match="TASK_STATE_ARCHIVED"):
        EnumMap(pb.TaskState, Extra)


def test_timestamps_from_datetimes_and_epoch_seconds() -> None:
    assert timestamp(None) is None
    assert timestamp(WHEN).ToDatetime(tzinfo=dt.UTC) == WHEN
    assert timestamp(WHEN.timestamp()).ToDatetime(tzinfo=dt.UTC) == WHEN


def test_keyset_pages_cover_every_row_once_in_order_while_rows_are_added() -> None:
    metadata = MetaData()
    items = Table("items", metadata, auto_id(), Column("name", String(20), nullable=False))
    engine = make_engine("sqlite://")
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(items), [{"name": f"n{i:03d}"} for i in range(25)])

    def walk(key, descending: bool, added: str) -> list[str]:  # noqa: ANN001
        seen, token = [], ""
        while True:
            with engine.begin() as conn:
                page = keyset_page(conn, select(items), key, 10, token, descending=descending)
                if not token:
                    # A row added behind the first page is met at the end of the walk, once.
                    conn.execute(insert(items), [{"name": added}])
            seen += [r.name for r in page.items]
            token = page.next_page_token
            if not token:
                return seen

    forward = walk(items.c.id, descending=False, added="n999")
    assert forward == [f"n{i:03d}" for i in range(25)] + ["n999"]
    backward = walk(items.c.name, descending=True, added="a000")
    assert backward == sorted([*forward, "a000"], reverse=True)
    with engine.begin() as conn, pytest.raises(InvalidArgument, match="not a token this service gave out"):
        keyset_page(conn, select(items), items.c.id, 10, "bogus")
    with engine.begin() as conn, pytest.raises(InvalidArgument, match="page_size must not be negative"):
        keyset_page(conn, select(items), items.c.id, -1, "")
