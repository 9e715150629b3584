"""ClickHouse: the platform's one client factory, migration runner and read-only query guard.

One machine uses the in-process engine chdb (``chdb:///abs/folder``); production uses a server
(``http(s)://user:password@host:8123/database``). Measured facts about chdb that shape this module:

* One process can open a chdb folder, and a process can have one folder open at a time (another
  folder opens only after every client of the first is closed).
* Only the sync client works; callers run it in a single worker thread.
* ``readonly=1`` on a query refuses writes (INSERT, also after WITH; DDL; ALTER; OPTIMIZE; SYSTEM;
  SET) and the table functions that reach outside (file, url, s3, remote, executable, ...), but it
  does NOT stop ``SELECT ... INTO OUTFILE`` (the file is written), the scalar ``file('/path')``
  (it reads any file) or ``DESCRIBE url(...)`` / ``DESCRIBE file(...)`` (they open the resource).
  :func:`check_read_only` refuses those before the query reaches the engine.
* A multi-statement query runs every statement, and the trailing ``SETTINGS`` of such a query stays
  on the client's session; :func:`check_read_only` allows exactly one statement.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import re
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import clickhouse_connect
from clickhouse_connect.driver import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from llmops.core.errors import InvalidArgument, ResourceExhausted

DSN_SETTING = "LLMOPS_CLICKHOUSE_DSN"
MIGRATIONS_TABLE = "schema_migrations"
READ_ONLY_KEYWORDS = ("SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS")
# Statements whose rows the `limit` setting caps in the engine; DESCRIBE/EXPLAIN/EXISTS ignore it
# (or, for EXPLAIN, would show it in the plan), and their answers are small, so they are cut here.
_LIMITED_KEYWORDS = frozenset({"SELECT", "WITH", "SHOW"})
# Functions that read files or reach the network. readonly=1 already refuses most of them as table
# functions, but not the scalar file() nor any of them under DESCRIBE, so they are refused by name.
_EXTERNAL_FUNCTIONS = frozenset(
    name.lower()
    for name in (
        "file", "fileCluster", "url", "urlCluster", "s3", "s3Cluster", "gcs", "oss", "cosn", "hdfs",
        "hdfsCluster", "remote", "remoteSecure", "cluster", "clusterAllReplicas", "mysql", "postgresql",
        "sqlite", "mongodb", "redis", "jdbc", "odbc", "executable", "input", "hive", "arrowFlight",
        "ytsaurus",
    )
)  # fmt: skip
_EXTERNAL_PREFIXES = ("iceberg", "deltalake", "hudi", "paimon", "azureblobstorage")

_MIGRATION_FILE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.(?P<direction>up|down)\.sql$")
_PARAMETER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*|[0-9][A-Za-z0-9_.]*")
_HEREDOC_TAG = re.compile(r"\$[A-Za-z0-9_]*\$")


class ClickHouseConnectionError(RuntimeError):
    """ClickHouse cannot be reached or opened with the configured DSN."""


class MigrationError(RuntimeError):
    """The migrations folder or the ``schema_migrations`` table is not in a state we can apply."""


class SqlSyntaxError(InvalidArgument):
    """SQL text that cannot be split into statements (an unterminated string or comment)."""


class ReadOnlyQueryError(InvalidArgument):
    """A query that is not a single read-only statement, or that the engine refused as a write."""


class QueryLimitExceeded(ResourceExhausted):
    """A read-only query went past one of its :class:`QueryLimits` and was stopped by the engine."""


@dataclass(frozen=True)
class QueryLimits:
    """What one analyst's query may cost; the engine stops it at the first limit it passes.

    0 means no limit for the counts. Each field names the setting that sets it, for the error.
    """

    max_seconds: float = 30.0
    max_rows_to_read: int = 0
    max_bytes_to_read: int = 0
    max_result_bytes: int = 0
    # Where each limit is configured, named in the error a caller gets.
    setting_names: Mapping[str, str] = field(default_factory=dict)

    def engine_settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = {"max_execution_time": self.max_seconds, "timeout_overflow_mode": "throw"}
        if self.max_rows_to_read:
            settings["max_rows_to_read"] = self.max_rows_to_read
        if self.max_bytes_to_read:
            settings["max_bytes_to_read"] = self.max_bytes_to_read
        if self.max_rows_to_read or self.max_bytes_to_read:
            settings["read_overflow_mode"] = "throw"
        if self.max_result_bytes:
            settings["max_result_bytes"] = self.max_result_bytes
            settings["result_overflow_mode"] = "throw"
        return settings

    def exceeded(self, code: int | None) -> QueryLimitExceeded | None:
        """The error for a ClickHouse error ``code`` that means a limit here was passed, else None."""
        limit = _LIMIT_BY_CODE.get(code or 0)
        if limit is None:
            return None
        field_name, what = limit
        where = self.setting_names.get(field_name)
        return QueryLimitExceeded(
            f"the query was stopped at its limit of {what.format(getattr(self, field_name))}"
            + (f" ({where})" if where else "")
            + "; narrow it (a shorter time range, fewer columns, an aggregate) or raise the limit"
        )


# ClickHouse error codes for a passed limit -> (QueryLimits field, what it limits).
_LIMIT_BY_CODE: dict[int, tuple[str, str]] = {
    159: ("max_seconds", "{:g} s of execution time"),  # TIMEOUT_EXCEEDED
    158: ("max_rows_to_read", "{:,} rows read"),  # TOO_MANY_ROWS
    307: ("max_bytes_to_read", "{:,} bytes read"),  # TOO_MANY_BYTES
    396: ("max_result_bytes", "{:,} bytes of result"),  # TOO_MANY_ROWS_OR_BYTES
}


# --- connection ------------------------------------------------------------------------------------


def connect(dsn: str) -> Client:
    """Open a sync clickhouse-connect client for ``dsn`` (``chdb:///abs/folder`` or ``http(s)://...``).

    Datetimes come back as the column defines them: timezone-aware for ``DateTime64(3, 'UTC')``.

    Raises:
        ClickHouseConnectionError: the DSN is malformed or the store cannot be opened or reached.
    """
    parts = urlsplit(dsn)
    shown = _redact(dsn)
    options: dict[str, Any] = {"tz_mode": "schema"}
    if parts.scheme == "chdb":
        folder = _chdb_folder(dsn)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ClickHouseConnectionError(
                f"cannot create the chdb folder {folder} named by {DSN_SETTING}={shown}: {exc}"
            ) from exc
        hint = (
            " (a chdb folder can be open in one process only, and a process can open one chdb folder "
            "at a time: stop the other process or close the other client, or point "
            f"{DSN_SETTING} at a ClickHouse server)"
        )
    elif parts.scheme in ("http", "https", "clickhouse"):
        # clickhouse-connect takes TLS from the port or `secure`, not from the scheme; say it.
        options["interface"] = "https" if parts.scheme == "https" else "http"
        hint = ""
    else:
        raise ClickHouseConnectionError(
            f"{DSN_SETTING}={shown} has an unknown scheme; use chdb:///abs/folder, "
            "http(s)://user:password@host:8123/database or clickhouse://..."
        )
    try:
        return clickhouse_connect.get_client(dsn=dsn, **options)
    except ClickHouseError as exc:
        raise ClickHouseConnectionError(
            f"cannot connect to ClickHouse at {DSN_SETTING}={shown}: {exc}{hint}"
        ) from exc


def _chdb_folder(dsn: str) -> Path:
    parts = urlsplit(dsn)
    if parts.netloc or not parts.path.startswith("/"):
        raise ClickHouseConnectionError(
            f"{DSN_SETTING}={dsn} must name an absolute folder with three slashes: chdb:///abs/folder"
        )
    return Path(parts.path)


def _redact(dsn: str) -> str:
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def insert_rows(
    client: Client, table: str, column_names: Sequence[str], rows: Sequence[Sequence[Any]]
) -> int:
    """Insert ``rows`` (values in ``column_names`` order) into ``table``; returns rows written."""
    if not rows:
        return 0
    summary = client.insert(table, [list(row) for row in rows], column_names=list(column_names))
    return int(summary.written_rows)


# --- SQL splitting ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # word, ident (quoted), string, punct, semicolon
    text: str
    start: int
    end: int

    @property
    def name(self) -> str:
        """The identifier the token names (quotes removed), lower case."""
        return (self.text[1:-1] if self.kind == "ident" else self.text).lower()


def _tokens(sql: str) -> Iterator[_Token]:
    """Yield the significant tokens of ``sql``, the way ClickHouse's lexer delimits them.

    Comments (``--``, ``# ``, ``#!``, nested ``/* */``) are skipped; strings, quoted identifiers and
    heredocs (``$tag$...$tag$``) are single tokens, so a ``;`` inside them never ends a statement.
    """
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c.isspace():
            i += 1
        elif sql.startswith("--", i) or (
            c == "#" and (i + 1 == n or sql[i + 1].isspace() or sql[i + 1] == "!")
        ):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
        elif sql.startswith("/*", i):
            depth, j = 1, i + 2
            while depth and j < n:
                if sql.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif sql.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            if depth:
                raise SqlSyntaxError(f"unterminated /* comment starting at offset {i}")
            i = j
        elif c in "'\"`":
            j = i + 1
            while True:
                if j >= n:
                    what = "string" if c == "'" else "quoted identifier"
                    raise SqlSyntaxError(f"unterminated {what} starting at offset {i}")
                if sql[j] == "\\":
                    j += 2
                elif sql[j] == c:
                    if j + 1 < n and sql[j + 1] == c:  # '' is an escaped quote
                        j += 2
                    else:
                        break
                else:
                    j += 1
            yield _Token("string" if c == "'" else "ident", sql[i : j + 1], i, j + 1)
            i = j + 1
        elif (tag := _HEREDOC_TAG.match(sql, i)) is not None:
            close = sql.find(tag.group(), tag.end())
            if close < 0:
                raise SqlSyntaxError(f"unterminated heredoc {tag.group()} starting at offset {i}")
            end = close + len(tag.group())
            yield _Token("string", sql[i:end], i, end)
            i = end
        elif (word := _WORD.match(sql, i)) is not None:
            yield _Token("word", word.group(), i, word.end())
            i = word.end()
        else:
            yield _Token("semicolon" if c == ";" else "punct", c, i, i + 1)
            i += 1


def _split_tokens(sql: str) -> list[list[_Token]]:
    statements: list[list[_Token]] = []
    current: list[_Token] = []
    for token in _tokens(sql):
        if token.kind == "semicolon":
            if current:
                statements.append(current)
            current = []
        else:
            current.append(token)
    if current:
        statements.append(current)
    return statements


def split_statements(sql: str) -> list[str]:
    """Split ``sql`` at the ``;`` that end statements; empty and comment-only statements are dropped.

    Raises:
        SqlSyntaxError: a string, quoted identifier, heredoc or block comment is not closed.
    """
    return [sql[tokens[0].start : tokens[-1].end] for tokens in _split_tokens(sql)]


# --- migrations ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Migration:
    """One numbered migration: ``NNNN_name.up.sql`` and its ``NNNN_name.down.sql``."""

    version: int
    name: str
    up_path: Path
    down_path: Path
    checksum: str = field(compare=False)

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


def migrations_dir(override: Path | str | None = None) -> Path:
    """The migrations folder: ``override``, else ``deploy/clickhouse/migrations`` of the repository.

    The repository root is the nearest folder above this file that holds both ``deploy/`` and
    ``pyproject.toml``.
    """
    if override is not None:
        folder = Path(override).expanduser().resolve()
        if not folder.is_dir():
            raise MigrationError(f"the ClickHouse migrations folder {folder} does not exist")
        return folder
    for parent in Path(__file__).resolve().parents:
        if (parent / "deploy").is_dir() and (parent / "pyproject.toml").is_file():
            folder = parent / "deploy" / "clickhouse" / "migrations"
            if not folder.is_dir():
                raise MigrationError(f"the repository at {parent} has no {folder.relative_to(parent)}")
            return folder
    raise MigrationError(
        f"no repository root (a folder with deploy/ and pyproject.toml) above {__file__}: "
        "pass the ClickHouse migrations folder explicitly"
    )


def load_migrations(directory: Path) -> list[Migration]:
    """The migrations in ``directory``, oldest first, each with both of its files.

    Raises:
        MigrationError: a ``.sql`` file is misnamed, a version is used twice, or a file lacks its pair.
    """
    pairs: dict[int, dict[str, Path]] = {}
    names: dict[int, str] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_FILE.match(path.name)
        if match is None:
            raise MigrationError(f"{path} is not named NNNN_name.up.sql or NNNN_name.down.sql")
        version, name = int(match["version"]), match["name"]
        if names.setdefault(version, name) != name:
            raise MigrationError(
                f"migration version {version:04d} is used twice in {directory}: "
                f"{version:04d}_{names[version]} and {version:04d}_{name}"
            )
        pairs.setdefault(version, {})[match["direction"]] = path
    migrations = []
    for version in sorted(pairs):
        files = pairs[version]
        label = f"{version:04d}_{names[version]}"
        for direction in ("up", "down"):
            if direction not in files:
                raise MigrationError(f"migration {label} has no {label}.{direction}.sql in {directory}")
        checksum = hashlib.sha256(files["up"].read_bytes()).hexdigest()
        migrations.append(Migration(version, names[version], files["up"], files["down"], checksum))
    return migrations


def _ensure_migrations_table(client: Client) -> None:
    client.command(
        f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} ("
        " version UInt32, name String, checksum String,"
        " applied_at DateTime64(3, 'UTC') DEFAULT now64(3)"
        ") ENGINE = MergeTree ORDER BY version"
    )


def applied_migrations(client: Client) -> dict[int, tuple[str, str]]:
    """``{version: (name, checksum)}`` of the migrations recorded in ``schema_migrations``."""
    _ensure_migrations_table(client)
    result = client.query(f"SELECT version, name, checksum FROM {MIGRATIONS_TABLE} ORDER BY version")
    return {int(version): (name, checksum) for version, name, checksum in result.result_rows}


def _run_file(client: Client, migration: Migration, path: Path) -> None:
    try:
        statements = split_statements(path.read_text(encoding="utf-8"))
    except SqlSyntaxError as exc:
        raise MigrationError(f"{path}: {exc}") from exc
    for number, statement in enumerate(statements, 1):
        try:
            client.command(statement)
        except ClickHouseError as exc:
            # ClickHouse DDL is not transactional: earlier statements of the file stay applied, which
            # is why migrations use IF [NOT] EXISTS and can be run again once fixed.
            raise MigrationError(
                f"migration {migration.label}: statement {number} of {len(statements)} in {path.name} "
                f"failed: {exc}"
            ) from exc


def apply_migrations(client: Client, migrations_dir: Path) -> list[str]:
    """Apply the migrations of ``migrations_dir`` not yet recorded in ``schema_migrations``, in order.

    Returns:
        The labels (``NNNN_name``) applied by this call; empty when the schema was up to date.

    Raises:
        MigrationError: a landed migration was edited or removed, a new one is numbered below the
            newest applied one, or a statement failed.
    """
    local = load_migrations(migrations_dir)
    applied = applied_migrations(client)
    by_version = {m.version: m for m in local}
    for version, (name, checksum) in applied.items():
        migration = by_version.get(version)
        if migration is None:
            raise MigrationError(
                f"migration {version:04d}_{name} is recorded in {MIGRATIONS_TABLE} but has no file in "
                f"{migrations_dir}: the database is newer than this code"
            )
        if migration.name != name or migration.checksum != checksum:
            raise MigrationError(
                f"migration {version:04d}_{name} changed after it was applied (recorded checksum "
                f"{checksum[:12]}, file {migration.label} has {migration.checksum[:12]}): migrations are "
                "never edited once landed; revert the edit and add a new migration instead"
            )
    newest = max(applied, default=0)
    pending = [m for m in local if m.version not in applied]
    for migration in pending:
        if migration.version < newest:
            raise MigrationError(
                f"migration {migration.label} is numbered below the newest applied one "
                f"({newest:04d}_{applied[newest][0]}): renumber it after {newest:04d}"
            )
    done = []
    for migration in pending:
        _run_file(client, migration, migration.up_path)
        insert_rows(
            client,
            MIGRATIONS_TABLE,
            ("version", "name", "checksum"),
            [(migration.version, migration.name, migration.checksum)],
        )
        done.append(migration.label)
    return done


def rollback_migration(client: Client, migrations_dir: Path) -> str | None:
    """Run the down file of the newest applied migration and forget it; returns its label or None."""
    applied = applied_migrations(client)
    if not applied:
        return None
    version = max(applied)
    migration = {m.version: m for m in load_migrations(migrations_dir)}.get(version)
    if migration is None:
        raise MigrationError(
            f"cannot roll back {version:04d}_{applied[version][0]}: it has no files in {migrations_dir}"
        )
    _run_file(client, migration, migration.down_path)
    client.command(
        f"DELETE FROM {MIGRATIONS_TABLE} WHERE version = {{version:UInt32}}", parameters={"version": version}
    )
    return migration.label


# --- read-only queries -----------------------------------------------------------------------------


@dataclass(frozen=True)
class QueryResult:
    """The answer to a read-only query, in plain Python values (JSON-ready but for NaN/inf)."""

    columns: list[tuple[str, str]]  # (name, ClickHouse type)
    rows: list[list[Any]]
    truncated: bool  # more rows existed than max_rows
    elapsed_ms: float


def check_read_only(sql: str, parameters: Mapping[str, Any] | None = None) -> tuple[str, str]:
    """Check that ``sql`` is one read-only statement; returns (statement without ``;``, first keyword).

    Raises:
        ReadOnlyQueryError: with the reason, e.g. the statement's first keyword.
    """
    try:
        statements = _split_tokens(sql)
    except SqlSyntaxError as exc:
        raise ReadOnlyQueryError(str(exc)) from exc
    if not statements:
        raise ReadOnlyQueryError("the query is empty")
    if len(statements) > 1:
        raise ReadOnlyQueryError(
            f"only one statement is allowed; got {len(statements)} separated by ';' (a trailing ';' is fine)"
        )
    tokens = statements[0]
    # `(SELECT ...) UNION ALL (SELECT ...)` starts with a parenthesis.
    first = next((t for t in tokens if t.text != "("), tokens[0])
    keyword = first.text.upper() if first.kind == "word" else first.text
    if keyword not in READ_ONLY_KEYWORDS:
        allowed = ", ".join(k for k in READ_ONLY_KEYWORDS if k != "DESC")
        raise ReadOnlyQueryError(f"only read-only statements are allowed ({allowed}); got {keyword}")
    placeholders: set[str] = set()
    for index, token in enumerate(tokens):
        following = tokens[index + 1] if index + 1 < len(tokens) else None
        if token.kind in ("word", "ident") and following is not None and following.text == "(":
            name = token.name
            if name in _EXTERNAL_FUNCTIONS or name.startswith(_EXTERNAL_PREFIXES):
                raise ReadOnlyQueryError(
                    f"{token.text}() is not allowed: it reads files or the network, not the analytics store"
                )
        if (
            token.kind == "word"
            and token.name == "into"
            and following is not None
            and following.name == "outfile"
        ):
            raise ReadOnlyQueryError("INTO OUTFILE is not allowed: results come back as rows")
        if token.text == "{" and index + 2 < len(tokens) and tokens[index + 2].text == ":":
            placeholders.add(tokens[index + 1].text)
    if (
        len(tokens) >= 2
        and tokens[-2].kind == "word"
        and tokens[-2].name == "format"
        and tokens[-1].kind == "word"
    ):
        raise ReadOnlyQueryError("a FORMAT clause is not allowed: results come back as rows")
    for name in parameters or {}:
        if not _PARAMETER_NAME.match(name):
            raise ReadOnlyQueryError(f"parameter name {name!r} is not an identifier")
        if name not in placeholders:
            # Without a server-side placeholder clickhouse-connect would format values into the text.
            raise ReadOnlyQueryError(f"parameter {name!r} is not used: write {{{name}:Type}} in the query")
    return sql[tokens[0].start : tokens[-1].end], keyword


def run_read_only_query(
    client: Client,
    sql: str,
    parameters: Mapping[str, str] | None = None,
    max_rows: int = 1000,
    limits: QueryLimits | None = None,
    tag: str | None = None,
) -> QueryResult:
    """Run one read-only statement with server-side ``{name:Type}`` parameters; at most ``max_rows`` rows.

    The statement is checked by :func:`check_read_only` and also runs with ``readonly=1``, so the
    engine refuses whatever writes the check might miss, and a ``SETTINGS`` clause in the text cannot
    raise ``limits`` (readonly refuses any setting change). ``tag`` marks the running query, so that
    :func:`kill_query` can stop it from another connection.

    Raises:
        ReadOnlyQueryError: the statement is not read-only (by the check or by the engine).
        QueryLimitExceeded: the engine stopped it at one of ``limits``.
        clickhouse_connect.driver.exceptions.ClickHouseError: any other failure (syntax, unknown table).
    """
    if max_rows < 0:
        raise ValueError(f"max_rows must be >= 0, got {max_rows}")
    statement, keyword = check_read_only(sql, parameters)
    settings: dict[str, Any] = {"readonly": 1}
    if limits is not None:
        settings.update(limits.engine_settings())
    if tag is not None:
        # A server honours query_id; chdb gives every query its own id, but keeps log_comment.
        settings["query_id"] = tag
        settings["log_comment"] = tag
    if keyword in _LIMITED_KEYWORDS:
        # One row more than asked, so that `truncated` is known without reading the rest.
        settings["limit"] = max_rows + 1
    started = time.perf_counter()
    try:
        result = client.query(
            statement, parameters=dict(parameters) if parameters else None, settings=settings
        )
        raw_rows = result.result_rows
    except ClickHouseError as exc:
        code = getattr(exc, "code", None) or _error_code(str(exc))
        if code == 164 or "(READONLY)" in str(exc):
            raise ReadOnlyQueryError(f"the engine refused the statement in read-only mode: {exc}") from exc
        if limits is not None and (exceeded := limits.exceeded(code)) is not None:
            raise exceeded from exc
        raise
    elapsed_ms = (time.perf_counter() - started) * 1000
    return QueryResult(
        columns=[
            (name, ch_type.name)
            for name, ch_type in zip(result.column_names, result.column_types, strict=True)
        ],
        rows=[[to_python(value) for value in row] for row in raw_rows[:max_rows]],
        truncated=len(raw_rows) > max_rows,
        elapsed_ms=round(elapsed_ms, 3),
    )


_ERROR_CODE = re.compile(r"\bCode: (\d+)\.")


def _error_code(message: str) -> int | None:
    # chdb's errors carry the code only in their text ("Code: 159. DB::Exception: ...").
    match = _ERROR_CODE.search(message)
    return int(match.group(1)) if match else None


def kill_query(client: Client, tag: str) -> int:
    """Stop the query :func:`run_read_only_query` runs with ``tag`` (from another connection); how many
    were stopped (0: it had already ended)."""
    running = client.query(
        "SELECT query_id FROM system.processes"
        " WHERE query_id = {tag:String} OR Settings['log_comment'] = {tag:String}",
        parameters={"tag": tag},
    ).result_rows
    for (query_id,) in running:
        client.command("KILL QUERY WHERE query_id = {id:String} SYNC", parameters={"id": query_id})
    return len(running)


def to_python(value: Any) -> Any:
    """``value`` as JSON-friendly Python: ISO-8601 for dates, str for UUID/bytes/IPs, float for Decimal."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID | ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(value)
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes | bytearray):
        # FixedString pads with NUL bytes.
        return bytes(value).rstrip(b"\x00").decode("utf-8", errors="replace")
    if isinstance(value, Mapping):
        return {str(to_python(k)): to_python(v) for k, v in value.items()}
    if isinstance(value, Iterable):
        return [to_python(item) for item in value]
    return str(value)
