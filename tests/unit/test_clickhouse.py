"""ClickHouse plumbing on the in-process engine (chdb): migrations, the read-only guard, the store.

chdb runs one engine per process, on one folder at a time: a second folder opens only after every
client of the first is closed (measured with chdb 4.4; opening it earlier raises, which
``test_second_chdb_folder_needs_the_first_closed`` pins down). Each test here therefore gets its own
``tmp_path`` folder and its fixtures close every client they open, so tests stay independent and
the next test (in this module or another) can open its own folder. A fixture that kept a chdb
client open for the whole session would make every other folder fail to open.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver import Client

from llmops.contracts.events import Citation, FeedbackAccepted, InferenceLogged
from llmops.core.clickhouse import (
    MIGRATIONS_TABLE,
    ClickHouseConnectionError,
    MigrationError,
    ReadOnlyQueryError,
    SqlSyntaxError,
    applied_migrations,
    apply_migrations,
    check_read_only,
    connect,
    migrations_dir,
    rollback_migration,
    run_read_only_query,
    split_statements,
    to_python,
)
from llmops.monitoring.store.analytics import AnalyticsStore

REAL_TABLES = {"inference_log", "feedback", "inference_log_v", "feedback_v", "inference_with_feedback"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    c = connect(f"chdb://{tmp_path / 'clickhouse'}")
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[AnalyticsStore]:
    s = AnalyticsStore(f"chdb://{tmp_path / 'analytics'}")
    try:
        await s.open()
        yield s
    finally:
        await s.close()


def tables(client: Client) -> set[str]:
    return {name for (name,) in client.query("SHOW TABLES").result_rows}


def write_migration(folder: Path, label: str, up: str, down: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{label}.up.sql").write_text(up)
    (folder / f"{label}.down.sql").write_text(down)


@pytest.fixture
def toy_migrations(tmp_path: Path) -> Path:
    folder = tmp_path / "migrations"
    write_migration(
        folder,
        "0001_a",
        "-- first; a comment with a semicolon\n"
        "CREATE TABLE IF NOT EXISTS a (x UInt8, s String DEFAULT 'x;y') ENGINE = MergeTree ORDER BY x;\n"
        "INSERT INTO a (x) VALUES (1);\n",
        "DROP TABLE IF EXISTS a;",
    )
    write_migration(
        folder,
        "0002_b",
        "CREATE TABLE IF NOT EXISTS b (y UInt8) ENGINE = MergeTree ORDER BY y",
        "DROP TABLE IF EXISTS b",
    )
    return folder


def inference(request_id: str, **fields: object) -> InferenceLogged:
    values: dict[str, object] = {
        "request_id": request_id,
        "model": "tiny",
        "model_version": "3",
        "prompt": "hello",
        "completion": "world",
        "prompt_tokens": 2,
        "completion_tokens": 1,
        "latency_ms": 12.5,
        "time_to_first_token_ms": 3.0,
        "finish_reason": "stop",
        "temperature": 0.5,  # exact in Float32
        "metadata": {"app": "test"},
        "producer": "serving",
    }
    values.update(fields)
    return InferenceLogged.model_validate(values)


# --- statement splitting ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT 1; SELECT 2;", ["SELECT 1", "SELECT 2"]),
        ("SELECT 'a;b'; SELECT 2", ["SELECT 'a;b'", "SELECT 2"]),
        ("SELECT 'it''s; fine'", ["SELECT 'it''s; fine'"]),
        ("SELECT 'a\\';b'", ["SELECT 'a\\';b'"]),
        ('SELECT 1 AS "x;y"', ['SELECT 1 AS "x;y"']),
        ("SELECT 1 AS `x;y`", ["SELECT 1 AS `x;y`"]),
        ("SELECT $$a;b$$; SELECT $t$c;d$t$", ["SELECT $$a;b$$", "SELECT $t$c;d$t$"]),
        ("-- one; two\nSELECT 1 -- three; four\n;", ["SELECT 1"]),
        ("SELECT 1 /* a /* nested; */ still; */ + 1", ["SELECT 1 /* a /* nested; */ still; */ + 1"]),
        ("SELECT 1 # hash; comment\n", ["SELECT 1"]),
        (";; -- only comments ;\n /* ; */ ;", []),
    ],
)
def test_split_statements_ignores_semicolons_in_strings_and_comments(sql: str, expected: list[str]) -> None:
    assert split_statements(sql) == expected


@pytest.mark.parametrize("sql", ["SELECT 'open", "SELECT /* open", "SELECT $x$ open", 'SELECT "open'])
def test_split_statements_refuses_unterminated(sql: str) -> None:
    with pytest.raises(SqlSyntaxError, match="unterminated"):
        split_statements(sql)


# --- migrations ------------------------------------------------------------------------------------


def test_migrations_apply_once_and_are_recorded(client: Client, toy_migrations: Path) -> None:
    assert apply_migrations(client, toy_migrations) == ["0001_a", "0002_b"]
    assert {"a", "b", MIGRATIONS_TABLE} <= tables(client)
    # The ';' inside the comment and the string default did not split the file.
    assert client.query("SELECT x, s FROM a").result_rows == [(1, "x;y")]
    rows = client.query(
        f"SELECT version, name, length(checksum), applied_at FROM {MIGRATIONS_TABLE} ORDER BY version"
    ).result_rows
    assert [(v, n, length) for v, n, length, _ in rows] == [(1, "a", 64), (2, "b", 64)]
    assert all(isinstance(applied_at, dt.datetime) for *_, applied_at in rows)

    assert apply_migrations(client, toy_migrations) == []
    # A second run did not run the INSERT of 0001 again.
    assert client.query("SELECT count() FROM a").result_rows == [(1,)]


def test_new_migration_is_applied_later(client: Client, toy_migrations: Path) -> None:
    apply_migrations(client, toy_migrations)
    write_migration(toy_migrations, "0003_c", "CREATE TABLE c (z UInt8) ENGINE = Memory", "DROP TABLE c")
    assert apply_migrations(client, toy_migrations) == ["0003_c"]


def test_edited_landed_migration_is_refused(client: Client, toy_migrations: Path) -> None:
    apply_migrations(client, toy_migrations)
    up = toy_migrations / "0001_a.up.sql"
    up.write_text(up.read_text() + "\nALTER TABLE a ADD COLUMN z UInt8;\n")
    with pytest.raises(MigrationError, match="never edited once landed"):
        apply_migrations(client, toy_migrations)


def test_migration_numbered_below_the_newest_applied_is_refused(client: Client, toy_migrations: Path) -> None:
    (toy_migrations / "0001_a.up.sql").rename(toy_migrations / "0005_a.up.sql")
    (toy_migrations / "0001_a.down.sql").rename(toy_migrations / "0005_a.down.sql")
    assert apply_migrations(client, toy_migrations) == ["0002_b", "0005_a"]
    write_migration(toy_migrations, "0003_c", "SELECT 1", "SELECT 1")
    with pytest.raises(MigrationError, match="renumber"):
        apply_migrations(client, toy_migrations)


def test_migration_without_down_file_is_refused(client: Client, toy_migrations: Path) -> None:
    (toy_migrations / "0002_b.down.sql").unlink()
    with pytest.raises(MigrationError, match=r"0002_b has no 0002_b\.down\.sql"):
        apply_migrations(client, toy_migrations)


def test_rollback_runs_the_newest_down_file(client: Client, toy_migrations: Path) -> None:
    apply_migrations(client, toy_migrations)
    assert rollback_migration(client, toy_migrations) == "0002_b"
    assert "b" not in tables(client)
    assert set(applied_migrations(client)) == {1}
    assert apply_migrations(client, toy_migrations) == ["0002_b"]
    assert rollback_migration(client, toy_migrations) == "0002_b"
    assert rollback_migration(client, toy_migrations) == "0001_a"
    assert rollback_migration(client, toy_migrations) is None
    assert tables(client) == {MIGRATIONS_TABLE}


def test_failed_statement_names_migration_and_statement(client: Client, tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    write_migration(folder, "0001_bad", "SELECT 1;\nCREATE TABLE nope (x Nope) ENGINE = Memory;", "SELECT 1")
    with pytest.raises(MigrationError, match="0001_bad: statement 2 of 2"):
        apply_migrations(client, folder)
    assert applied_migrations(client) == {}


def test_project_migrations_apply_and_roll_back(client: Client) -> None:
    folder = migrations_dir()
    assert folder.parts[-3:] == ("deploy", "clickhouse", "migrations")
    assert apply_migrations(client, folder) == [
        "0001_inference_log",
        "0002_feedback",
        "0003_views",
        "0004_inference_log_by_event",
        "0005_inference_log_routing",
    ]
    assert REAL_TABLES <= tables(client)
    newest_first = (
        "0005_inference_log_routing",
        "0004_inference_log_by_event",
        "0003_views",
        "0002_feedback",
        "0001_inference_log",
    )
    for expected in newest_first:
        assert rollback_migration(client, folder) == expected
    assert tables(client) == {MIGRATIONS_TABLE}
    assert apply_migrations(client, folder) == [
        "0001_inference_log",
        "0002_feedback",
        "0003_views",
        "0004_inference_log_by_event",
        "0005_inference_log_routing",
    ]


def test_migrations_dir_override(tmp_path: Path) -> None:
    assert migrations_dir(tmp_path) == tmp_path.resolve()
    with pytest.raises(MigrationError, match="does not exist"):
        migrations_dir(tmp_path / "missing")


# --- connecting ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dsn", ["mysql://host/db", "chdb://relative/folder"])
def test_connect_refuses_bad_dsn(dsn: str) -> None:
    with pytest.raises(ClickHouseConnectionError, match="LLMOPS_CLICKHOUSE_DSN"):
        connect(dsn)


def test_second_chdb_folder_needs_the_first_closed(client: Client, tmp_path: Path) -> None:
    with pytest.raises(ClickHouseConnectionError, match="LLMOPS_CLICKHOUSE_DSN.*one chdb folder"):
        connect(f"chdb://{tmp_path / 'other'}")
    # The same folder can have several clients: they share the engine.
    same = connect(f"chdb://{tmp_path / 'clickhouse'}")
    try:
        assert run_read_only_query(same, "SELECT 1", {}, 1).rows == [[1]]
    finally:
        same.close()


# --- read-only queries -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "keyword"),
    [
        ("INSERT INTO t VALUES (1)", "INSERT"),
        ("  insert into t select 1", "INSERT"),
        ("CREATE TABLE t (x UInt8) ENGINE = Memory", "CREATE"),
        ("DROP TABLE inference_log", "DROP"),
        ("ALTER TABLE inference_log DELETE WHERE 1", "ALTER"),
        ("TRUNCATE TABLE feedback", "TRUNCATE"),
        ("OPTIMIZE TABLE feedback FINAL", "OPTIMIZE"),
        ("SET readonly = 0", "SET"),
        ("SYSTEM FLUSH LOGS", "SYSTEM"),
        ("-- SELECT\nDELETE FROM feedback WHERE 1", "DELETE"),
    ],
)
def test_guard_refuses_writes_and_names_the_keyword(sql: str, keyword: str) -> None:
    with pytest.raises(ReadOnlyQueryError) as info:
        check_read_only(sql)
    allowed = "SELECT, WITH, SHOW, DESCRIBE, EXPLAIN, EXISTS"
    assert str(info.value) == f"only read-only statements are allowed ({allowed}); got {keyword}"


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("SELECT 1; SELECT 2", "only one statement"),
        ("SELECT 1; DROP TABLE feedback;", "only one statement"),
        ("", "empty"),
        ("-- nothing\n;", "empty"),
        ("SELECT 'open", "unterminated"),
        ("SELECT * FROM numbers(3) INTO OUTFILE '/tmp/x.csv'", "INTO OUTFILE"),
        ("SELECT * FROM numbers(3) FORMAT JSON", "FORMAT"),
        ("SELECT file('/etc/hostname')", "file"),
        ("SELECT `file`('/etc/hostname')", "file"),
        ("DESCRIBE url('http://127.0.0.1:1/x', 'CSV')", "url"),
        ("SELECT * FROM s3('http://x/y.csv')", "s3"),
        ("SELECT * FROM icebergS3('http://x/y')", "icebergS3"),
        ("SELECT * FROM remote('127.0.0.1', system.one)", "remote"),
    ],
)
def test_guard_refuses(sql: str, reason: str) -> None:
    with pytest.raises(ReadOnlyQueryError, match=reason):
        check_read_only(sql)


@pytest.mark.parametrize(
    ("sql", "keyword"),
    [
        ("SELECT 1", "SELECT"),
        ("select 1;", "SELECT"),
        ("SELECT 'a;b' -- trailing; comment", "SELECT"),
        ("WITH 2 AS x SELECT x", "WITH"),
        ("(SELECT 1) UNION ALL (SELECT 2)", "SELECT"),
        ("SHOW TABLES", "SHOW"),
        ("DESCRIBE TABLE inference_log", "DESCRIBE"),
        ("DESC feedback", "DESC"),
        ("EXPLAIN SELECT 1", "EXPLAIN"),
        ("EXISTS TABLE feedback", "EXISTS"),
        ("SELECT format('{}', 'x'), URLHash('a') AS url", "SELECT"),
        ("SELECT 1 AS format", "SELECT"),
    ],
)
def test_guard_passes_reads(sql: str, keyword: str) -> None:
    statement, first = check_read_only(sql)
    assert first == keyword
    assert not statement.endswith(";")


def test_guard_requires_server_side_placeholders() -> None:
    check_read_only("SELECT {a:UInt8}", {"a": "1"})
    with pytest.raises(ReadOnlyQueryError, match=r"\{b:Type\}"):
        check_read_only("SELECT {a:UInt8}", {"a": "1", "b": "2"})
    with pytest.raises(ReadOnlyQueryError, match="not an identifier"):
        check_read_only("SELECT 1", {"a-b": "1"})


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "WITH 2 AS x SELECT x",
        "SHOW TABLES",
        "DESCRIBE TABLE inference_log",
        "DESC feedback",
        "EXPLAIN SELECT * FROM inference_log_v",
        "EXISTS TABLE feedback",
        "SELECT count() FROM inference_with_feedback;",
    ],
)
def test_reads_run_on_the_engine(client: Client, sql: str) -> None:
    apply_migrations(client, migrations_dir())
    result = run_read_only_query(client, sql, {}, 100)
    assert result.columns and result.rows
    assert not result.truncated
    assert result.elapsed_ms >= 0


@pytest.mark.parametrize(
    "sql",
    [
        # The guard lets these through (first keyword WITH / SELECT); readonly=1 stops them.
        "WITH 1 AS x INSERT INTO inference_log (request_id) SELECT 'r'",
        "SELECT * FROM numbers(3) SETTINGS readonly = 0",
    ],
)
def test_engine_refuses_what_the_guard_lets_through(client: Client, sql: str) -> None:
    apply_migrations(client, migrations_dir())
    with pytest.raises(ReadOnlyQueryError, match="engine refused"):
        run_read_only_query(client, sql, {}, 10)
    assert client.query("SELECT count() FROM inference_log").result_rows == [(0,)]


def test_truncation(client: Client) -> None:
    result = run_read_only_query(client, "SELECT number FROM numbers(10)", {}, 3)
    assert result.rows == [[0], [1], [2]]
    assert result.truncated
    exact = run_read_only_query(client, "SELECT number FROM numbers(3)", {}, 3)
    assert exact.rows == [[0], [1], [2]] and not exact.truncated
    # A subquery is not cut by the row limit.
    assert run_read_only_query(client, "SELECT count() FROM (SELECT * FROM numbers(100))", {}, 1).rows == [
        [100]
    ]
    nothing = run_read_only_query(client, "SELECT number FROM numbers(2)", {}, 0)
    assert nothing.rows == [] and nothing.truncated


def test_truncation_of_show_and_describe(client: Client) -> None:
    apply_migrations(client, migrations_dir())
    shown = run_read_only_query(client, "SHOW TABLES", {}, 2)
    assert len(shown.rows) == 2 and shown.truncated
    described = run_read_only_query(client, "DESCRIBE inference_log", {}, 5)
    assert [row[0] for row in described.rows] == [
        "event_id",
        "request_id",
        "occurred_at",
        "model",
        "model_version",
    ]
    assert described.truncated


def test_parameters_bind_server_side(client: Client) -> None:
    result = run_read_only_query(
        client, "SELECT {a:UInt32} + 1 AS n, {s:String} AS s", {"a": "41", "s": "it's; DROP TABLE x"}, 10
    )
    assert result.columns == [("n", "UInt64"), ("s", "String")]
    assert result.rows == [[42, "it's; DROP TABLE x"]]


def test_values_become_plain_python(client: Client) -> None:
    sql = (
        "SELECT toDateTime64('2024-01-02 03:04:05.678', 3, 'UTC') AS t, toDate('2024-01-02') AS d,"
        " toUUID('00000000-0000-0000-0000-000000000001') AS u, toDecimal64(1.5, 2) AS dec,"
        " map('k', [1, 2]) AS m, tuple(1, 'x') AS tup, toIPv4('1.2.3.4') AS ip,"
        " CAST(NULL AS Nullable(Int32)) AS n, true AS b, 'x'::FixedString(3) AS fs, 0.5 AS f"
    )
    (row,) = run_read_only_query(client, sql, {}, 1).rows
    assert row == [
        "2024-01-02T03:04:05.678000+00:00",
        "2024-01-02",
        "00000000-0000-0000-0000-000000000001",
        1.5,
        {"k": [1, 2]},
        [1, "x"],
        "1.2.3.4",
        None,
        True,
        "x",
        0.5,
    ]
    assert to_python(b"\xff") == "\ufffd"


# --- the analytics store ---------------------------------------------------------------------------


async def test_store_open_applies_migrations_once(tmp_path: Path) -> None:
    dsn = f"chdb://{tmp_path / 'analytics'}"
    first = AnalyticsStore(dsn)
    try:
        assert await first.open() == [
            "0001_inference_log",
            "0002_feedback",
            "0003_views",
            "0004_inference_log_by_event",
            "0005_inference_log_routing",
        ]
    finally:
        await first.close()
    second = AnalyticsStore(dsn)
    try:
        assert await second.open() == []
    finally:
        await second.close()
    with pytest.raises(RuntimeError, match="closed"):
        await second.query("SELECT 1")


async def test_redelivered_inference_is_one_row_in_the_view(store: AnalyticsStore) -> None:
    event = inference("req-redelivered", occurred_at=dt.datetime(2024, 5, 6, 7, 8, 9, 123000))
    assert await store.insert_inference([event]) == 1
    # Redelivery: the same event again, in a later batch (so a separate part, not yet merged).
    assert await store.insert_inference([event, inference("req-other")]) == 2

    result = await store.query(
        "SELECT event_id, occurred_at, model, temperature, top_p, metadata, streamed FROM inference_log_v"
        " WHERE request_id = {r:String}",
        {"r": "req-redelivered"},
        10,
    )
    assert result.rows == [
        [str(event.event_id), "2024-05-06T07:08:09.123000+00:00", "tiny", 0.5, None, {"app": "test"}, False]
    ]
    assert dict(result.columns)["occurred_at"] == "DateTime64(3, 'UTC')"


async def test_two_generations_that_reuse_a_request_id_are_two_rows(store: AnalyticsStore) -> None:
    first, second = inference("req-reused"), inference("req-reused")
    assert first.event_id != second.event_id
    await store.insert_inference([first, second])
    await store.insert_inference([first])  # a redelivery of one of them
    result = await store.query(
        "SELECT event_id FROM inference_log_v WHERE request_id = {r:String}", {"r": "req-reused"}, 10
    )
    assert sorted(result.rows) == sorted([[str(first.event_id)], [str(second.event_id)]])


async def test_the_inference_log_keeps_its_rows_when_its_sorting_key_changes(
    client: Client, tmp_path: Path
) -> None:
    # A database made before 0004, with rows in it.
    before = tmp_path / "before-0004"
    before.mkdir()
    for path in sorted(migrations_dir().glob("000[123]_*.sql")):
        (before / path.name).write_text(path.read_text())
    assert apply_migrations(client, before)[-1] == "0003_views"
    rows = [inference(f"req-{i}") for i in range(3)]
    insert_rows = [[str(e.event_id), e.request_id, e.model] for e in rows]
    client.insert("inference_log", insert_rows, column_names=["event_id", "request_id", "model"])
    assert apply_migrations(client, migrations_dir())[:2] == [
        "0004_inference_log_by_event",
        "0005_inference_log_routing",
    ]
    got = client.query("SELECT request_id, arm, citation_chunk_ids FROM inference_log_v ORDER BY request_id")
    # Rows from before 0005 read with the new columns' defaults.
    assert got.result_rows == [("req-0", "", []), ("req-1", "", []), ("req-2", "", [])]
    sorting_key = client.query(
        "SELECT sorting_key FROM system.tables WHERE database = currentDatabase() AND name = 'inference_log'"
    ).result_rows
    assert sorting_key == [("model, toDate(occurred_at), request_id, event_id",)]


async def test_the_arm_template_and_citations_of_an_answer_are_stored(store: AnalyticsStore) -> None:
    event = inference("req-rag").model_copy(
        update={
            "user": "u-7",
            "arm": "challenger",
            "model_version": "bot/3",
            "template": "support",
            "template_version": 2,
            "retrieval_collection": "handbook",
            "citations": [
                Citation(index=1, chunk_id="c-1", document_id="d-1", score=0.8),
                Citation(index=2, chunk_id="c-9", document_id="d-4", score=0.5),
            ],
        }
    )
    await store.insert_inference([event, event])  # redelivered: one row
    result = await store.query(
        "SELECT user, arm, model_version, template, template_version, retrieval_collection,"
        " citation_chunk_ids, citation_document_ids, citation_scores FROM inference_log_v"
    )
    assert [list(r) for r in result.rows] == [
        ["u-7", "challenger", "bot/3", "support", 2, "handbook", ["c-1", "c-9"], ["d-1", "d-4"], [0.8, 0.5]]
    ]


async def test_inference_with_feedback_joins_scores(store: AnalyticsStore) -> None:
    await store.insert_inference([inference("req-rated"), inference("req-unrated")])
    feedback = FeedbackAccepted(
        feedback_id="fb-1", request_id="req-rated", score=0.0, thumb="down", comment="wrong", user_id="u1"
    )
    await store.insert_feedback([feedback])
    await store.insert_feedback([feedback])  # redelivered

    result = await store.query(
        "SELECT request_id, feedback_id, score, thumb, comment FROM inference_with_feedback"
        " ORDER BY request_id",
        {},
        10,
    )
    # A real score of 0 stays 0; no feedback at all is NULL (and '' for the text columns).
    assert result.rows == [["req-rated", "fb-1", 0.0, "down", "wrong"], ["req-unrated", "", None, "", ""]]
    assert dict(result.columns)["score"] == "Nullable(Float64)"
    count = await store.query(
        "SELECT count() FROM feedback_v WHERE request_id = {r:String}", {"r": "req-rated"}, 1
    )
    assert count.rows == [[1]]


async def test_store_refuses_writes_and_keeps_ingesting(store: AnalyticsStore) -> None:
    with pytest.raises(ReadOnlyQueryError, match="got INSERT"):
        await store.query("INSERT INTO feedback (request_id) VALUES ('x')", {}, 1)
    with pytest.raises(ReadOnlyQueryError, match="engine refused"):
        await store.query("WITH 1 AS x INSERT INTO feedback (request_id) SELECT 'x'", {}, 1)
    assert await store.insert_inference([inference("req-after")]) == 1
    assert (await store.query("SELECT count() FROM inference_log_v", {}, 1)).rows == [[1]]
    assert (await store.query("SELECT count() FROM feedback", {}, 1)).rows == [[0]]


async def test_store_writes_empty_batches_as_nothing(store: AnalyticsStore) -> None:
    assert await store.insert_inference([]) == 0
    assert await store.insert_feedback([]) == 0
