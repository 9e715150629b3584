"""Services' metadata stores in SQL (SQLite by default, PostgreSQL by URL): the one engine factory,
the shared column types, ids, paging tokens, transactions and Alembic migrations.

On SQLite, concurrent writers are made safe the SQLite way: WAL (readers never block the writer),
and write transactions that start with ``BEGIN IMMEDIATE`` so two writers cannot both read and then
both try to upgrade their lock. A store marks a transaction as a write with
``conn.execution_options(**{WRITE_OPTION: True})`` before it begins.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Connection,
    DateTime,
    Dialect,
    Engine,
    Integer,
    MetaData,
    Select,
    Table,
    TypeDecorator,
    create_engine,
    event,
    inspect,
)
from sqlalchemy.engine import Row, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError
from sqlalchemy.pool import StaticPool

from llmops.core.errors import InvalidArgument

log = logging.getLogger(__name__)

T = TypeVar("T")

WRITE_OPTION = "llmops_write"
# Set on a connection by a write transaction that queued outbox events (llmops.core.outbox) or marked
# the delivery in progress as handled (llmops.core.handled_events); read when it commits.
QUEUED_FLAG = "llmops_outbox_queued"
MARK_FLAG = "llmops_handled_mark"
SCHEMES = ("sqlite", "postgresql")
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100
# Keeps IN (...) lists under the databases' bound-parameter limits.
IN_CHUNK = 500
# A transaction that lost a unique-constraint race is run again this often.
RACE_RETRIES = 3

# Auto-increment ids: BIGINT on servers, but SQLite only auto-increments "INTEGER PRIMARY KEY".
AutoId = BigInteger().with_variant(Integer, "sqlite")


def check_database_url(value: str, setting: str) -> str:
    """``value`` if it is a sqlite:/// or postgresql URL, else ValueError naming ``setting``."""
    try:
        scheme = make_url(value).get_backend_name()
    except ArgumentError:
        scheme = ""
    if scheme not in SCHEMES:
        raise ValueError(f"{setting} must be a sqlite:///path or postgresql+psycopg://... URL")
    return value


def utc(value: dt.datetime) -> dt.datetime:
    """``value`` as an aware UTC datetime (a naive one is taken to be UTC already)."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def utc_now(now: dt.datetime | None = None) -> dt.datetime:
    """``now`` in UTC, or the current time when None (stores take ``now`` for tests)."""
    return dt.datetime.now(dt.UTC) if now is None else utc(now)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes in and out; stored as naive UTC where the database has no time zones."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        value = utc(value)
        # SQLite compares datetimes as text: every stored value must be in the same (UTC) zone.
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        return None if value is None else utc(value)


def page_size(size: int) -> int:
    """The page size to use for a request's ``page_size`` (0: the default; capped)."""
    if size < 0:
        raise InvalidArgument(f"page_size must not be negative, got {size}")
    # 0 means "the default", as proto3 sends it when unset.
    return min(size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_page_token(position: str | int) -> str:
    """An opaque token for the page after ``position`` (the last item's sort key)."""
    return base64.urlsafe_b64encode(json.dumps({"after": position}).encode()).decode()


def decode_page_token(token: str, kind: type) -> Any:
    """The position a page token holds (of type ``kind``), or None for the first page."""
    if not token:
        return None
    try:
        position = json.loads(base64.urlsafe_b64decode(token.encode()))["after"]
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError):
        raise InvalidArgument(f"page_token {token!r} is not a token this service gave out") from None
    if type(position) is not kind:
        raise InvalidArgument(f"page_token {token!r} is not a token this service gave out")
    return position


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing; ``next_page_token`` is empty on the last page."""

    items: Sequence[T]
    next_page_token: str = ""

    def map(self, of: Callable[[Any], T]) -> Page[T]:
        return Page([of(item) for item in self.items], self.next_page_token)


def keyset_page(
    conn: Connection,
    query: Select[Any],
    key: ColumnElement[Any],
    size: int,
    token: str,
    *,
    descending: bool = False,
) -> Page[Row[Any]]:
    """The rows of ``query`` ordered by the unique ``key``, ``size`` of them (0: the default) after
    the position ``token`` holds: keyset paging, stable while rows are added."""
    size = page_size(size)
    kind = int if isinstance(key.type, (Integer, BigInteger)) else str
    position = decode_page_token(token, kind)
    query = query.order_by(key.desc() if descending else key).limit(size + 1)
    if position is not None:
        query = query.where(key < position if descending else key > position)
    rows = list(conn.execute(query))
    if len(rows) <= size:
        return Page(rows)
    rows = rows[:size]
    return Page(rows, encode_page_token(rows[-1]._mapping[key]))


def values_of(table: Table, record: Any, /, **overrides: Any) -> dict[str, Any]:
    """Values for an insert into ``table``: ``overrides``, and else the attribute of ``record`` named
    like each column (columns the record has no attribute for are left to their defaults, and an
    auto-incremented key to the database)."""
    unknown = set(overrides) - set(table.columns.keys())
    if unknown:
        raise TypeError(f"table {table.name} has no column(s) {', '.join(sorted(unknown))}")
    values = {
        c.name: getattr(record, c.name)
        for c in table.columns
        if hasattr(record, c.name) and not (c.primary_key and c.autoincrement is True)
    }
    return {**values, **overrides}


def auto_id() -> Column[int]:
    """The surrogate key most tables start with: ``id``, auto-incremented, in insertion order."""
    return Column("id", AutoId, primary_key=True, autoincrement=True)


def chunks(values: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    """``values`` in slices of at most ``size`` (for IN lists)."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """An engine for ``url``; SQLite files get their folder created, WAL and BEGIN IMMEDIATE writes."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, echo=echo, pool_pre_ping=True)
    database = parsed.database or ""
    memory = database in ("", ":memory:") or database.startswith("file::memory:")
    options: dict[str, Any] = {"connect_args": {"timeout": 30, "check_same_thread": False}}
    if memory:
        # One connection, or every checkout would see a different empty database.
        options["poolclass"] = StaticPool
    else:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, echo=echo, **options)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module (it would not BEGIN before a SELECT);
        # the "begin" hook below emits BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        if not memory:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A write transaction on ``engine`` (on SQLite it takes the write lock at BEGIN)."""
    with engine.connect() as conn:
        # Read by the SQLite "begin" hook: take the write lock at BEGIN (BEGIN IMMEDIATE).
        conn.execution_options(**{WRITE_OPTION: True})
        with conn.begin():
            yield conn


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn, conn.begin():
        yield conn


def insert_ignoring_duplicates(table: Table, dialect: str) -> Any:
    """``INSERT`` into ``table`` that leaves a row whose key exists as it is (ON CONFLICT DO NOTHING)."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return (pg_insert if dialect == "postgresql" else sqlite_insert)(table).on_conflict_do_nothing()


class SqlStore:
    """Base of a service's SQL store: the engine, read and write transactions, migrations at open.

    A subclass sets ``metadata`` (its tables) and ``migrations`` (the Alembic folder of its schema);
    opening the store brings the database to the newest revision.

    Where ``metadata`` holds the service's outbox (:func:`llmops.core.outbox.outbox_table`) and
    handled-events table (:func:`llmops.core.handled_events.handled_table`), the store has an
    ``outbox`` and a ``handled`` record, and its write transactions can announce events
    (:meth:`_announce`) and mark the delivery in progress as handled (:meth:`_mark_handled`), both
    committed with the change.
    """

    metadata: MetaData
    migrations: Path
    service: str

    def __init__(self, url: str, *, echo: bool = False) -> None:
        from llmops.core.handled_events import HandledEvents
        from llmops.core.outbox import Outbox

        self.url = url
        self._engine = make_engine(url, echo=echo)
        with self._write() as conn:
            migrate(conn, self.migrations, self.service, self.metadata)
        outbox = self.metadata.tables.get(f"{self.service}_outbox")
        handled = self.metadata.tables.get(f"{self.service}_handled_events")
        self.outbox: Outbox | None = None if outbox is None else Outbox(self._engine, outbox, self.service)
        self.handled: HandledEvents | None = None if handled is None else HandledEvents(self._engine, handled)

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._engine.connect() as conn:
            conn.execution_options(**{WRITE_OPTION: True})
            try:
                with conn.begin():
                    yield conn
            except BaseException:
                conn.info.pop(QUEUED_FLAG, None)
                conn.info.pop(MARK_FLAG, None)
                raise
            # Committed: the mark holds, and the relay can publish what was queued.
            if (delivery := conn.info.pop(MARK_FLAG, None)) is not None:
                delivery.marked = True
            if conn.info.pop(QUEUED_FLAG, False) and self.outbox is not None:
                self.outbox.wake()

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with read_transaction(self._engine) as conn:
            yield conn

    def _announce(self, conn: Connection, *events: Any, now: dt.datetime | None = None) -> None:
        """Queue ``events`` in the outbox, in ``conn``'s transaction: published once it commits."""
        if self.outbox is None:
            raise TypeError(f"{type(self).__name__} has no outbox table ({self.service}_outbox)")
        self.outbox.add(conn, events, now)

    def _mark_handled(self, conn: Connection) -> None:
        """Mark the event being handled (if any) in ``conn``'s transaction; raises
        :class:`~llmops.core.handled_events.AlreadyHandled` when it was handled already."""
        if self.handled is not None:
            self.handled.mark_current(conn)

    @staticmethod
    def _retry_races(work: Callable[[], T]) -> T:
        """Run ``work`` again when it lost a unique-constraint race (it then sees the winner's row)."""
        for attempt in range(RACE_RETRIES):
            try:
                return work()
            except IntegrityError:
                if attempt == RACE_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")


def migrate(conn: Connection, location: Path, service: str, metadata: MetaData) -> str:
    """Bring the schema on ``conn`` to the newest Alembic revision in ``location``; returns it.

    The tables' definitions (``metadata``) are the one statement of the schema: a new database is
    made from them and stamped at the newest revision (Alembic's "building an up to date database
    from scratch"); revisions hold only changes. Revision ``0001`` is the baseline: the schema of the
    release before migrations, which made its tables with ``create_all`` and kept no version, so
    such a database is stamped there and upgraded.

    Each service keeps its own version table (``alembic_version_<service>``), so services can share
    one PostgreSQL database.
    """
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(location))
    script = ScriptDirectory.from_config(config)
    version_table = f"alembic_version_{service}"
    existing = set(inspect(conn).get_table_names())
    head = script.get_current_head() or ""
    if version_table not in existing:
        if existing & set(metadata.tables):
            base = script.get_base()
            log.info("%s: stamping a store from before migrations at revision %s", service, base)
            _run(
                config, script, conn, version_table, metadata, lambda rev, ctx: script._stamp_revs(base, rev)
            )
        else:
            metadata.create_all(conn)
            _run(
                config, script, conn, version_table, metadata, lambda rev, ctx: script._stamp_revs(head, rev)
            )
            return head
    _run(config, script, conn, version_table, metadata, lambda rev, ctx: script._upgrade_revs("head", rev))
    return head


def _run(
    config: Any, script: Any, conn: Connection, version_table: str, metadata: MetaData, fn: Callable
) -> None:
    from alembic.runtime.environment import EnvironmentContext

    with EnvironmentContext(config, script, fn=fn) as env:
        env.configure(
            connection=conn,
            target_metadata=metadata,
            version_table=version_table,
            render_as_batch=True,
            transactional_ddl=False,
        )
        env.run_migrations()
