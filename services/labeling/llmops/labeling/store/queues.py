"""Queues in SQL: their definitions, task counts and the labeling functions enabled on them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, and_, case, exists, func, insert, select
from sqlalchemy.exc import IntegrityError

from llmops.core.convert import copy_fields
from llmops.core.sql import DEFAULT_PAGE_SIZE, Page, SqlStore, keyset_page, utc, utc_now
from llmops.labeling.domain.errors import AlreadyExists
from llmops.labeling.domain.models import LabelingFunctionRef, Queue, QueueSpec, TaskState, TaskType
from llmops.labeling.domain.values import validate_queue_spec
from llmops.labeling.store.rows import active_lease, check_id, queue_row
from llmops.labeling.store.tables import labeling_functions_t, leases_t, queues_t, tasks_t


class SqlQueues(SqlStore):
    """Queues and the labeling functions enabled on them."""

    def create_queue(self, spec: QueueSpec, *, now: dt.datetime | None = None) -> Queue:
        """Create a queue (defaults applied as in :func:`validate_queue_spec`).

        Raises:
            InvalidArgument: the definition is invalid.
            AlreadyExists: a queue with that name exists.
        """
        spec = validate_queue_spec(spec)
        now = utc_now(now)
        try:
            with self._write() as conn:
                if conn.execute(select(queues_t.c.id).where(queues_t.c.name == spec.name)).first():
                    raise AlreadyExists(f"queue {spec.name!r} already exists")
                conn.execute(
                    insert(queues_t).values(
                        name=spec.name,
                        task_type=spec.task_type.value,
                        label_set=list(spec.label_set),
                        rating_min=spec.rating_min,
                        rating_max=spec.rating_max,
                        labelers_per_task=spec.labelers_per_task,
                        lease_seconds=spec.lease_seconds,
                        instructions=spec.instructions,
                        meta=dict(spec.metadata),
                        created_at=now,
                    )
                )
        except IntegrityError:
            # Lost a race with a concurrent create of the same name (PostgreSQL).
            raise AlreadyExists(f"queue {spec.name!r} already exists") from None
        return self.get_queue(spec.name, now=now)

    def get_queue(self, name: str, *, now: dt.datetime | None = None) -> Queue:
        """The queue ``name`` with its task counts at ``now``.

        Raises:
            NotFound: no such queue.
        """
        with self._read() as conn:
            row = queue_row(conn, name)
            return self._queues_with_counts(conn, [row], utc_now(now))[0]

    def list_queues(
        self, page_size: int = DEFAULT_PAGE_SIZE, page_token: str = "", *, now: dt.datetime | None = None
    ) -> Page[Queue]:
        """Queues ordered by name, with their counts.

        Raises:
            InvalidArgument: a malformed page token.
        """
        with self._read() as conn:
            page = keyset_page(conn, select(queues_t), queues_t.c.name, page_size, page_token)
            items = self._queues_with_counts(conn, page.items, utc_now(now))
        return Page(items, page.next_page_token)

    # --- labeling functions ------------------------------------------------------------------

    def register_labeling_function(
        self, queue: str, name: str, version: str, *, now: dt.datetime | None = None
    ) -> LabelingFunctionRef:
        """Enable labeling function ``name@version`` on ``queue``; registering it again is a no-op.

        Raises:
            NotFound: no such queue.
            InvalidArgument: empty or overlong name or version.
        """
        check_id("name", name, limit=128)
        check_id("version", version, limit=64)
        now = utc_now(now)
        query = select(labeling_functions_t.c.registered_at)
        try:
            with self._write() as conn:
                q = queue_row(conn, queue)
                query = query.where(
                    labeling_functions_t.c.queue_id == q.id,
                    labeling_functions_t.c.name == name,
                    labeling_functions_t.c.version == version,
                )
                existing = conn.execute(query).first()
                if existing is not None:
                    return LabelingFunctionRef(queue, name, version, existing.registered_at)
                conn.execute(
                    insert(labeling_functions_t).values(
                        queue_id=q.id, name=name, version=version, registered_at=now
                    )
                )
                return LabelingFunctionRef(queue, name, version, utc(now))
        except IntegrityError:
            with self._read() as conn:
                return LabelingFunctionRef(queue, name, version, conn.execute(query).one().registered_at)

    def list_labeling_functions(self, queue: str) -> list[LabelingFunctionRef]:
        """Labeling functions enabled on ``queue``, in registration order.

        Raises:
            NotFound: no such queue.
        """
        with self._read() as conn:
            q = queue_row(conn, queue)
            rows = conn.execute(
                select(labeling_functions_t)
                .where(labeling_functions_t.c.queue_id == q.id)
                .order_by(labeling_functions_t.c.id)
            )
            return [LabelingFunctionRef(q.name, r.name, r.version, r.registered_at) for r in rows]

    def _queues_with_counts(
        self, conn: Connection, rows: Sequence[Row[Any]], now: dt.datetime
    ) -> list[Queue]:
        if not rows:
            return []
        ids = [r.id for r in rows]
        has_lease = exists().where(leases_t.c.task_pk == tasks_t.c.id, active_lease(now))
        open_ = tasks_t.c.state == TaskState.OPEN.value
        completed_ = tasks_t.c.state == TaskState.COMPLETED.value
        counts = {
            r.queue_id: r
            for r in conn.execute(
                select(
                    tasks_t.c.queue_id,
                    func.count().label("total"),
                    func.sum(case((completed_, 1), else_=0)).label("completed"),
                    func.sum(case((and_(open_, has_lease), 1), else_=0)).label("leased"),
                )
                .where(tasks_t.c.queue_id.in_(ids))
                .group_by(tasks_t.c.queue_id)
            )
        }
        functions: dict[int, list[str]] = {}
        for f in conn.execute(
            select(labeling_functions_t)
            .where(labeling_functions_t.c.queue_id.in_(ids))
            .order_by(labeling_functions_t.c.id)
        ):
            functions.setdefault(f.queue_id, []).append(f"{f.name}@{f.version}")
        queues = []
        for r in rows:
            c = counts.get(r.id)
            total, completed, leased = (
                (int(c.total), int(c.completed or 0), int(c.leased or 0)) if c else (0, 0, 0)
            )
            queues.append(
                copy_fields(
                    Queue,
                    r,
                    task_type=TaskType(r.task_type),
                    label_set=tuple(r.label_set),
                    metadata=dict(r.meta or {}),
                    open_tasks=total - completed - leased,
                    leased_tasks=leased,
                    completed_tasks=completed,
                    total_tasks=total,
                    labeling_functions=tuple(functions.get(r.id, ())),
                )
            )
        return queues
