"""Tasks and their leases in SQL: creating tasks, leasing the next one to a labeler, skipping.

Leases expire lazily: a lease is active while ``released_at IS NULL AND expires_at > now``, with
``now`` given by the caller, so an expired lease simply stops counting and nothing has to sweep.
On PostgreSQL, ``next_task`` locks its candidate task row with ``SELECT ... FOR UPDATE SKIP LOCKED``
(concurrent labelers pass over each other's candidates instead of queueing on them) and re-checks
the free slots once it holds the lock; on SQLite the write transaction's ``BEGIN IMMEDIATE``
serialises the read-then-write.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, and_, exists, func, insert, select, update

from llmops.core.sql import SqlStore, chunks, utc_now
from llmops.labeling.domain.errors import InvalidArgument, LeaseNotFound
from llmops.labeling.domain.models import (
    LabelSource,
    SkipResult,
    Task,
    TaskInput,
    TaskSource,
    TaskState,
    TaskType,
)
from llmops.labeling.domain.values import validate_task_input
from llmops.labeling.store.rows import (
    active_lease,
    check_comment,
    check_id,
    leased_task,
    queue_of_task,
    queue_row,
    task_of,
    task_row,
    task_state,
)
from llmops.labeling.store.tables import MAX_ID_CHARS, labels_t, leases_t, skips_t, tasks_t

# Bounded so a pathological stream of stale candidates cannot spin forever (PostgreSQL only).
_MAX_CANDIDATE_ROUNDS = 50


@dataclasses.dataclass(frozen=True)
class CreatedTasks:
    """Result of :meth:`LabelingStore.create_tasks`."""

    # One id per input, in input order; an input whose (queue, document_id) already had a task,
    # or repeats an earlier input's document_id, gets that task's id.
    task_ids: list[str]
    # How many tasks were actually created.
    created: int


class SqlTasks(SqlStore):
    """Tasks, leases and skips."""

    def create_tasks(
        self, queue: str, inputs: Sequence[TaskInput], *, now: dt.datetime | None = None
    ) -> CreatedTasks:
        """Add tasks to ``queue``; idempotent on (queue, document_id) when document_id is set.

        A redelivered event (same document) gets the existing task's id and creates nothing.

        Raises:
            NotFound: no such queue.
            InvalidArgument: an input lacks what the queue's task type needs (nothing is created).
        """
        now = utc_now(now)
        with self._read() as conn:
            task_type = TaskType(queue_row(conn, queue).task_type)
        validated = validate_inputs(task_type, inputs)
        # A concurrent create may insert one of our documents first (PostgreSQL); the retry finds it
        # and reuses its id.
        return self._retry_races(lambda: self._insert_tasks(queue, validated, now))

    def _insert_tasks(self, queue: str, inputs: Sequence[TaskInput], now: dt.datetime) -> CreatedTasks:
        with self._write() as conn:
            created = insert_tasks(conn, queue_row(conn, queue).id, inputs, now)
            # Called by a consumer (documents, feedback): the tasks and the event's mark commit together.
            self._mark_handled(conn)
        return created

    def get_task(self, task_id: str, *, now: dt.datetime | None = None) -> Task:
        """One task; its state is LEASED while it holds an active lease.

        Raises:
            NotFound: no such task.
        """
        now = utc_now(now)
        with self._read() as conn:
            row = task_row(conn, task_id)
            q = queue_of_task(conn, row)
            return task_of(row, q, task_state(conn, row, now))

    def next_task(
        self,
        queue: str,
        labeler_id: str,
        *,
        now: dt.datetime | None = None,
        lease_seconds: int | None = None,
    ) -> Task | None:
        """Lease the oldest task ``labeler_id`` may label now, or return None.

        A task is available to a labeler when it is open, the labeler has neither labeled nor
        skipped it, and its human labels plus active leases leave a slot (a task needing k labels
        is leased to at most k - labels_so_far labelers at once). A labeler already holding an
        active lease in the queue gets that task and lease back (idempotent retry).

        Args:
            queue: queue name.
            labeler_id: the human labeler.
            now: current time; leases with ``expires_at <= now`` no longer count.
            lease_seconds: lease length; defaults to the queue's.

        Raises:
            NotFound: no such queue.
            InvalidArgument: empty labeler id or non-positive lease length.
        """
        check_id("labeler_id", labeler_id)
        if lease_seconds is not None and lease_seconds <= 0:
            raise InvalidArgument(f"lease_seconds must be positive, got {lease_seconds}")
        now = utc_now(now)
        with self._write() as conn:
            q = queue_row(conn, queue)
            if self._engine.dialect.name == "postgresql":
                # Serialise one labeler's concurrent calls, so a double click gets one lease.
                conn.execute(select(func.pg_advisory_xact_lock(_lock_key(queue, labeler_id))))
            held = conn.execute(
                select(tasks_t, leases_t.c.lease_id, leases_t.c.expires_at)
                .join(leases_t, leases_t.c.task_pk == tasks_t.c.id)
                .where(
                    leases_t.c.queue_id == q.id,
                    leases_t.c.labeler_id == labeler_id,
                    active_lease(now),
                )
                .order_by(leases_t.c.created_at, leases_t.c.lease_id)
                .limit(1)
            ).first()
            if held is not None:
                return task_of(held, q, TaskState.LEASED, held.lease_id, held.expires_at)

            available = _available(q, labeler_id, now)
            for _ in range(_MAX_CANDIDATE_ROUNDS):
                candidate = conn.execute(
                    select(tasks_t.c.id)
                    .where(tasks_t.c.queue_id == q.id, available)
                    .order_by(tasks_t.c.id)
                    .limit(1)
                    .with_for_update(skip_locked=True, of=tasks_t)
                ).first()
                if candidate is None:
                    return None
                # Holding the row lock, re-check in a new statement: on PostgreSQL the first
                # query's snapshot may predate a lease committed by the previous lock holder.
                row = conn.execute(select(tasks_t).where(tasks_t.c.id == candidate.id, available)).first()
                if row is None:
                    continue
                lease_id = str(uuid.uuid4())
                expires_at = now + dt.timedelta(seconds=lease_seconds or q.lease_seconds)
                conn.execute(
                    insert(leases_t).values(
                        lease_id=lease_id,
                        task_pk=row.id,
                        queue_id=q.id,
                        labeler_id=labeler_id,
                        created_at=now,
                        expires_at=expires_at,
                    )
                )
                return task_of(row, q, TaskState.LEASED, lease_id, expires_at)
            return None

    def skip_task(
        self,
        task_id: str,
        lease_id: str,
        labeler_id: str,
        reason: str = "",
        *,
        now: dt.datetime | None = None,
    ) -> SkipResult:
        """Record that ``labeler_id`` skips the task and release the lease.

        The task stays available to other labelers (this labeler never gets it again). A skip
        through an expired lease is still recorded: it only narrows what this labeler is offered.
        Retrying a skip returns the same result.

        Raises:
            LeaseNotFound: no such lease, a lease on another task or of another labeler, or one
                already used to submit a label.
            NotFound: no such task.
        """
        now = utc_now(now)
        check_comment("reason", reason)
        with self._write() as conn:
            lease, task, _ = leased_task(conn, task_id, lease_id, labeler_id)
            if lease.released_at is not None and lease.outcome != "skipped":
                raise LeaseNotFound(f"lease {lease_id} on task {task_id} was already used to submit a label")
            skipped = conn.execute(
                select(skips_t.c.id).where(skips_t.c.task_pk == task.id, skips_t.c.labeler_id == labeler_id)
            ).first()
            if skipped is None:
                conn.execute(
                    insert(skips_t).values(
                        task_pk=task.id,
                        labeler_id=labeler_id,
                        lease_id=lease_id,
                        reason=reason,
                        created_at=now,
                    )
                )
            # Every lease this labeler holds on the task goes (a newer one may follow an expired one).
            conn.execute(
                update(leases_t)
                .where(
                    leases_t.c.task_pk == task.id,
                    leases_t.c.labeler_id == labeler_id,
                    leases_t.c.released_at.is_(None),
                )
                .values(released_at=now, outcome="skipped")
            )
            return SkipResult(task_id=task_id, state=task_state(conn, task, now))

    def tasks_not_labeled_by(
        self, queue: str, labeler_id: str, limit: int = 0, *, now: dt.datetime | None = None
    ) -> list[Task]:
        """Tasks of ``queue`` (oldest first) that ``labeler_id`` has not labeled; ``limit`` 0 means all.

        For labeling functions and judges, which label every task once per version.
        """
        now = utc_now(now)
        with self._read() as conn:
            q = queue_row(conn, queue)
            labeled = (
                select(labels_t.c.id)
                .where(labels_t.c.task_pk == tasks_t.c.id, labels_t.c.labeler_id == labeler_id)
                .exists()
            )
            stmt = select(tasks_t).where(tasks_t.c.queue_id == q.id, ~labeled).order_by(tasks_t.c.id)
            if limit > 0:
                stmt = stmt.limit(limit)
            return [task_of(row, q, task_state(conn, row, now)) for row in conn.execute(stmt)]


def validate_inputs(task_type: TaskType, inputs: Sequence[TaskInput]) -> list[TaskInput]:
    """``inputs`` checked against ``task_type`` and normalised; InvalidArgument names the first bad one."""
    validated: list[TaskInput] = []
    for i, task in enumerate(inputs):
        try:
            validated.append(validate_task_input(task_type, task))
        except InvalidArgument as e:
            raise InvalidArgument(f"task {i}: {e}") from None
        if len(task.document_id) > MAX_ID_CHARS or len(task.snapshot_id) > MAX_ID_CHARS:
            raise InvalidArgument(f"task {i}: document_id and snapshot_id are limited to {MAX_ID_CHARS}")
    return validated


def insert_tasks(
    conn: Connection, queue_id: int, inputs: Sequence[TaskInput], now: dt.datetime
) -> CreatedTasks:
    """Insert the validated ``inputs`` into queue ``queue_id`` in ``conn``'s transaction; an input
    whose document_id the queue already has gets that task's id and inserts nothing."""
    doc_ids = sorted({t.document_id for t in inputs if t.document_id})
    known: dict[str, str] = {}
    for chunk in chunks(doc_ids):
        rows = conn.execute(
            select(tasks_t.c.document_id, tasks_t.c.task_id).where(
                tasks_t.c.queue_id == queue_id, tasks_t.c.document_id.in_(chunk)
            )
        )
        known.update({r.document_id: r.task_id for r in rows})
    ids: list[str] = []
    new_rows: list[dict[str, Any]] = []
    for task in inputs:
        if task.document_id and task.document_id in known:
            ids.append(known[task.document_id])
            continue
        task_id = str(uuid.uuid4())
        if task.document_id:
            known[task.document_id] = task_id
        ids.append(task_id)
        new_rows.append(
            {
                "task_id": task_id,
                "queue_id": queue_id,
                "document_id": task.document_id or None,
                "text": task.text,
                "prompt": task.prompt,
                "response": task.response,
                "candidate_a": task.candidate_a,
                "candidate_b": task.candidate_b,
                "meta": dict(task.metadata),
                "snapshot_id": task.snapshot_id,
                "source": TaskSource(task.source).value,
                "state": TaskState.OPEN.value,
                "human_label_count": 0,
                "created_at": now,
                "completed_at": None,
            }
        )
    if new_rows:
        conn.execute(insert(tasks_t), new_rows)
    return CreatedTasks(task_ids=ids, created=len(new_rows))


def _available(q: Row[Any], labeler_id: str, now: dt.datetime) -> Any:
    """SQL condition: the task (of queue ``q``) can be leased to ``labeler_id`` at ``now``."""
    active_leases = (
        select(func.count())
        .select_from(leases_t)
        .where(leases_t.c.task_pk == tasks_t.c.id, active_lease(now))
        .scalar_subquery()
    )
    return and_(
        tasks_t.c.state == TaskState.OPEN.value,
        ~exists().where(
            labels_t.c.task_pk == tasks_t.c.id,
            labels_t.c.source == LabelSource.HUMAN.value,
            labels_t.c.labeler_id == labeler_id,
        ),
        ~exists().where(skips_t.c.task_pk == tasks_t.c.id, skips_t.c.labeler_id == labeler_id),
        tasks_t.c.human_label_count + active_leases < q.labelers_per_task,
    )


def _lock_key(queue: str, labeler_id: str) -> int:
    """A signed 64-bit advisory lock key for (queue, labeler)."""
    digest = hashlib.sha256(f"labeling\x00{queue}\x00{labeler_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)
