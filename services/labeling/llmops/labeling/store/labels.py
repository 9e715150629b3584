"""Labels in SQL: human labels through a lease, programmatic (rule, judge) labels, and reading
them back for listing, agreement and dataset versions."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Row, insert, select, update
from sqlalchemy.exc import IntegrityError

from llmops.contracts.events import LabelCreated
from llmops.core.sql import DEFAULT_PAGE_SIZE, Page, SqlStore, chunks, keyset_page, utc_now
from llmops.labeling.domain.errors import AlreadyExists, InvalidArgument, LeaseExpired, LeaseNotFound
from llmops.labeling.domain.feedback import Rating
from llmops.labeling.domain.models import (
    DerivedTask,
    Label,
    LabeledTask,
    LabelSource,
    LabelValue,
    TaskInput,
    TaskState,
    TaskType,
)
from llmops.labeling.domain.values import decode_label_value, encode_label_value, validate_label_value
from llmops.labeling.store.ratings import insert_rating
from llmops.labeling.store.rows import (
    check_comment,
    check_id,
    label_of,
    leased_task,
    queue_of_task,
    queue_row,
    release_lease,
    task_of,
    task_row,
    task_state,
)
from llmops.labeling.store.tables import labels_t, tasks_t
from llmops.labeling.store.tasks import insert_tasks, validate_inputs


def label_created(label: Label) -> LabelCreated:
    """The label.created event of a new label (queued with it)."""
    return LabelCreated(
        label_id=label.label_id,
        task_id=label.task_id,
        queue=label.queue,
        source=label.source.value,  # type: ignore[arg-type]
        labeler_id=label.labeler_id,
        value=label.value_text,
        document_id=label.document_id,
    )


class SqlLabels(SqlStore):
    """Human and programmatic labels."""

    def submit_label(
        self,
        task_id: str,
        lease_id: str,
        labeler_id: str,
        value: object,
        *,
        comment: str = "",
        now: dt.datetime | None = None,
    ) -> Label:
        """Record a HUMAN label through a lease and release the lease.

        The task becomes COMPLETED when it has ``labelers_per_task`` human labels. Retrying a
        successful submit (same lease, same value) returns the recorded label.

        Raises:
            LeaseNotFound: no such lease, a lease on another task or of another labeler, or one
                already released by a skip.
            LeaseExpired: the lease ran out (the task went back to the queue).
            InvalidLabel: the value does not fit the queue.
            AlreadyExists: the lease was already used for a different value.
            NotFound: no such task.
        """
        now = utc_now(now)
        check_comment("comment", comment)
        try:
            with self._write() as conn:
                lease, task, q = leased_task(conn, task_id, lease_id, labeler_id)
                canonical = validate_label_value(
                    TaskType(q.task_type),
                    value,
                    label_set=tuple(q.label_set),
                    rating_min=q.rating_min,
                    rating_max=q.rating_max,
                )
                if lease.released_at is not None:
                    previous = conn.execute(
                        select(labels_t).where(
                            labels_t.c.lease_id == lease_id, labels_t.c.source == LabelSource.HUMAN.value
                        )
                    ).first()
                    if previous is None:
                        raise LeaseNotFound(f"lease {lease_id} on task {task_id} was released by a skip")
                    if previous.value != encode_label_value(canonical):
                        raise AlreadyExists(
                            f"lease {lease_id} was already used to label task {task_id} with another value"
                        )
                    return label_of(previous, q, task)
                if lease.expires_at <= now:
                    raise LeaseExpired(
                        f"lease {lease_id} on task {task_id} expired at {lease.expires_at.isoformat()}; "
                        "the task went back to the queue: ask for the next task again"
                    )
                if task.state == TaskState.COMPLETED.value:
                    # Leases never exceed the free slots, so this means the data was edited by hand.
                    raise LeaseNotFound(f"task {task_id} is already completed")
                row = {
                    "label_id": str(uuid.uuid4()),
                    "task_pk": task.id,
                    "queue_id": q.id,
                    "source": LabelSource.HUMAN.value,
                    "labeler_id": labeler_id,
                    "value": encode_label_value(canonical),
                    "comment": comment,
                    "confidence": 0.0,
                    "meta": {},
                    "lease_id": lease_id,
                    "created_at": now,
                }
                conn.execute(insert(labels_t).values(**row))
                count = task.human_label_count + 1
                completed = count >= q.labelers_per_task
                conn.execute(
                    update(tasks_t)
                    .where(tasks_t.c.id == task.id)
                    .values(
                        human_label_count=tasks_t.c.human_label_count + 1,
                        state=TaskState.COMPLETED.value if completed else task.state,
                        completed_at=now if completed else None,
                    )
                )
                release_lease(conn, lease_id, now, "labeled")
                label = Label(
                    label_id=row["label_id"],
                    task_id=task_id,
                    queue=q.name,
                    source=LabelSource.HUMAN,
                    labeler_id=labeler_id,
                    value=canonical,
                    created_at=now,
                    comment=comment,
                    document_id=task.document_id or "",
                )
                self._announce(conn, label_created(label), now=now)
        except IntegrityError:
            raise AlreadyExists(f"labeler {labeler_id!r} already labeled task {task_id}") from None
        return label

    def add_programmatic_label(
        self,
        task_id: str,
        source: LabelSource,
        labeler_id: str,
        value: object,
        *,
        confidence: float = 0.0,
        comment: str = "",
        metadata: Mapping[str, str] | None = None,
        now: dt.datetime | None = None,
    ) -> Label:
        """Record a RULE, JUDGE or FEEDBACK label; idempotent per (task, source, labeler_id).

        Programmatic labels never count towards completion and never replace human labels. When
        ``labeler_id`` (e.g. "rule:name@version", "judge:prompt@version/alias") already labeled the
        task, the existing label is returned unchanged.

        Raises:
            InvalidArgument: ``source`` is HUMAN, empty labeler id, confidence outside [0, 1].
            InvalidLabel: the value does not fit the queue.
            NotFound: no such task.
        """
        source = _programmatic_source(source, labeler_id, confidence)
        check_comment("comment", comment)
        now = utc_now(now)
        try:
            with self._write() as conn:
                task = task_row(conn, task_id)
                return self._insert_programmatic(
                    conn,
                    task,
                    queue_of_task(conn, task),
                    source,
                    labeler_id,
                    value,
                    confidence=confidence,
                    comment=comment,
                    metadata=metadata,
                    now=now,
                )
        except IntegrityError:
            # A concurrent call stored the same (task, source, labeler) first: return that one.
            with self._read() as conn:
                task = task_row(conn, task_id)
                q = queue_of_task(conn, task)
                existing = conn.execute(
                    _label_by(source, labeler_id).where(labels_t.c.task_pk == task.id)
                ).one()
                return label_of(existing, q, task)

    def create_derived_tasks(
        self,
        tasks: Sequence[DerivedTask],
        *,
        rating: Rating | None = None,
        now: dt.datetime | None = None,
    ) -> list[tuple[str, bool]]:
        """Store ``tasks`` (several queues at once) with their derived labels, and the feedback's
        ``rating`` of its answer, in one transaction that also marks the event being handled, so a
        crash leaves all of them or none.

        Idempotent: a task whose (queue, document_id) exists is reused, and a label its
        (source, labeler_id) already gave is kept unchanged.

        Returns:
            (task_id, created) per input, in order.

        Raises:
            NotFound: a queue does not exist.
            InvalidArgument, InvalidLabel: an input or label does not fit its queue (nothing stored).
        """
        now = utc_now(now)
        for t in tasks:
            if t.label is not None:
                _programmatic_source(t.label.source, t.label.labeler_id, t.label.confidence)
        with self._read() as conn:
            queues = {t.queue: queue_row(conn, t.queue) for t in tasks}
        inputs = [validate_inputs(TaskType(queues[t.queue].task_type), [t.input])[0] for t in tasks]
        return self._retry_races(lambda: self._insert_derived(tasks, inputs, rating, now))

    def _insert_derived(
        self,
        tasks: Sequence[DerivedTask],
        inputs: Sequence[TaskInput],
        rating: Rating | None,
        now: dt.datetime,
    ) -> list[tuple[str, bool]]:
        result: list[tuple[str, bool]] = []
        with self._write() as conn:
            if rating is not None:
                insert_rating(conn, rating)
            for t, inp in zip(tasks, inputs, strict=True):
                q = queue_row(conn, t.queue)
                created = insert_tasks(conn, q.id, [inp], now)
                task_id = created.task_ids[0]
                result.append((task_id, created.created > 0))
                if t.label is not None:
                    label = t.label
                    self._insert_programmatic(
                        conn,
                        task_row(conn, task_id),
                        q,
                        LabelSource(label.source),
                        label.labeler_id,
                        label.value,
                        confidence=label.confidence,
                        metadata=label.metadata,
                        now=now,
                    )
            self._mark_handled(conn)
        return result

    def _insert_programmatic(
        self,
        conn: Connection,
        task: Row[Any],
        q: Row[Any],
        source: LabelSource,
        labeler_id: str,
        value: object,
        *,
        confidence: float,
        comment: str = "",
        metadata: Mapping[str, str] | None,
        now: dt.datetime,
    ) -> Label:
        """The label of (task, source, labeler_id): the stored one, or a new one announced with it."""
        canonical = validate_label_value(
            TaskType(q.task_type),
            value,
            label_set=tuple(q.label_set),
            rating_min=q.rating_min,
            rating_max=q.rating_max,
        )
        existing = conn.execute(_label_by(source, labeler_id).where(labels_t.c.task_pk == task.id)).first()
        if existing is not None:
            return label_of(existing, q, task)
        label_id = str(uuid.uuid4())
        conn.execute(
            insert(labels_t).values(
                label_id=label_id,
                task_pk=task.id,
                queue_id=q.id,
                source=source.value,
                labeler_id=labeler_id,
                value=encode_label_value(canonical),
                comment=comment,
                confidence=float(confidence),
                meta=dict(metadata or {}),
                lease_id=None,
                created_at=now,
            )
        )
        row = conn.execute(select(labels_t).where(labels_t.c.label_id == label_id)).one()
        label = label_of(row, q, task)
        self._announce(conn, label_created(label), now=now)
        return label

    def list_labels(
        self,
        queue: str,
        source: LabelSource | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        page_token: str = "",
    ) -> Page[Label]:
        """Labels of ``queue`` in the order they were recorded, optionally of one source.

        Raises:
            NotFound: no such queue.
            InvalidArgument: a malformed page token.
        """
        with self._read() as conn:
            q = queue_row(conn, queue)
            query = (
                select(labels_t, tasks_t.c.task_id, tasks_t.c.document_id)
                .join(tasks_t, tasks_t.c.id == labels_t.c.task_pk)
                .where(labels_t.c.queue_id == q.id)
            )
            if source is not None:
                query = query.where(labels_t.c.source == LabelSource(source).value)
            page = keyset_page(conn, query, labels_t.c.id, page_size, page_token)
        return page.map(lambda r: label_of(r, q, r))

    def labels_for_agreement(self, queue: str) -> dict[str, dict[str, LabelValue]]:
        """Human labels of ``queue`` as {task_id: {labeler_id: value}} (input of the agreement module).

        Raises:
            NotFound: no such queue.
        """
        with self._read() as conn:
            q = queue_row(conn, queue)
            rows = conn.execute(
                select(tasks_t.c.task_id, labels_t.c.labeler_id, labels_t.c.value)
                .join(tasks_t, tasks_t.c.id == labels_t.c.task_pk)
                .where(labels_t.c.queue_id == q.id, labels_t.c.source == LabelSource.HUMAN.value)
                .order_by(labels_t.c.id)
            )
            task_type = TaskType(q.task_type)
            units: dict[str, dict[str, LabelValue]] = {}
            for r in rows:
                units.setdefault(r.task_id, {})[r.labeler_id] = decode_label_value(task_type, r.value)
        return units

    def tasks_with_labels(
        self,
        queues: Sequence[str],
        filter: Mapping[str, str] | None = None,
        sources: Collection[LabelSource] | None = None,
        *,
        created_after: dt.datetime | None = None,
        now: dt.datetime | None = None,
    ) -> list[LabeledTask]:
        """Tasks of ``queues`` having at least one label of ``sources``, with those labels.

        Args:
            queues: queue names (all must exist).
            filter: exact match on task metadata (every pair must be present).
            sources: label sources to include; None or empty means all.
            created_after: only tasks created at or after this time (None: all).
            now: time at which task states (LEASED) are evaluated.

        Returns:
            Tasks oldest first per queue, labels oldest first; what versions.build_dataset_version takes.

        Raises:
            NotFound: a queue does not exist.
        """
        if not queues:
            raise InvalidArgument("give at least one queue")
        wanted = [LabelSource(s).value for s in sources] if sources else [s.value for s in LabelSource]
        conditions = dict(filter or {})
        now = utc_now(now)
        with self._read() as conn:
            by_id = {}
            for name in dict.fromkeys(queues):
                q = queue_row(conn, name)
                by_id[q.id] = q
            label_rows = conn.execute(
                select(labels_t)
                .where(labels_t.c.queue_id.in_(list(by_id)), labels_t.c.source.in_(wanted))
                .order_by(labels_t.c.id)
            )
            labels_by_task: dict[int, list[Row[Any]]] = {}
            for r in label_rows:
                labels_by_task.setdefault(r.task_pk, []).append(r)
            result: list[LabeledTask] = []
            for task_pks in chunks(sorted(labels_by_task)):
                stmt = select(tasks_t).where(tasks_t.c.id.in_(task_pks)).order_by(tasks_t.c.id)
                if created_after is not None:
                    stmt = stmt.where(tasks_t.c.created_at >= utc_now(created_after))
                for row in conn.execute(stmt):
                    meta = row.meta or {}
                    if any(meta.get(k) != v for k, v in conditions.items()):
                        continue
                    q = by_id[row.queue_id]
                    task = task_of(row, q, task_state(conn, row, now))
                    labels = tuple(label_of(lr, q, row) for lr in labels_by_task[row.id])
                    result.append(LabeledTask(task=task, labels=labels, queue_instructions=q.instructions))
        return result


def _programmatic_source(source: object, labeler_id: str, confidence: object) -> LabelSource:
    """``source`` as a LabelSource other than HUMAN, after checking the labeler id and confidence."""
    try:
        source = LabelSource(source)
    except ValueError:
        raise InvalidArgument(f"source must be rule, judge or feedback, got {source!r}") from None
    if source is LabelSource.HUMAN:
        raise InvalidArgument("human labels go through submit_label with a lease, not add_programmatic_label")
    check_id("labeler_id", labeler_id)
    if not (isinstance(confidence, int | float) and math.isfinite(confidence) and 0 <= confidence <= 1):
        raise InvalidArgument(f"confidence must be in [0, 1], got {confidence!r}")
    return source


def _label_by(source: LabelSource, labeler_id: str) -> Any:
    return select(labels_t).where(labels_t.c.source == source.value, labels_t.c.labeler_id == labeler_id)
