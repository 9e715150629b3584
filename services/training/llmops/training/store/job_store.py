"""The job store: training jobs in SQL, on llmops.core.sql (transactions, paging, migrations).

SQLAlchemy 2.x Core with a sync engine; the service calls it from threads. State changes are
conditional updates (``UPDATE ... WHERE state IN (...)``), so a cancel and a job finishing at the
same moment cannot both win.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Row, insert, select, update
from sqlalchemy.exc import IntegrityError

from llmops.contracts.events import Event
from llmops.core.errors import NotFound
from llmops.core.sql import DEFAULT_PAGE_SIZE, Page, SqlStore, keyset_page, utc_now
from llmops.training.spec import JobSpec, JobState
from llmops.training.store.tables import jobs_t, metadata


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


class JobStore(SqlStore):
    """Persistence of training jobs (see the module docstring)."""

    metadata = metadata
    migrations = Path(__file__).parent / "migrations"
    service = "training"

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
        now = utc_now()
        job_id = uuid.uuid4().hex
        try:
            with self._write() as conn:
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
                # From training.requested: the job and the event's mark commit together.
                self._mark_handled(conn)
        except IntegrityError:
            # A concurrent submission with the same key won the insert.
            existing = self.by_key(idempotency_key) if idempotency_key else None
            if existing is None:
                raise
            return existing, False
        return self.get(job_id), True

    def transition(
        self,
        job_id: str,
        from_states: Collection[JobState],
        to_state: JobState,
        *,
        announce: Event | None = None,
        **values: Any,
    ) -> Job | None:
        """Move the job to ``to_state`` (and set ``values``) if it is in one of ``from_states``; the
        change queues ``announce`` (the outbox), so the event leaves if and only if the change holds.

        Returns:
            The updated job, or None when it was in another state (nothing changed).
        """
        now = utc_now()
        values = {"state": to_state.value, "updated_at": now, **values}
        if to_state.terminal:
            values.setdefault("finished_at", now)
        with self._write() as conn:
            changed = conn.execute(
                update(jobs_t)
                .where(jobs_t.c.job_id == job_id, jobs_t.c.state.in_([s.value for s in from_states]))
                .values(**values)
            ).rowcount
            if changed and announce is not None:
                self._announce(conn, announce, now=now)
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
            started_at=job.started_at or utc_now(),
        )

    def set_progress(self, job_id: str, progress: dict[str, Any], announce: Event | None = None) -> None:
        with self._write() as conn:
            conn.execute(
                update(jobs_t)
                .where(jobs_t.c.job_id == job_id)
                .values(progress=progress, updated_at=utc_now())
            )
            if announce is not None:
                self._announce(conn, announce)

    def set_registered_version(self, adapter_uri: str, version: int) -> str | None:
        """Record the registry version of the job whose adapter is at ``adapter_uri``; its job id."""
        if not adapter_uri:
            return None
        with self._write() as conn:
            row = conn.execute(select(jobs_t.c.job_id).where(jobs_t.c.adapter_uri == adapter_uri)).first()
            if row is None:
                return None
            conn.execute(
                update(jobs_t).where(jobs_t.c.job_id == row.job_id).values(registered_version=version)
            )
            self._mark_handled(conn)
        return row.job_id

    def requeue_running(self) -> list[str]:
        """RUNNING -> QUEUED for every job (the service stopped while they ran); their ids."""
        with self._write() as conn:
            ids = [
                r.job_id
                for r in conn.execute(select(jobs_t.c.job_id).where(jobs_t.c.state == JobState.RUNNING.value))
            ]
            if ids:
                conn.execute(
                    update(jobs_t)
                    .where(jobs_t.c.job_id.in_(ids), jobs_t.c.state == JobState.RUNNING.value)
                    .values(state=JobState.QUEUED.value, updated_at=utc_now())
                )
        return ids

    # --- reads ------------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        """The job ``job_id``.

        Raises:
            NotFound: no such job.
        """
        with self._read() as conn:
            row = conn.execute(select(jobs_t).where(jobs_t.c.job_id == job_id)).first()
        if row is None:
            raise NotFound(f"training job {job_id!r} not found")
        return _job(row)

    def by_key(self, idempotency_key: str) -> Job | None:
        with self._read() as conn:
            row = conn.execute(select(jobs_t).where(jobs_t.c.idempotency_key == idempotency_key)).first()
        return _job(row) if row else None

    def next_queued(self) -> Job | None:
        """The oldest QUEUED job (the queue is first in, first out)."""
        with self._read() as conn:
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
    ) -> Page[Job]:
        """Jobs newest first, optionally of one state and/or model name, ``page_size`` at a time.

        Raises:
            InvalidArgument: a malformed page token or a negative page size.
        """
        query = select(jobs_t)
        if state is not None:
            query = query.where(jobs_t.c.state == state.value)
        if model_name:
            query = query.where(jobs_t.c.model_name == model_name)
        with self._read() as conn:
            rows = keyset_page(conn, query, jobs_t.c.id, page_size, page_token, descending=True)
        return rows.map(_job)


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
