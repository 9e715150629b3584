"""What the labeling store's aggregates share: finding rows by name or id, the lease rules, and
turning rows into domain objects."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, Row, and_, select, update

from llmops.core.convert import copy_fields
from llmops.labeling.domain.errors import InvalidArgument, LeaseNotFound, NotFound
from llmops.labeling.domain.models import (
    DatasetLineage,
    DatasetVersion,
    Label,
    LabelSource,
    Task,
    TaskInput,
    TaskSource,
    TaskState,
    TaskType,
)
from llmops.labeling.domain.values import decode_label_value
from llmops.labeling.store.tables import MAX_ID_CHARS, leases_t, queues_t, tasks_t

MAX_COMMENT_CHARS = 20_000


def queue_row(conn: Connection, name: str) -> Row[Any]:
    """The ``queues`` row named ``name``; NotFound when there is none."""
    row = conn.execute(select(queues_t).where(queues_t.c.name == name)).first()
    if row is None:
        raise NotFound(f"queue {name!r} not found")
    return row


def task_row(conn: Connection, task_id: str) -> Row[Any]:
    """The ``tasks`` row of ``task_id``; NotFound when there is none."""
    row = conn.execute(select(tasks_t).where(tasks_t.c.task_id == task_id)).first()
    if row is None:
        raise NotFound(f"task {task_id!r} not found")
    return row


def queue_of_task(conn: Connection, task: Row[Any]) -> Row[Any]:
    """The ``queues`` row a task belongs to."""
    return conn.execute(select(queues_t).where(queues_t.c.id == task.queue_id)).one()


def leased_task(
    conn: Connection, task_id: str, lease_id: str, labeler_id: str
) -> tuple[Row[Any], Row[Any], Row[Any]]:
    """The lease (locked), its task and queue, after checking it names this task and labeler."""
    lease = conn.execute(select(leases_t).where(leases_t.c.lease_id == lease_id).with_for_update()).first()
    if lease is None:
        raise LeaseNotFound(f"lease {lease_id!r} not found")
    task = conn.execute(
        select(tasks_t).where(tasks_t.c.task_id == task_id).with_for_update(of=tasks_t)
    ).first()
    if task is None:
        raise NotFound(f"task {task_id!r} not found")
    if lease.task_pk != task.id:
        raise LeaseNotFound(f"lease {lease_id} is not a lease on task {task_id}")
    if lease.labeler_id != labeler_id:
        raise LeaseNotFound(f"lease {lease_id} is not held by labeler {labeler_id!r}")
    return lease, task, queue_of_task(conn, task)


def release_lease(conn: Connection, lease_id: str, now: dt.datetime, outcome: str) -> None:
    conn.execute(
        update(leases_t).where(leases_t.c.lease_id == lease_id).values(released_at=now, outcome=outcome)
    )


def active_lease(now: dt.datetime) -> Any:
    """SQL condition: the lease counts at ``now`` (leases expire lazily, nothing sweeps them)."""
    return and_(leases_t.c.released_at.is_(None), leases_t.c.expires_at > now)


def task_state(conn: Connection, task: Row[Any], now: dt.datetime) -> TaskState:
    """OPEN, LEASED (an active lease holds it) or COMPLETED."""
    if task.state == TaskState.COMPLETED.value:
        return TaskState.COMPLETED
    leased = conn.execute(
        select(leases_t.c.lease_id).where(leases_t.c.task_pk == task.id, active_lease(now)).limit(1)
    ).first()
    return TaskState.LEASED if leased else TaskState.OPEN


def check_id(field: str, value: str, *, limit: int = MAX_ID_CHARS) -> None:
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgument(f"{field} is empty")
    if len(value) > limit:
        raise InvalidArgument(f"{field} is longer than {limit} characters")


def check_comment(field: str, text: str) -> None:
    if len(text) > MAX_COMMENT_CHARS:
        raise InvalidArgument(f"{field} has {len(text)} characters, more than {MAX_COMMENT_CHARS}")


def task_of(
    row: Row[Any],
    q: Row[Any],
    state: TaskState,
    lease_id: str = "",
    lease_expires_at: dt.datetime | None = None,
) -> Task:
    """A task from its ``tasks`` row and its queue's row."""
    return Task(
        task_id=row.task_id,
        queue=q.name,
        task_type=TaskType(q.task_type),
        input=copy_fields(
            TaskInput,
            row,
            document_id=row.document_id or "",
            metadata=dict(row.meta or {}),
            source=TaskSource(row.source),
        ),
        state=state,
        created_at=row.created_at,
        label_count=row.human_label_count,
        lease_id=lease_id,
        lease_expires_at=lease_expires_at,
    )


def label_of(row: Row[Any], q: Row[Any], task: Row[Any]) -> Label:
    """A label from its ``labels`` row, its queue's row and a row with the task's id and document."""
    return Label(
        label_id=row.label_id,
        task_id=task.task_id,
        queue=q.name,
        source=LabelSource(row.source),
        labeler_id=row.labeler_id,
        value=decode_label_value(TaskType(q.task_type), row.value),
        created_at=row.created_at,
        comment=row.comment,
        confidence=row.confidence,
        metadata=dict(row.meta or {}),
        document_id=task.document_id or "",
    )


def dataset_version_of(row: Row[Any]) -> DatasetVersion:
    lineage = row.lineage or {}
    return copy_fields(
        DatasetVersion,
        row,
        task_type=TaskType(row.task_type),
        lineage=DatasetLineage(
            snapshot_ids=tuple(lineage.get("snapshot_ids", ())),
            label_ids_count=int(lineage.get("label_ids_count", 0)),
            labeler_ids=tuple(lineage.get("labeler_ids", ())),
            queues=tuple(lineage.get("queues", ())),
        ),
    )
