"""The job store: training jobs in SQL (SQLite by default, PostgreSQL by URL).

SQLAlchemy 2.x Core with a sync engine; the service calls it from threads. State changes are
conditional updates (``UPDATE ... WHERE state IN (...)``), so a cancel and a job finishing at the
same moment cannot both win.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    Row,
    String,
    Table,
    Text,
    TypeDecorator,
    create_engine,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import StaticPool

from llmops.training.spec import InvalidSpec, JobSpec, JobState, NotFound

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100
_Id = BigInteger().with_variant(Integer, "sqlite")


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes in and out; naive UTC where the database has no time zones."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        value = value.astimezone(dt.UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


metadata = MetaData()

# Created with metadata.create_all when the store opens; a schema change needs a migration then.
jobs_t = Table(
    "jobs",
    metadata,
    # Insertion order: the queue is FIFO on it, and listings page on it (newest first).
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("job_id", String(64), nullable=False, unique=True),
    # NULLs are distinct in a unique index, so jobs submitted without a key never collide.
    Column("idempotency_key", String(256), unique=True),
    Column("model_name", String(128), nullable=False),
    Column("spec", JSON, nullable=False),
    Column("state", String(16), nullable=False),
    # Where the job reads its data and base model from, resolved once at submission.
    Column("dataset_uri", Text, nullable=False),
    Column("base_model_path", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime),
    Column("finished_at", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("progress", JSON),
    Column("metrics", JSON, nullable=False),
    Column("adapter_uri", Text, nullable=False),
    Column("error", Text, nullable=False),
    # The Ray Train run name of the latest attempt (<job_id>, then <job_id>-r<n> after a restart).
    Column("ray_run_name", String(128), nullable=False),
    Column("attempts", Integer, nullable=False),
    # The registry's version of the adapter (from models.version_registered); 0 until then.
    Column("registered_version", Integer, nullable=False, default=0),
    Index("ix_jobs_state", "state", "id"),
    Index("ix_jobs_model", "model_name", "id"),
)


@dataclass(frozen=True)
class Job:
    """A training job as stored."""

    job_id: str
    spec: JobSpec
    state: JobState
    dataset_uri: str
    base_model_path: str
    created_at: dt.datetime
    updated_at: dt.datetime
    idempotency_key: str = ""
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    progress: dict[str, Any] | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    adapter_uri: str = ""
    error: str = ""
    ray_run_name: str = ""
    attempts: int = 0
    registered_version: int = 0


@dataclass(frozen=True)
class Page:
    jobs: list[Job]
    next_page_token: str


class JobStore:
    """Persistence of training jobs (see the module docstring)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine = _make_engine(url)
        with self._engine.begin() as conn:
            metadata.create_all(conn)

    def close(self) -> None:
        self._engine.dispose()

    # --- writes -----------------------------------------------------------------------------------

    def create(
        self, spec: JobSpec, idempotency_key: str, dataset_uri: str, base_model_path: str
    ) -> tuple[Job, bool]:
        """Insert a QUEUED job; with a known ``idempotency_key``, return that job instead.

        Returns:
            The job and whether it was created now.
        """
        if idempotency_key and (existing := self.by_key(idempotency_key)) is not None:
            return existing, False
        now = _now()
        job_id = uuid.uuid4().hex
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    insert(jobs_t).values(
                        job_id=job_id,
                        idempotency_key=idempotency_key or None,
                        model_name=spec.model_name,
                        spec=spec.model_dump(mode="json"),
                        state=JobState.QUEUED.value,
                        dataset_uri=dataset_uri,
                        base_model_path=base_model_path,
                        created_at=now,
                        updated_at=now,
                        metrics={},
                        adapter_uri="",
                        error="",
                        ray_run_name="",
                        attempts=0,
                    )
                )
        except IntegrityError:
            # A concurrent submission with the same key won the insert.
            existing = self.by_key(idempotency_key) if idempotency_key else None
            if existing is None:
                raise
            return existing, False
        return self.get(job_id), True

    def transition(
        self, job_id: str, from_states: Collection[JobState], to_state: JobState, **values: Any
    ) -> Job | None:
        """Move the job to ``to_state`` (and set ``values``) if it is in one of ``from_states``.

        Returns:
            The updated job, or None when it was in another state (nothing changed).
        """
        now = _now()
        values = {"state": to_state.value, "updated_at": now, **values}
        if to_state.terminal:
            values.setdefault("finished_at", now)
        with self._engine.begin() as conn:
            changed = conn.execute(
                update(jobs_t)
                .where(jobs_t.c.job_id == job_id, jobs_t.c.state.in_([s.value for s in from_states]))
                .values(**values)
            ).rowcount
        return self.get(job_id) if changed else None

    def start_attempt(self, job_id: str) -> Job | None:
        """QUEUED -> RUNNING for a new attempt: attempts + 1, a fresh Ray run name, started_at once."""
        job = self.get(job_id)
        attempt = job.attempts + 1
        run_name = job_id if attempt == 1 else f"{job_id}-r{attempt}"
        return self.transition(
            job_id,
            [JobState.QUEUED],
            JobState.RUNNING,
            attempts=attempt,
            ray_run_name=run_name,
            started_at=job.started_at or _now(),
        )

    def set_progress(self, job_id: str, progress: dict[str, Any]) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                update(jobs_t).where(jobs_t.c.job_id == job_id).values(progress=progress, updated_at=_now())
            )

    def set_registered_version(self, adapter_uri: str, version: int) -> str | None:
        """Record the registry version of the job whose adapter is at ``adapter_uri``; its job id."""
        if not adapter_uri:
            return None
        with self._engine.begin() as conn:
            row = conn.execute(select(jobs_t.c.job_id).where(jobs_t.c.adapter_uri == adapter_uri)).first()
            if row is None:
                return None
            conn.execute(
                update(jobs_t).where(jobs_t.c.job_id == row.job_id).values(registered_version=version)
            )
        return row.job_id

    def requeue_running(self) -> list[str]:
        """RUNNING -> QUEUED for every job (the service stopped while they ran); their ids."""
        with self._engine.begin() as conn:
            ids = [
                r.job_id
                for r in conn.execute(select(jobs_t.c.job_id).where(jobs_t.c.state == JobState.RUNNING.value))
            ]
            if ids:
                conn.execute(
                    update(jobs_t)
                    .where(jobs_t.c.job_id.in_(ids), jobs_t.c.state == JobState.RUNNING.value)
                    .values(state=JobState.QUEUED.value, updated_at=_now())
                )
        return ids

    # --- reads ------------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        """The job ``job_id``.

        Raises:
            NotFound: no such job.
        """
        with self._engine.connect() as conn:
            row = conn.execute(select(jobs_t).where(jobs_t.c.job_id == job_id)).first()
        if row is None:
            raise NotFound(f"training job {job_id!r} not found")
        return _job(row)

    def by_key(self, idempotency_key: str) -> Job | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(jobs_t).where(jobs_t.c.idempotency_key == idempotency_key)).first()
        return _job(row) if row else None

    def next_queued(self) -> Job | None:
        """The oldest QUEUED job (the queue is first in, first out)."""
        with self._engine.connect() as conn:
            row = conn.execute(
                select(jobs_t).where(jobs_t.c.state == JobState.QUEUED.value).order_by(jobs_t.c.id).limit(1)
            ).first()
        return _job(row) if row else None

    def list(
        self,
        state: JobState | None = None,
        model_name: str = "",
        page_size: int = DEFAULT_PAGE_SIZE,
        page_token: str = "",
    ) -> Page:
        """Jobs newest first, optionally of one state and/or model name, ``page_size`` at a time.

        Raises:
            InvalidSpec: a malformed page token or page size.
        """
        if page_size < 0:
            raise InvalidSpec(f"page_size must be >= 0, got {page_size}")
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        query = select(jobs_t).order_by(jobs_t.c.id.desc()).limit(size + 1)
        if state is not None:
            query = query.where(jobs_t.c.state == state.value)
        if model_name:
            query = query.where(jobs_t.c.model_name == model_name)
        if page_token:
            query = query.where(jobs_t.c.id < _decode_token(page_token))
        with self._engine.connect() as conn:
            rows = list(conn.execute(query))
        more = len(rows) > size
        rows = rows[:size]
        return Page([_job(r) for r in rows], _encode_token(rows[-1].id) if more else "")


def _job(row: Row[Any]) -> Job:
    return Job(
        job_id=row.job_id,
        spec=JobSpec.model_validate(row.spec),
        state=JobState(row.state),
        dataset_uri=row.dataset_uri,
        base_model_path=row.base_model_path,
        created_at=row.created_at,
        updated_at=row.updated_at,
        idempotency_key=row.idempotency_key or "",
        started_at=row.started_at,
        finished_at=row.finished_at,
        progress=row.progress,
        metrics=dict(row.metrics or {}),
        adapter_uri=row.adapter_uri,
        error=row.error,
        ray_run_name=row.ray_run_name,
        attempts=row.attempts,
        registered_version=row.registered_version or 0,
    )


def _encode_token(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"jobs:{last_id}".encode()).decode()


def _decode_token(token: str) -> int:
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
        prefix, value = text.split(":", 1)
        if prefix != "jobs":
            raise ValueError(prefix)
        return int(value)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidSpec(f"page_token {token!r} is not a token this service returned") from None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True)
    database = parsed.database or ""
    memory = database in ("", ":memory:")
    options: dict[str, Any] = {"connect_args": {"timeout": 30, "check_same_thread": False}}
    if memory:
        options["poolclass"] = StaticPool
    else:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, **options)

    if not memory:

        @event.listens_for(engine, "connect")
        def _wal(dbapi_connection: Any, _record: Any) -> None:
            # Readers (ListJobs, StreamProgress) do not block the runner's progress writes.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

    return engine
