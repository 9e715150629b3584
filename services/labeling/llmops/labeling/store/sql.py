"""The labeling store: queues, tasks, leases, labels, skips and dataset versions in SQL.

SQLAlchemy 2.x Core with a sync engine (callers on an event loop run the methods in a thread).
SQLite by default (``sqlite:///path/labeling.db``), PostgreSQL by URL
(``postgresql+psycopg://...``). The methods are safe to call from several threads and processes:

* SQLite: every writing transaction starts with ``BEGIN IMMEDIATE``, which takes the database's
  write lock up front, so writers are serialised and a read-then-write (pick a task, lease it)
  cannot interleave with another; readers use a deferred ``BEGIN`` and, in WAL mode, never block.
* PostgreSQL: ``next_task`` locks its candidate task row with ``SELECT ... FOR UPDATE SKIP LOCKED``
  (concurrent labelers pass over each other's candidates instead of queueing on them) and re-checks
  the free slots once it holds the lock; leases and labels are locked the same way.

Leases expire lazily: a lease is active while ``released_at IS NULL AND expires_at > now``, with
``now`` given by the caller, so an expired lease simply stops counting and nothing has to sweep.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import hashlib
import json
import math
import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Row,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    and_,
    case,
    exists,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from llmops.core.sql import WRITE_OPTION, make_engine
from llmops.labeling.domain.errors import (
    AlreadyExists,
    InvalidArgument,
    LeaseExpired,
    LeaseNotFound,
    NotFound,
)
from llmops.labeling.domain.models import (
    DatasetLineage,
    DatasetVersion,
    Label,
    LabeledTask,
    LabelingFunctionRef,
    LabelSource,
    LabelValue,
    Page,
    Queue,
    QueueSpec,
    SkipResult,
    Task,
    TaskInput,
    TaskSource,
    TaskState,
    TaskType,
)
from llmops.labeling.domain.values import (
    decode_label_value,
    encode_label_value,
    validate_label_value,
    validate_queue_spec,
    validate_task_input,
)

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100
MAX_COMMENT_CHARS = 20_000
MAX_ID_CHARS = 256
# Bounded so a pathological stream of stale candidates cannot spin forever (PostgreSQL only).
_MAX_CANDIDATE_ROUNDS = 50
_IN_CHUNK = 500
_CREATE_RETRIES = 3

# Auto-increment ids: BIGINT on servers, but SQLite only auto-increments "INTEGER PRIMARY KEY".
_Id = BigInteger().with_variant(Integer, "sqlite")


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes in and out; stored as naive UTC where the database has no time zones."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        value = _utc(value)
        # SQLite compares datetimes as text: every stored value must be in the same (UTC) zone.
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        return None if value is None else _utc(value)


# The schema is created with metadata.create_all when the store opens; there is no Alembic history
# yet, so a change to these tables needs a migration written at that point.
metadata = MetaData()

queues_t = Table(
    "queues",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("task_type", String(32), nullable=False),
    Column("label_set", JSON, nullable=False),
    Column("rating_min", Float, nullable=False),
    Column("rating_max", Float, nullable=False),
    Column("labelers_per_task", Integer, nullable=False),
    Column("lease_seconds", Integer, nullable=False),
    Column("instructions", Text, nullable=False),
    Column("metadata", JSON, nullable=False, key="meta"),
    Column("created_at", UTCDateTime, nullable=False),
)

tasks_t = Table(
    "tasks",
    metadata,
    # Insertion order: "oldest task first" is ORDER BY id.
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("task_id", String(64), nullable=False, unique=True),
    Column("queue_id", _Id, ForeignKey("queues.id"), nullable=False),
    # NULL when the task has no document; NULLs are distinct, so only real ids are deduplicated.
    Column("document_id", String(MAX_ID_CHARS)),
    Column("text", Text, nullable=False),
    Column("prompt", Text, nullable=False),
    Column("response", Text, nullable=False),
    Column("candidate_a", Text, nullable=False),
    Column("candidate_b", Text, nullable=False),
    Column("metadata", JSON, nullable=False, key="meta"),
    Column("snapshot_id", String(MAX_ID_CHARS), nullable=False),
    Column("source", String(16), nullable=False),
    # "open" or "completed"; LEASED is derived from the leases at query time.
    Column("state", String(16), nullable=False),
    # Denormalised count of human labels, so picking a task needs no aggregate over labels.
    Column("human_label_count", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("completed_at", UTCDateTime),
    UniqueConstraint("queue_id", "document_id", name="uq_tasks_queue_document"),
    Index("ix_tasks_queue_state", "queue_id", "state", "id"),
)

labels_t = Table(
    "labels",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("label_id", String(64), nullable=False, unique=True),
    Column("task_pk", _Id, ForeignKey("tasks.id"), nullable=False),
    Column("queue_id", _Id, ForeignKey("queues.id"), nullable=False),
    Column("source", String(8), nullable=False),
    Column("labeler_id", String(MAX_ID_CHARS), nullable=False),
    # Canonical text form (see values.encode_label_value); decoded with the queue's task type.
    Column("value", Text, nullable=False),
    Column("comment", Text, nullable=False),
    Column("confidence", Float, nullable=False),
    Column("metadata", JSON, nullable=False, key="meta"),
    Column("lease_id", String(64)),
    Column("created_at", UTCDateTime, nullable=False),
    # One label per labeler per task: a human never labels a task twice, and a labeling function
    # or judge at one version labels it once (programmatic labels are idempotent on this).
    UniqueConstraint("task_pk", "source", "labeler_id", name="uq_labels_task_source_labeler"),
    Index("ix_labels_queue", "queue_id", "id"),
)

leases_t = Table(
    "leases",
    metadata,
    Column("lease_id", String(64), primary_key=True),
    Column("task_pk", _Id, ForeignKey("tasks.id"), nullable=False),
    Column("queue_id", _Id, ForeignKey("queues.id"), nullable=False),
    Column("labeler_id", String(MAX_ID_CHARS), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("released_at", UTCDateTime),
    # "labeled" or "skipped" once released.
    Column("outcome", String(16)),
    Index("ix_leases_task_active", "task_pk", "released_at", "expires_at"),
    Index("ix_leases_queue_labeler", "queue_id", "labeler_id", "released_at"),
)

skips_t = Table(
    "skips",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("task_pk", _Id, ForeignKey("tasks.id"), nullable=False),
    Column("labeler_id", String(MAX_ID_CHARS), nullable=False),
    Column("lease_id", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("task_pk", "labeler_id", name="uq_skips_task_labeler"),
)

dataset_versions_t = Table(
    "dataset_versions",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("version_id", String(128), nullable=False, unique=True),
    Column("dataset", String(MAX_ID_CHARS), nullable=False),
    Column("task_type", String(32), nullable=False),
    Column("train_count", BigInteger, nullable=False),
    Column("eval_count", BigInteger, nullable=False),
    Column("eval_fraction", Float, nullable=False),
    Column("seed", BigInteger, nullable=False),
    Column("uri", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("lineage", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_dataset_versions_dataset", "dataset", "id"),
)

labeling_functions_t = Table(
    "labeling_functions",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("queue_id", _Id, ForeignKey("queues.id"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("version", String(64), nullable=False),
    Column("registered_at", UTCDateTime, nullable=False),
    UniqueConstraint("queue_id", "name", "version", name="uq_labeling_functions"),
)


@dataclasses.dataclass(frozen=True)
class CreatedTasks:
    """Result of :meth:`LabelingStore.create_tasks`."""

    # One id per input, in input order; an input whose (queue, document_id) already had a task,
    # or repeats an earlier input's document_id, gets that task's id.
    task_ids: list[str]
    # How many tasks were actually created.
    created: int


class LabelingStore:
    """Persistence and concurrency rules of the labeling service (see the module docstring).

    Every method that takes ``now`` uses it for timestamps and lease expiry; it defaults to the
    current time (UTC). Naive datetimes are taken as UTC.
    """

    def __init__(self, url: str, *, echo: bool = False) -> None:
        """Open (and create the tables of) the database at ``url``.

        ``sqlite:///:memory:`` gives a private in-memory database on one shared connection, for
        single-threaded tests; use a file for anything concurrent.
        """
        self.url = url
        self._engine = make_engine(url, echo=echo)
        self._postgres = self._engine.dialect.name == "postgresql"
        # In a writing transaction, so that replicas starting together on one SQLite file do not
        # race to create the same tables.
        with self._write() as conn:
            metadata.create_all(conn)

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> LabelingStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- queues ------------------------------------------------------------------------------

    def create_queue(self, spec: QueueSpec, *, now: dt.datetime | None = None) -> Queue:
        """Create a queue (defaults applied as in :func:`validate_queue_spec`).

        Raises:
            InvalidArgument: the definition is invalid.
            AlreadyExists: a queue with that name exists.
        """
        spec = validate_queue_spec(spec)
        now = _now(now)
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
            row = self._queue_row(conn, name)
            return self._queues_with_counts(conn, [row], _now(now))[0]

    def list_queues(
        self, page_size: int = DEFAULT_PAGE_SIZE, page_token: str = "", *, now: dt.datetime | None = None
    ) -> Page[Queue]:
        """Queues ordered by name, with their counts.

        Raises:
            InvalidArgument: a malformed page token.
        """
        size = _page_size(page_size)
        after = _decode_token(page_token, str)
        query = select(queues_t).order_by(queues_t.c.name).limit(size + 1)
        if after is not None:
            query = query.where(queues_t.c.name > after)
        with self._read() as conn:
            rows = list(conn.execute(query))
            more = len(rows) > size
            rows = rows[:size]
            items = self._queues_with_counts(conn, rows, _now(now))
        return Page(items, _encode_token(rows[-1].name) if more else "")

    # --- tasks -------------------------------------------------------------------------------

    def create_tasks(
        self, queue: str, inputs: Sequence[TaskInput], *, now: dt.datetime | None = None
    ) -> CreatedTasks:
        """Add tasks to ``queue``; idempotent on (queue, document_id) when document_id is set.

        A redelivered event (same document) gets the existing task's id and creates nothing.

        Raises:
            NotFound: no such queue.
            InvalidArgument: an input lacks what the queue's task type needs (nothing is created).
        """
        now = _now(now)
        with self._read() as conn:
            task_type = TaskType(self._queue_row(conn, queue).task_type)
        validated: list[TaskInput] = []
        for i, task in enumerate(inputs):
            try:
                validated.append(validate_task_input(task_type, task))
            except InvalidArgument as e:
                raise InvalidArgument(f"task {i}: {e}") from None
            if len(task.document_id) > MAX_ID_CHARS or len(task.snapshot_id) > MAX_ID_CHARS:
                raise InvalidArgument(f"task {i}: document_id and snapshot_id are limited to {MAX_ID_CHARS}")
        for attempt in range(_CREATE_RETRIES):
            try:
                return self._insert_tasks(queue, validated, now)
            except IntegrityError:
                # A concurrent create inserted one of our documents first (PostgreSQL); the next
                # attempt finds it and reuses its id.
                if attempt == _CREATE_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    def _insert_tasks(self, queue: str, inputs: Sequence[TaskInput], now: dt.datetime) -> CreatedTasks:
        with self._write() as conn:
            queue_id = self._queue_row(conn, queue).id
            doc_ids = sorted({t.document_id for t in inputs if t.document_id})
            known: dict[str, str] = {}
            for chunk in _chunks(doc_ids):
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

    def get_task(self, task_id: str, *, now: dt.datetime | None = None) -> Task:
        """One task; its state is LEASED while it holds an active lease.

        Raises:
            NotFound: no such task.
        """
        now = _now(now)
        with self._read() as conn:
            row = self._task_row(conn, task_id)
            q = conn.execute(select(queues_t).where(queues_t.c.id == row.queue_id)).one()
            return _task(row, q, self._task_state(conn, row, now))

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
        _check_id("labeler_id", labeler_id)
        if lease_seconds is not None and lease_seconds <= 0:
            raise InvalidArgument(f"lease_seconds must be positive, got {lease_seconds}")
        now = _now(now)
        with self._write() as conn:
            q = self._queue_row(conn, queue)
            if self._postgres:
                # Serialise one labeler's concurrent calls, so a double click gets one lease.
                conn.execute(select(func.pg_advisory_xact_lock(_lock_key(queue, labeler_id))))
            held = conn.execute(
                select(tasks_t, leases_t.c.lease_id, leases_t.c.expires_at)
                .join(leases_t, leases_t.c.task_pk == tasks_t.c.id)
                .where(
                    leases_t.c.queue_id == q.id,
                    leases_t.c.labeler_id == labeler_id,
                    _active_lease(now),
                )
                .order_by(leases_t.c.created_at, leases_t.c.lease_id)
                .limit(1)
            ).first()
            if held is not None:
                return _task(held, q, TaskState.LEASED, held.lease_id, held.expires_at)

            available = self._available(q, labeler_id, now)
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
                        released_at=None,
                        outcome=None,
                    )
                )
                return _task(row, q, TaskState.LEASED, lease_id, expires_at)
            return None

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
        now = _now(now)
        if len(comment) > MAX_COMMENT_CHARS:
            raise InvalidArgument(f"comment has {len(comment)} characters, more than {MAX_COMMENT_CHARS}")
        try:
            with self._write() as conn:
                lease, task, q = self._leased_task(conn, task_id, lease_id, labeler_id)
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
                    return _label(previous, q, task)
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
                self._release(conn, lease_id, now, "labeled")
        except IntegrityError:
            raise AlreadyExists(f"labeler {labeler_id!r} already labeled task {task_id}") from None
        return Label(
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
        now = _now(now)
        if len(reason) > MAX_COMMENT_CHARS:
            raise InvalidArgument(f"reason has {len(reason)} characters, more than {MAX_COMMENT_CHARS}")
        with self._write() as conn:
            lease, task, _ = self._leased_task(conn, task_id, lease_id, labeler_id)
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
            return SkipResult(task_id=task_id, state=self._task_state(conn, task, now))

    # --- labels ------------------------------------------------------------------------------

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
        """Record a RULE or JUDGE label; idempotent per (task, source, labeler_id).

        Programmatic labels never count towards completion and never replace human labels. When
        ``labeler_id`` (e.g. "rule:name@version", "judge:prompt@version/alias") already labeled the
        task, the existing label is returned unchanged.

        Raises:
            InvalidArgument: ``source`` is HUMAN, empty labeler id, confidence outside [0, 1].
            InvalidLabel: the value does not fit the queue.
            NotFound: no such task.
        """
        try:
            source = LabelSource(source)
        except ValueError:
            raise InvalidArgument(f"source must be rule or judge, got {source!r}") from None
        if source is LabelSource.HUMAN:
            raise InvalidArgument(
                "human labels go through submit_label with a lease, not add_programmatic_label"
            )
        _check_id("labeler_id", labeler_id)
        if not (isinstance(confidence, int | float) and math.isfinite(confidence) and 0 <= confidence <= 1):
            raise InvalidArgument(f"confidence must be in [0, 1], got {confidence!r}")
        if len(comment) > MAX_COMMENT_CHARS:
            raise InvalidArgument(f"comment has {len(comment)} characters, more than {MAX_COMMENT_CHARS}")
        now = _now(now)
        existing_query = select(labels_t).where(
            labels_t.c.source == source.value, labels_t.c.labeler_id == labeler_id
        )
        try:
            with self._write() as conn:
                task = self._task_row(conn, task_id)
                q = conn.execute(select(queues_t).where(queues_t.c.id == task.queue_id)).one()
                canonical = validate_label_value(
                    TaskType(q.task_type),
                    value,
                    label_set=tuple(q.label_set),
                    rating_min=q.rating_min,
                    rating_max=q.rating_max,
                )
                existing = conn.execute(existing_query.where(labels_t.c.task_pk == task.id)).first()
                if existing is not None:
                    return _label(existing, q, task)
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
                return _label(row, q, task)
        except IntegrityError:
            # A concurrent call stored the same (task, source, labeler) first: return that one.
            with self._read() as conn:
                task = self._task_row(conn, task_id)
                q = conn.execute(select(queues_t).where(queues_t.c.id == task.queue_id)).one()
                existing = conn.execute(existing_query.where(labels_t.c.task_pk == task.id)).one()
                return _label(existing, q, task)

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
        size = _page_size(page_size)
        after = _decode_token(page_token, int)
        with self._read() as conn:
            q = self._queue_row(conn, queue)
            query = (
                select(labels_t, tasks_t.c.task_id, tasks_t.c.document_id)
                .join(tasks_t, tasks_t.c.id == labels_t.c.task_pk)
                .where(labels_t.c.queue_id == q.id)
                .order_by(labels_t.c.id)
                .limit(size + 1)
            )
            if source is not None:
                query = query.where(labels_t.c.source == LabelSource(source).value)
            if after is not None:
                query = query.where(labels_t.c.id > after)
            rows = list(conn.execute(query))
        more = len(rows) > size
        rows = rows[:size]
        return Page([_label(r, q, r) for r in rows], _encode_token(rows[-1].id) if more else "")

    def labels_for_agreement(self, queue: str) -> dict[str, dict[str, LabelValue]]:
        """Human labels of ``queue`` as {task_id: {labeler_id: value}} (input of the agreement module).

        Raises:
            NotFound: no such queue.
        """
        with self._read() as conn:
            q = self._queue_row(conn, queue)
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
        now: dt.datetime | None = None,
    ) -> list[LabeledTask]:
        """Tasks of ``queues`` having at least one label of ``sources``, with those labels.

        Args:
            queues: queue names (all must exist).
            filter: exact match on task metadata (every pair must be present).
            sources: label sources to include; None or empty means all.
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
        now = _now(now)
        with self._read() as conn:
            by_id = {}
            for name in dict.fromkeys(queues):
                q = self._queue_row(conn, name)
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
            for task_pks in _chunks(sorted(labels_by_task)):
                for row in conn.execute(
                    select(tasks_t).where(tasks_t.c.id.in_(task_pks)).order_by(tasks_t.c.id)
                ):
                    meta = row.meta or {}
                    if any(meta.get(k) != v for k, v in conditions.items()):
                        continue
                    q = by_id[row.queue_id]
                    task = _task(row, q, self._task_state(conn, row, now))
                    labels = tuple(_label(lr, q, row) for lr in labels_by_task[row.id])
                    result.append(LabeledTask(task=task, labels=labels, queue_instructions=q.instructions))
        return result

    # --- dataset versions --------------------------------------------------------------------

    def save_dataset_version(self, version: DatasetVersion) -> DatasetVersion:
        """Store a dataset version record; a version is immutable, so saving an existing id returns
        the stored record unchanged."""
        _check_id("version_id", version.version_id)
        _check_id("dataset", version.dataset)
        lineage = version.lineage
        try:
            with self._write() as conn:
                existing = conn.execute(
                    select(dataset_versions_t).where(dataset_versions_t.c.version_id == version.version_id)
                ).first()
                if existing is not None:
                    return _dataset_version(existing)
                conn.execute(
                    insert(dataset_versions_t).values(
                        version_id=version.version_id,
                        dataset=version.dataset,
                        task_type=TaskType(version.task_type).value,
                        train_count=version.train_count,
                        eval_count=version.eval_count,
                        eval_fraction=version.eval_fraction,
                        seed=version.seed,
                        uri=version.uri,
                        description=version.description,
                        lineage={
                            "snapshot_ids": list(lineage.snapshot_ids),
                            "label_ids_count": lineage.label_ids_count,
                            "labeler_ids": list(lineage.labeler_ids),
                            "queues": list(lineage.queues),
                        },
                        created_at=_utc(version.created_at),
                    )
                )
        except IntegrityError:
            pass  # saved concurrently by another caller: read theirs below
        return self.get_dataset_version(version.version_id)

    def get_dataset_version(self, version_id: str) -> DatasetVersion:
        """Raises: NotFound: no such version."""
        with self._read() as conn:
            row = conn.execute(
                select(dataset_versions_t).where(dataset_versions_t.c.version_id == version_id)
            ).first()
        if row is None:
            raise NotFound(f"dataset version {version_id!r} not found")
        return _dataset_version(row)

    def list_dataset_versions(
        self, dataset: str, page_size: int = DEFAULT_PAGE_SIZE, page_token: str = ""
    ) -> Page[DatasetVersion]:
        """Versions of ``dataset``, newest first (an unknown dataset has no versions)."""
        size = _page_size(page_size)
        before = _decode_token(page_token, int)
        query = (
            select(dataset_versions_t)
            .where(dataset_versions_t.c.dataset == dataset)
            .order_by(dataset_versions_t.c.id.desc())
            .limit(size + 1)
        )
        if before is not None:
            query = query.where(dataset_versions_t.c.id < before)
        with self._read() as conn:
            rows = list(conn.execute(query))
        more = len(rows) > size
        rows = rows[:size]
        return Page([_dataset_version(r) for r in rows], _encode_token(rows[-1].id) if more else "")

    # --- labeling functions ------------------------------------------------------------------

    def register_labeling_function(
        self, queue: str, name: str, version: str, *, now: dt.datetime | None = None
    ) -> LabelingFunctionRef:
        """Enable labeling function ``name@version`` on ``queue``; registering it again is a no-op.

        Raises:
            NotFound: no such queue.
            InvalidArgument: empty or overlong name or version.
        """
        _check_id("name", name, limit=128)
        _check_id("version", version, limit=64)
        now = _now(now)
        query = select(labeling_functions_t.c.registered_at)
        try:
            with self._write() as conn:
                q = self._queue_row(conn, queue)
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
                return LabelingFunctionRef(queue, name, version, _utc(now))
        except IntegrityError:
            with self._read() as conn:
                return LabelingFunctionRef(queue, name, version, conn.execute(query).one().registered_at)

    def list_labeling_functions(self, queue: str) -> list[LabelingFunctionRef]:
        """Labeling functions enabled on ``queue``, in registration order.

        Raises:
            NotFound: no such queue.
        """
        with self._read() as conn:
            q = self._queue_row(conn, queue)
            rows = conn.execute(
                select(labeling_functions_t)
                .where(labeling_functions_t.c.queue_id == q.id)
                .order_by(labeling_functions_t.c.id)
            )
            return [LabelingFunctionRef(q.name, r.name, r.version, r.registered_at) for r in rows]

    # --- internals ---------------------------------------------------------------------------

    def tasks_not_labeled_by(
        self, queue: str, labeler_id: str, limit: int = 0, *, now: dt.datetime | None = None
    ) -> list[Task]:
        """Tasks of ``queue`` (oldest first) that ``labeler_id`` has not labeled; ``limit`` 0 means all.

        For labeling functions and judges, which label every task once per version.
        """
        now = _now(now)
        with self._read() as conn:
            q = self._queue_row(conn, queue)
            labeled = (
                select(labels_t.c.id)
                .where(labels_t.c.task_pk == tasks_t.c.id, labels_t.c.labeler_id == labeler_id)
                .exists()
            )
            stmt = select(tasks_t).where(tasks_t.c.queue_id == q.id, ~labeled).order_by(tasks_t.c.id)
            if limit > 0:
                stmt = stmt.limit(limit)
            return [_task(row, q, self._task_state(conn, row, now)) for row in conn.execute(stmt)]

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._engine.connect() as conn:
            # Read by the SQLite "begin" hook: take the write lock at BEGIN (BEGIN IMMEDIATE).
            conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._engine.connect() as conn, conn.begin():
            yield conn

    @staticmethod
    def _queue_row(conn: Connection, name: str) -> Row[Any]:
        row = conn.execute(select(queues_t).where(queues_t.c.name == name)).first()
        if row is None:
            raise NotFound(f"queue {name!r} not found")
        return row

    @staticmethod
    def _task_row(conn: Connection, task_id: str) -> Row[Any]:
        row = conn.execute(select(tasks_t).where(tasks_t.c.task_id == task_id)).first()
        if row is None:
            raise NotFound(f"task {task_id!r} not found")
        return row

    def _leased_task(
        self, conn: Connection, task_id: str, lease_id: str, labeler_id: str
    ) -> tuple[Row[Any], Row[Any], Row[Any]]:
        """The lease (locked), its task and queue, after checking it names this task and labeler."""
        lease = conn.execute(
            select(leases_t).where(leases_t.c.lease_id == lease_id).with_for_update()
        ).first()
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
        q = conn.execute(select(queues_t).where(queues_t.c.id == task.queue_id)).one()
        return lease, task, q

    @staticmethod
    def _release(conn: Connection, lease_id: str, now: dt.datetime, outcome: str) -> None:
        conn.execute(
            update(leases_t).where(leases_t.c.lease_id == lease_id).values(released_at=now, outcome=outcome)
        )

    @staticmethod
    def _available(q: Row[Any], labeler_id: str, now: dt.datetime) -> Any:
        """SQL condition: the task (of queue ``q``) can be leased to ``labeler_id`` at ``now``."""
        active_leases = (
            select(func.count())
            .select_from(leases_t)
            .where(leases_t.c.task_pk == tasks_t.c.id, _active_lease(now))
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

    @staticmethod
    def _task_state(conn: Connection, task: Row[Any], now: dt.datetime) -> TaskState:
        if task.state == TaskState.COMPLETED.value:
            return TaskState.COMPLETED
        leased = conn.execute(
            select(leases_t.c.lease_id).where(leases_t.c.task_pk == task.id, _active_lease(now)).limit(1)
        ).first()
        return TaskState.LEASED if leased else TaskState.OPEN

    def _queues_with_counts(
        self, conn: Connection, rows: Sequence[Row[Any]], now: dt.datetime
    ) -> list[Queue]:
        if not rows:
            return []
        ids = [r.id for r in rows]
        has_lease = exists().where(leases_t.c.task_pk == tasks_t.c.id, _active_lease(now))
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
                Queue(
                    name=r.name,
                    task_type=TaskType(r.task_type),
                    label_set=tuple(r.label_set),
                    rating_min=r.rating_min,
                    rating_max=r.rating_max,
                    labelers_per_task=r.labelers_per_task,
                    lease_seconds=r.lease_seconds,
                    instructions=r.instructions,
                    metadata=dict(r.meta or {}),
                    created_at=r.created_at,
                    open_tasks=total - completed - leased,
                    leased_tasks=leased,
                    completed_tasks=completed,
                    total_tasks=total,
                    labeling_functions=tuple(functions.get(r.id, ())),
                )
            )
        return queues


# --- helpers ---------------------------------------------------------------------------------


def _active_lease(now: dt.datetime) -> Any:
    return and_(leases_t.c.released_at.is_(None), leases_t.c.expires_at > now)


def _task(
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
        input=TaskInput(
            document_id=row.document_id or "",
            text=row.text,
            prompt=row.prompt,
            response=row.response,
            candidate_a=row.candidate_a,
            candidate_b=row.candidate_b,
            metadata=dict(row.meta or {}),
            snapshot_id=row.snapshot_id,
            source=TaskSource(row.source),
        ),
        state=state,
        created_at=row.created_at,
        label_count=row.human_label_count,
        lease_id=lease_id,
        lease_expires_at=lease_expires_at,
    )


def _label(row: Row[Any], q: Row[Any], task: Row[Any]) -> Label:
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


def _dataset_version(row: Row[Any]) -> DatasetVersion:
    lineage = row.lineage or {}
    return DatasetVersion(
        version_id=row.version_id,
        dataset=row.dataset,
        task_type=TaskType(row.task_type),
        train_count=row.train_count,
        eval_count=row.eval_count,
        eval_fraction=row.eval_fraction,
        seed=row.seed,
        created_at=row.created_at,
        lineage=DatasetLineage(
            snapshot_ids=tuple(lineage.get("snapshot_ids", ())),
            label_ids_count=int(lineage.get("label_ids_count", 0)),
            labeler_ids=tuple(lineage.get("labeler_ids", ())),
            queues=tuple(lineage.get("queues", ())),
        ),
        uri=row.uri,
        description=row.description,
    )


def _utc(value: dt.datetime) -> dt.datetime:
    # A caller may pass a naive time; the platform's times are UTC.
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _now(now: dt.datetime | None) -> dt.datetime:
    return dt.datetime.now(dt.UTC) if now is None else _utc(now)


def _check_id(field: str, value: str, *, limit: int = MAX_ID_CHARS) -> None:
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgument(f"{field} is empty")
    if len(value) > limit:
        raise InvalidArgument(f"{field} is longer than {limit} characters")


def _page_size(page_size: int) -> int:
    if page_size < 0:
        raise InvalidArgument(f"page_size must not be negative, got {page_size}")
    # 0 means "the default", as proto3 sends it when unset.
    return min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def _encode_token(position: str | int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": position}).encode()).decode()


def _decode_token(token: str, kind: type) -> Any:
    """The position a page token holds, or None for the first page."""
    if not token:
        return None
    try:
        position = json.loads(base64.urlsafe_b64decode(token.encode()))["after"]
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError):
        raise InvalidArgument(f"invalid page_token {token!r}") from None
    if type(position) is not kind:
        raise InvalidArgument(f"invalid page_token {token!r}")
    return position


def _chunks(values: Sequence[Any], size: int = _IN_CHUNK) -> Iterator[Sequence[Any]]:
    # Keeps IN (...) lists under the databases' bound-parameter limits.
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _lock_key(queue: str, labeler_id: str) -> int:
    """A signed 64-bit advisory lock key for (queue, labeler)."""
    digest = hashlib.sha256(f"labeling\x00{queue}\x00{labeler_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)
