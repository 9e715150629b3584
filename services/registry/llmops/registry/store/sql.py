"""The SQL backend of the registry store: SQLite by default, PostgreSQL by URL.

SQLAlchemy 2.x Core with a sync engine. ``sqlite:///path/registry.sqlite`` or
``postgresql+psycopg://user:password@host/db``. Concurrency, per backend:

* SQLite: every writing transaction starts with ``BEGIN IMMEDIATE``, which takes the database's write
  lock up front, so writers (threads or processes) are serialised and a read-then-write (read the
  latest version number, insert the next) cannot interleave with another; WAL keeps readers unblocked.
* PostgreSQL: a writing transaction locks its model's row (``SELECT ... FOR UPDATE``) before it reads
  anything it will decide on, so changes to one model are serialised and changes to different models
  run in parallel. Unique constraints ((model, version), training_job_id, model name) are the
  backstop: a transaction that loses a race on one is retried and then sees the winner's row.

Version numbers come from a counter on the model row (``latest_version``), not ``MAX(version) + 1``,
so the next number is decided under the same lock that serialises registrations.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Row,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from llmops.contracts.events import Event, ModelAliasChanged, ModelVersionRegistered
from llmops.core.sql import WRITE_OPTION, make_engine
from llmops.registry.domain.aliases import rollback_target
from llmops.registry.domain.errors import (
    AlreadyExists,
    GateFailed,
    InvalidArgument,
    NotFound,
    NothingToRollBack,
    VersionNotReady,
)
from llmops.registry.domain.gates import check_gate, evaluate_gate
from llmops.registry.domain.models import (
    AliasChange,
    AliasOperation,
    Comparator,
    DatasetVersionRecord,
    GateRule,
    IngestionBatchRecord,
    ModelDefaults,
    ModelVersion,
    Page,
    RegisteredModel,
    RegisteredVersion,
    VersionSpec,
    VersionStatus,
)
from llmops.registry.domain.values import (
    MAX_ID_CHARS,
    check_alias,
    check_model_name,
    check_text,
    check_version_number,
    check_version_spec,
)
from llmops.registry.store.base import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    LineageRecords,
    OutboxEvent,
    RegistryStore,
)

T = TypeVar("T")

PRODUCER = "registry"
# A transaction that lost a unique-constraint race (PostgreSQL) is retried this often.
_RACE_RETRIES = 3
_IN_CHUNK = 500

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


# Created with metadata.create_all when the store opens; there is no Alembic history yet, so a change
# to these tables needs a migration written at that point. Table names are prefixed where a generic
# name could clash with another service's tables in a shared PostgreSQL database.
metadata = MetaData()

models_t = Table(
    "registered_models",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("description", Text, nullable=False),
    Column("base_model", Text, nullable=False),
    # [{"metric": ..., "comparator": ">=", "threshold": ...}, ...]
    Column("gate", JSON, nullable=False),
    # The highest version number given out; the next registration takes latest_version + 1.
    Column("latest_version", BigInteger, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

versions_t = Table(
    "model_versions",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("model_id", _Id, ForeignKey("registered_models.id"), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("artifact_uri", Text, nullable=False),
    Column("base_model", Text, nullable=False),
    Column("adapter", Boolean, nullable=False),
    Column("adapter_kind", String(64), nullable=False),
    Column("metrics", JSON, nullable=False),
    Column("params", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    # NULL when the version was not made by a training job; NULLs are distinct, so only real job ids
    # are unique: one job, one version.
    Column("training_job_id", String(MAX_ID_CHARS), unique=True),
    Column("dataset_version_id", String(MAX_ID_CHARS), nullable=False),
    Column("description", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("trained_at", UTCDateTime),
    UniqueConstraint("model_id", "version", name="uq_model_versions_model_version"),
    Index("ix_model_versions_status", "status", "id"),
)

aliases_t = Table(
    "model_aliases",
    metadata,
    Column("model_id", _Id, ForeignKey("registered_models.id"), nullable=False),
    Column("alias", String(64), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("model_id", "alias", name="pk_model_aliases"),
)

alias_changes_t = Table(
    "model_alias_changes",
    metadata,
    # Insertion order is history order: "newest first" is ORDER BY id DESC.
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("model_id", _Id, ForeignKey("registered_models.id"), nullable=False),
    Column("alias", String(64), nullable=False),
    Column("from_version", BigInteger, nullable=False),
    Column("to_version", BigInteger, nullable=False),
    Column("actor", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("operation", String(16), nullable=False),
    Column("changed_at", UTCDateTime, nullable=False),
    Index("ix_model_alias_changes_model_alias", "model_id", "alias", "id"),
)

dataset_versions_t = Table(
    "lineage_dataset_versions",
    metadata,
    Column("version_id", String(MAX_ID_CHARS), primary_key=True),
    Column("dataset", String(MAX_ID_CHARS), nullable=False),
    Column("uri", Text, nullable=False),
    Column("train_count", BigInteger, nullable=False),
    Column("eval_count", BigInteger, nullable=False),
    Column("snapshot_ids", JSON, nullable=False),
    Column("queues", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

batches_t = Table(
    "lineage_ingestion_batches",
    metadata,
    Column("batch_id", String(MAX_ID_CHARS), primary_key=True),
    Column("dataset", String(MAX_ID_CHARS), nullable=False),
    # Content addressed: batches with the same content share a snapshot.
    Column("snapshot_id", String(MAX_ID_CHARS), nullable=False, index=True),
    Column("snapshot_uri", Text, nullable=False),
    Column("counts", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

outbox_t = Table(
    "registry_outbox",
    metadata,
    # Publication order is id order, so one model's events leave in the order they were made.
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("topic", String(255), nullable=False),
    Column("key", LargeBinary, nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)


class SqlRegistryStore(RegistryStore):
    """The registry store on SQLite or PostgreSQL (see the module docstring)."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        """Open (and create the tables of) the database at ``url``.

        ``sqlite:///:memory:`` gives a private in-memory database on one shared connection, for
        single-threaded tests; use a file for anything concurrent.
        """
        self.url = url
        self._engine = make_engine(url, echo=echo)
        # In a writing transaction, so that replicas starting together on one SQLite file do not race
        # to create the same tables.
        with self._write() as conn:
            metadata.create_all(conn)

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> SqlRegistryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- models ---------------------------------------------------------------------------------

    def create_model(
        self,
        name: str,
        *,
        description: str = "",
        base_model: str = "",
        gate: Sequence[GateRule] = (),
        now: dt.datetime | None = None,
    ) -> RegisteredModel:
        check_model_name(name, "name")
        check_text(description, "description")
        check_text(base_model, "base_model", 2048)
        rules = check_gate(gate)
        now = _now(now)
        try:
            with self._write() as conn:
                if conn.execute(select(models_t.c.id).where(models_t.c.name == name)).first():
                    raise AlreadyExists(f"model {name!r} already exists; use SetGate to change its gate")
                self._insert_model(conn, name, description, base_model, rules, now)
                return self._model(conn, self._model_row(conn, name))
        except IntegrityError:
            # Lost a race with a concurrent create of the same name (PostgreSQL).
            raise AlreadyExists(f"model {name!r} already exists; use SetGate to change its gate") from None

    def get_model(self, name: str) -> RegisteredModel:
        check_model_name(name, "name")
        with self._read() as conn:
            return self._model(conn, self._model_row(conn, name))

    def list_models(self, page_size: int = DEFAULT_PAGE_SIZE, page_token: str = "") -> Page[RegisteredModel]:
        size = _page_size(page_size)
        after = _decode_token(page_token, str)
        query = select(models_t).order_by(models_t.c.name).limit(size + 1)
        if after is not None:
            query = query.where(models_t.c.name > after)
        with self._read() as conn:
            rows = list(conn.execute(query))
            more = len(rows) > size
            rows = rows[:size]
            aliases = self._aliases_of(conn, [r.id for r in rows])
            items = [_model(r, aliases.get(r.id, {})) for r in rows]
        return Page(items, _encode_token(rows[-1].name) if more else "")

    def set_gate(
        self, name: str, gate: Sequence[GateRule], *, now: dt.datetime | None = None
    ) -> RegisteredModel:
        check_model_name(name)
        rules = check_gate(gate)
        now = _now(now)
        with self._write() as conn:
            row = self._model_row(conn, name, lock=True)
            conn.execute(
                update(models_t).where(models_t.c.id == row.id).values(gate=_gate_json(rules), updated_at=now)
            )
            return self._model(conn, self._model_row(conn, name))

    # --- versions -------------------------------------------------------------------------------

    def register_version(
        self,
        spec: VersionSpec,
        *,
        defaults: ModelDefaults | None = None,
        now: dt.datetime | None = None,
    ) -> RegisteredVersion:
        spec = check_version_spec(spec)
        if defaults is not None:
            check_gate(defaults.gate)
        now = _now(now)
        return self._retry_races(lambda: self._register(spec, defaults, now))

    def _register(
        self, spec: VersionSpec, defaults: ModelDefaults | None, now: dt.datetime
    ) -> RegisteredVersion:
        with self._write() as conn:
            if spec.training_job_id:
                existing = conn.execute(
                    select(versions_t, models_t.c.name.label("model_name"))
                    .join(models_t, models_t.c.id == versions_t.c.model_id)
                    .where(versions_t.c.training_job_id == spec.training_job_id)
                ).first()
                if existing is not None:
                    if existing.model_name != spec.model:
                        raise AlreadyExists(
                            f"training job {spec.training_job_id!r} is already registered as "
                            f"{existing.model_name} version {existing.version}; one job makes one version"
                        )
                    return RegisteredVersion(self._version(conn, existing, existing.model_name), False)
            model = self._find_model_row(conn, spec.model, lock=True)
            if model is None:
                if defaults is None:
                    raise NotFound(f"model {spec.model!r} not found: create it with CreateModel first")
                self._insert_model(
                    conn, spec.model, defaults.description, defaults.base_model, defaults.gate, now
                )
                model = self._model_row(conn, spec.model, lock=True)
            base_model = spec.base_model or model.base_model
            if not base_model:
                raise InvalidArgument(
                    f"base_model is empty and model {spec.model!r} has no base model: say which model "
                    "the weights or adapter belong to"
                )
            number = model.latest_version + 1
            conn.execute(
                update(models_t)
                .where(models_t.c.id == model.id)
                .values(latest_version=number, updated_at=now)
            )
            conn.execute(
                insert(versions_t).values(
                    model_id=model.id,
                    version=number,
                    artifact_uri=spec.artifact_uri,
                    base_model=base_model,
                    adapter=spec.adapter,
                    adapter_kind=spec.adapter_kind,
                    metrics=dict(spec.metrics),
                    params=dict(spec.params),
                    status=spec.status.value,
                    training_job_id=spec.training_job_id or None,
                    dataset_version_id=spec.dataset_version_id,
                    description=spec.description,
                    created_at=now,
                    trained_at=spec.trained_at,
                )
            )
            self._queue_event(
                conn,
                ModelVersionRegistered(
                    model=spec.model,
                    version=number,
                    artifact_uri=spec.artifact_uri,
                    base_model=base_model,
                    metrics=dict(spec.metrics),
                    occurred_at=now,
                    trace_id=spec.trace_id,
                    producer=PRODUCER,
                ),
                now,
            )
            return RegisteredVersion(self._version_by_number(conn, model, number), True)

    def get_version(self, model: str, version: int) -> ModelVersion:
        check_model_name(model)
        check_version_number(version)
        with self._read() as conn:
            return self._version_by_number(conn, self._model_row(conn, model), version)

    def get_version_by_alias(self, model: str, alias: str) -> ModelVersion:
        check_model_name(model)
        check_alias(alias)
        with self._read() as conn:
            row = self._model_row(conn, model)
            holder = self._alias_holder(conn, row.id, alias)
            if holder is None:
                raise NotFound(f"model {model!r} has no alias {alias!r}")
            return self._version_by_number(conn, row, holder)

    def list_versions(
        self, model: str, page_size: int = DEFAULT_PAGE_SIZE, page_token: str = ""
    ) -> Page[ModelVersion]:
        check_model_name(model)
        size = _page_size(page_size)
        before = _decode_token(page_token, int)
        with self._read() as conn:
            m = self._model_row(conn, model)
            query = (
                select(versions_t)
                .where(versions_t.c.model_id == m.id)
                .order_by(versions_t.c.version.desc())
                .limit(size + 1)
            )
            if before is not None:
                query = query.where(versions_t.c.version < before)
            rows = list(conn.execute(query))
            more = len(rows) > size
            rows = rows[:size]
            holders = self._aliases_of(conn, [m.id]).get(m.id, {})
            items = [_version(r, m.name, holders) for r in rows]
        return Page(items, _encode_token(rows[-1].version) if more else "")

    def versions_with_status(self, status: VersionStatus, limit: int = 100) -> list[ModelVersion]:
        with self._read() as conn:
            rows = list(
                conn.execute(
                    select(versions_t, models_t.c.name.label("model_name"))
                    .join(models_t, models_t.c.id == versions_t.c.model_id)
                    .where(versions_t.c.status == status.value)
                    .order_by(versions_t.c.id)
                    .limit(max(limit, 1))
                )
            )
            return [self._version(conn, r, r.model_name) for r in rows]

    def set_version_status(self, model: str, version: int, status: VersionStatus) -> ModelVersion:
        with self._write() as conn:
            m = self._model_row(conn, model, lock=True)
            row = self._version_row(conn, m, version)
            conn.execute(update(versions_t).where(versions_t.c.id == row.id).values(status=status.value))
            return self._version_by_number(conn, m, version)

    # --- aliases --------------------------------------------------------------------------------

    def move_alias(
        self,
        model: str,
        alias: str,
        version: int,
        *,
        operation: AliasOperation,
        actor: str = "",
        reason: str = "",
        now: dt.datetime | None = None,
    ) -> AliasChange:
        if operation not in (AliasOperation.SET, AliasOperation.PROMOTE):
            raise InvalidArgument(f"move_alias makes set or promote changes, not {operation.value}")
        check_model_name(model)
        check_alias(alias)
        check_version_number(version)
        _check_audit(actor, reason)
        now = _now(now)
        with self._write() as conn:
            m = self._model_row(conn, model, lock=True)
            target = self._version_row(conn, m, version)
            _require_ready(model, target)
            if operation == AliasOperation.PROMOTE:
                result = evaluate_gate(_gate(m.gate), target.metrics or {})
                if not result.passed:
                    raise GateFailed(
                        f"{model} version {version} does not pass the gate of {model} and stays off "
                        f"{alias!r}: {result.describe()}"
                    )
            current = self._alias_holder(conn, m.id, alias)
            if current == version:
                # Already there: a retried call must not add a history line or an event.
                return AliasChange(0, model, alias, version, version, actor, reason, operation, now)
            return self._change_alias(conn, m, alias, current or 0, target, operation, actor, reason, now)

    def delete_alias(
        self, model: str, alias: str, *, actor: str = "", reason: str = "", now: dt.datetime | None = None
    ) -> AliasChange:
        check_model_name(model)
        check_alias(alias)
        _check_audit(actor, reason)
        now = _now(now)
        with self._write() as conn:
            m = self._model_row(conn, model, lock=True)
            current = self._alias_holder(conn, m.id, alias)
            if current is None:
                raise NotFound(f"model {model!r} has no alias {alias!r}")
            return self._change_alias(
                conn, m, alias, current, None, AliasOperation.DELETE, actor, reason, now
            )

    def rollback_alias(
        self, model: str, alias: str, *, actor: str = "", reason: str = "", now: dt.datetime | None = None
    ) -> AliasChange:
        check_model_name(model)
        check_alias(alias)
        _check_audit(actor, reason)
        now = _now(now)
        with self._write() as conn:
            m = self._model_row(conn, model, lock=True)
            history = [
                _change(r, model)
                for r in conn.execute(
                    select(alias_changes_t)
                    .where(alias_changes_t.c.model_id == m.id, alias_changes_t.c.alias == alias)
                    .order_by(alias_changes_t.c.id)
                )
            ]
            if not history:
                raise NotFound(f"model {model!r} has no alias {alias!r}")
            target_number = rollback_target(history)
            current = self._alias_holder(conn, m.id, alias)
            if target_number is None:
                where = f"version {current}" if current else "no version (deleted)"
                raise NothingToRollBack(
                    f"alias {alias!r} of {model} points at {where} and has no earlier holder to roll "
                    "back to; use SetAlias to point it at a version"
                )
            target = self._version_row(conn, m, target_number)
            _require_ready(model, target)
            return self._change_alias(
                conn, m, alias, current or 0, target, AliasOperation.ROLLBACK, actor, reason, now
            )

    def alias_history(
        self, model: str, alias: str = "", page_size: int = DEFAULT_PAGE_SIZE, page_token: str = ""
    ) -> Page[AliasChange]:
        check_model_name(model)
        if alias:
            check_alias(alias)
        size = _page_size(page_size)
        before = _decode_token(page_token, int)
        with self._read() as conn:
            m = self._model_row(conn, model)
            query = (
                select(alias_changes_t)
                .where(alias_changes_t.c.model_id == m.id)
                .order_by(alias_changes_t.c.id.desc())
                .limit(size + 1)
            )
            if alias:
                query = query.where(alias_changes_t.c.alias == alias)
            if before is not None:
                query = query.where(alias_changes_t.c.id < before)
            rows = list(conn.execute(query))
            if alias and not rows and before is None:
                raise NotFound(f"model {model!r} has no alias {alias!r} (it was never set)")
        more = len(rows) > size
        rows = rows[:size]
        return Page([_change(r, model) for r in rows], _encode_token(rows[-1].id) if more else "")

    # --- lineage --------------------------------------------------------------------------------

    def record_dataset_version(self, record: DatasetVersionRecord) -> bool:
        _check_lineage_id("version_id", record.version_id)
        values = dict(
            version_id=record.version_id,
            dataset=record.dataset,
            uri=record.uri,
            train_count=record.train_count,
            eval_count=record.eval_count,
            snapshot_ids=list(record.snapshot_ids),
            queues=list(record.queues),
            created_at=record.created_at,
        )
        return self._insert_once(
            dataset_versions_t, dataset_versions_t.c.version_id, record.version_id, values
        )

    def record_ingestion_batch(self, record: IngestionBatchRecord) -> bool:
        _check_lineage_id("batch_id", record.batch_id)
        values = dict(
            batch_id=record.batch_id,
            dataset=record.dataset,
            snapshot_id=record.snapshot_id,
            snapshot_uri=record.snapshot_uri,
            counts=dict(record.counts),
            created_at=record.created_at,
        )
        return self._insert_once(batches_t, batches_t.c.batch_id, record.batch_id, values)

    def lineage_records(self, model: str, version: int) -> LineageRecords:
        check_model_name(model)
        check_version_number(version)
        with self._read() as conn:
            m = self._model_row(conn, model)
            mv = self._version_by_number(conn, m, version)
            dataset_version = None
            batches: list[IngestionBatchRecord] = []
            if mv.dataset_version_id:
                row = conn.execute(
                    select(dataset_versions_t).where(dataset_versions_t.c.version_id == mv.dataset_version_id)
                ).first()
                if row is not None:
                    dataset_version = _dataset_version(row)
                    for chunk in _chunks(list(dataset_version.snapshot_ids)):
                        batches.extend(
                            _batch(r)
                            for r in conn.execute(select(batches_t).where(batches_t.c.snapshot_id.in_(chunk)))
                        )
            history = [
                _change(r, model)
                for r in conn.execute(
                    select(alias_changes_t)
                    .where(alias_changes_t.c.model_id == m.id)
                    .order_by(alias_changes_t.c.id)
                )
            ]
        return LineageRecords(mv, dataset_version, batches, history)

    # --- outbox ---------------------------------------------------------------------------------

    def pending_events(self, limit: int = 100) -> list[OutboxEvent]:
        with self._read() as conn:
            rows = conn.execute(select(outbox_t).order_by(outbox_t.c.id).limit(max(limit, 1)))
            return [OutboxEvent(r.id, r.topic, bytes(r.key), r.payload) for r in rows]

    def remove_events(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        with self._write() as conn:
            for chunk in _chunks(list(ids)):
                conn.execute(delete(outbox_t).where(outbox_t.c.id.in_(chunk)))

    # --- internals ------------------------------------------------------------------------------

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
    def _retry_races(work: Callable[[], T]) -> T:
        for attempt in range(_RACE_RETRIES):
            try:
                return work()
            except IntegrityError:
                # Another transaction inserted the same model, job or version first (PostgreSQL, or
                # two SQLite stores that opened one file); running again sees its row.
                if attempt == _RACE_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    def _insert_once(self, table: Table, key_column: Column[Any], key: str, values: dict[str, Any]) -> bool:
        # Lineage records are immutable facts: the first delivery wins, redelivery changes nothing.
        try:
            with self._write() as conn:
                if conn.execute(select(key_column).where(key_column == key)).first() is not None:
                    return False
                conn.execute(insert(table).values(**values))
                return True
        except IntegrityError:
            return False

    @staticmethod
    def _insert_model(
        conn: Connection,
        name: str,
        description: str,
        base_model: str,
        gate: Sequence[GateRule],
        now: dt.datetime,
    ) -> None:
        conn.execute(
            insert(models_t).values(
                name=name,
                description=description,
                base_model=base_model,
                gate=_gate_json(gate),
                latest_version=0,
                created_at=now,
                updated_at=now,
            )
        )

    @staticmethod
    def _find_model_row(conn: Connection, name: str, *, lock: bool = False) -> Row[Any] | None:
        query = select(models_t).where(models_t.c.name == name)
        if lock:
            # PostgreSQL: serialises every change to this model; SQLite ignores it (BEGIN IMMEDIATE
            # already serialises writers).
            query = query.with_for_update()
        return conn.execute(query).first()

    def _model_row(self, conn: Connection, name: str, *, lock: bool = False) -> Row[Any]:
        row = self._find_model_row(conn, name, lock=lock)
        if row is None:
            raise NotFound(f"model {name!r} not found")
        return row

    @staticmethod
    def _version_row(conn: Connection, model: Row[Any], version: int) -> Row[Any]:
        row = conn.execute(
            select(versions_t).where(versions_t.c.model_id == model.id, versions_t.c.version == version)
        ).first()
        if row is None:
            latest = f"its latest is {model.latest_version}" if model.latest_version else "it has none"
            raise NotFound(f"model {model.name!r} has no version {version} ({latest})")
        return row

    def _version_by_number(self, conn: Connection, model: Row[Any], version: int) -> ModelVersion:
        return self._version(conn, self._version_row(conn, model, version), model.name)

    def _version(self, conn: Connection, row: Row[Any], model_name: str) -> ModelVersion:
        holders = self._aliases_of(conn, [row.model_id]).get(row.model_id, {})
        return _version(row, model_name, holders)

    def _model(self, conn: Connection, row: Row[Any]) -> RegisteredModel:
        return _model(row, self._aliases_of(conn, [row.id]).get(row.id, {}))

    @staticmethod
    def _aliases_of(conn: Connection, model_ids: Sequence[int]) -> dict[int, dict[str, int]]:
        out: dict[int, dict[str, int]] = {}
        for chunk in _chunks(list(model_ids)):
            for r in conn.execute(
                select(aliases_t).where(aliases_t.c.model_id.in_(chunk)).order_by(aliases_t.c.alias)
            ):
                out.setdefault(r.model_id, {})[r.alias] = int(r.version)
        return out

    @staticmethod
    def _alias_holder(conn: Connection, model_id: int, alias: str) -> int | None:
        row = conn.execute(
            select(aliases_t.c.version).where(aliases_t.c.model_id == model_id, aliases_t.c.alias == alias)
        ).first()
        return None if row is None else int(row.version)

    def _change_alias(
        self,
        conn: Connection,
        model: Row[Any],
        alias: str,
        from_version: int,
        target: Row[Any] | None,
        operation: AliasOperation,
        actor: str,
        reason: str,
        now: dt.datetime,
    ) -> AliasChange:
        """Move (``target`` set) or remove (None) an alias, record the change and queue its event."""
        to_version = 0 if target is None else int(target.version)
        where = (aliases_t.c.model_id == model.id) & (aliases_t.c.alias == alias)
        if target is None:
            conn.execute(delete(aliases_t).where(where))
        elif from_version:
            conn.execute(update(aliases_t).where(where).values(version=to_version, updated_at=now))
        else:
            conn.execute(
                insert(aliases_t).values(model_id=model.id, alias=alias, version=to_version, updated_at=now)
            )
        change_id = conn.execute(
            insert(alias_changes_t).values(
                model_id=model.id,
                alias=alias,
                from_version=from_version,
                to_version=to_version,
                actor=actor,
                reason=reason,
                operation=operation.value,
                changed_at=now,
            )
        ).inserted_primary_key[0]
        conn.execute(update(models_t).where(models_t.c.id == model.id).values(updated_at=now))
        if target is None:
            # Serving needs the base model of what it unloads as much as of what it loads.
            base_model = self._version_row(conn, model, from_version).base_model
        else:
            base_model = target.base_model
        self._queue_event(
            conn,
            ModelAliasChanged(
                model=model.name,
                alias=alias,
                version=to_version or None,
                previous_version=from_version or None,
                artifact_uri="" if target is None else target.artifact_uri,
                base_model=base_model,
                actor=actor,
                reason=reason,
                occurred_at=now,
                producer=PRODUCER,
            ),
            now,
        )
        return AliasChange(
            int(change_id), model.name, alias, from_version, to_version, actor, reason, operation, now
        )

    @staticmethod
    def _queue_event(conn: Connection, event: Event, now: dt.datetime) -> None:
        conn.execute(
            insert(outbox_t).values(
                topic=event.topic, key=event.kafka_key(), payload=event.model_dump_json(), created_at=now
            )
        )


# --- helpers -------------------------------------------------------------------------------------


def _gate_json(rules: Sequence[GateRule]) -> list[dict[str, Any]]:
    return [{"metric": r.metric, "comparator": r.comparator.value, "threshold": r.threshold} for r in rules]


def _gate(value: Any) -> tuple[GateRule, ...]:
    return tuple(
        GateRule(r["metric"], Comparator(r["comparator"]), float(r["threshold"])) for r in value or ()
    )


def _model(row: Row[Any], aliases: dict[str, int]) -> RegisteredModel:
    return RegisteredModel(
        name=row.name,
        description=row.description,
        base_model=row.base_model,
        gate=_gate(row.gate),
        aliases=dict(aliases),
        latest_version=int(row.latest_version),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _version(row: Row[Any], model_name: str, holders: dict[str, int]) -> ModelVersion:
    return ModelVersion(
        model=model_name,
        version=int(row.version),
        artifact_uri=row.artifact_uri,
        base_model=row.base_model,
        adapter=bool(row.adapter),
        adapter_kind=row.adapter_kind,
        metrics={k: float(v) for k, v in (row.metrics or {}).items()},
        params={k: str(v) for k, v in (row.params or {}).items()},
        status=VersionStatus(row.status),
        training_job_id=row.training_job_id or "",
        dataset_version_id=row.dataset_version_id,
        description=row.description,
        created_at=row.created_at,
        aliases=tuple(sorted(a for a, v in holders.items() if v == row.version)),
        trained_at=row.trained_at,
    )


def _change(row: Row[Any], model_name: str) -> AliasChange:
    return AliasChange(
        id=int(row.id),
        model=model_name,
        alias=row.alias,
        from_version=int(row.from_version),
        to_version=int(row.to_version),
        actor=row.actor,
        reason=row.reason,
        operation=AliasOperation(row.operation),
        changed_at=row.changed_at,
    )


def _dataset_version(row: Row[Any]) -> DatasetVersionRecord:
    return DatasetVersionRecord(
        version_id=row.version_id,
        dataset=row.dataset,
        uri=row.uri,
        train_count=int(row.train_count),
        eval_count=int(row.eval_count),
        snapshot_ids=tuple(row.snapshot_ids or ()),
        queues=tuple(row.queues or ()),
        created_at=row.created_at,
    )


def _batch(row: Row[Any]) -> IngestionBatchRecord:
    return IngestionBatchRecord(
        batch_id=row.batch_id,
        dataset=row.dataset,
        snapshot_id=row.snapshot_id,
        snapshot_uri=row.snapshot_uri,
        counts={k: int(v) for k, v in (row.counts or {}).items()},
        created_at=row.created_at,
    )


def _require_ready(model: str, version: Row[Any]) -> None:
    if version.status != VersionStatus.READY.value:
        raise VersionNotReady(
            f"{model} version {version.version} is {version.status}: only ready versions (artifact "
            "verified) can hold an alias"
        )


def _check_audit(actor: str, reason: str) -> None:
    check_text(actor, "actor", MAX_ID_CHARS)
    check_text(reason, "reason")


def _check_lineage_id(field: str, value: str) -> None:
    if not value:
        raise InvalidArgument(f"{field} is empty")
    check_text(value, field, MAX_ID_CHARS)


def _utc(value: dt.datetime) -> dt.datetime:
    # A caller may pass a naive time; the platform's times are UTC.
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _now(now: dt.datetime | None) -> dt.datetime:
    return dt.datetime.now(dt.UTC) if now is None else _utc(now)


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
        raise InvalidArgument(f"page_token {token!r} is not a token this registry gave out") from None
    if type(position) is not kind:
        raise InvalidArgument(f"page_token {token!r} is not a token this registry gave out")
    return position


def _chunks(values: Sequence[Any], size: int = _IN_CHUNK) -> Iterator[Sequence[Any]]:
    # Keeps IN (...) lists under the databases' bound-parameter limits.
    for start in range(0, len(values), size):
        yield values[start : start + size]
