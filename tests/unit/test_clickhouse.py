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
import hashlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver import Client

from llmops.contracts.events import (
    ALL_EVENTS,
    AlertRaised,
    AnswerJudged,
    Citation,
    DatasetVersionCreated,
    DocumentCleaned,
    DocumentRaw,
    DriftDetected,
    Event,
    FeedbackAccepted,
    FeedbackRejected,
    FeedbackSubmitted,
    InferenceLogged,
    IngestionBatchCompleted,
    LabelCreated,
    LoopStepped,
    ModelAliasChanged,
    ModelCanaryChanged,
    ModelVersionRegistered,
    RetrievalLogged,
    TrainingCompleted,
    TrainingFailed,
    TrainingProgress,
    TrainingRequested,
)
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
    insert_rows,
    migrations_dir,
    rollback_migration,
    run_read_only_query,
    split_statements,
    to_python,
)
from llmops.monitoring.app import CONSUMED
from llmops.monitoring.store.analytics import (
    EVENT_TABLES,
    INFERENCE_COLUMNS,
    INFERENCE_TABLE,
    AnalyticsStore,
    inference_row,
)

MIGRATIONS = [
    "0001_inference_log",
    "0002_feedback",
    "0003_views",
    "0004_inference_log_by_event",
    "0005_inference_log_routing",
    "0006_retrieval_log",
    "0007_training_events",
    "0008_model_events",
    "0009_data_events",
    "0010_feedback_rejected",
    "0011_drift_and_alerts",
    "0012_analyst_views",
    "0013_usage_priced_by_registered_name",
    "0014_drift_alert_evidence_and_loop",
    "0015_drift_results",
    "0016_inference_errors",
    "0017_views_without_failures",
    "0018_inference_histograms_hourly",
    "0019_histograms_answers_only",
    "0020_judge_scores",
]
EVENT_VIEWS = {table.table: f"{table.table}_v" for table in EVENT_TABLES.values()}
REAL_TABLES = {
    *EVENT_VIEWS,
    *EVENT_VIEWS.values(),
    "inference_with_feedback",
    "training_runs_v",
    "model_aliases_current",
    "model_canaries_current",
    "model_prices",
    "quality_hourly",
    "usage_by_caller",
    "retrieval_scores_hourly",
    "drift_results",
    "drift_results_v",
}


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
    assert apply_migrations(client, folder) == MIGRATIONS
    assert REAL_TABLES <= tables(client)
    for expected in reversed(MIGRATIONS):
        assert rollback_migration(client, folder) == expected
    assert tables(client) == {MIGRATIONS_TABLE}
    assert apply_migrations(client, folder) == MIGRATIONS


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
        assert await first.open() == MIGRATIONS
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
    assert apply_migrations(client, migrations_dir()) == MIGRATIONS[3:]
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


# --- every event the platform emits ----------------------------------------------------------------

AT = dt.datetime(2026, 11, 3, 14, 5, 6, 789000, tzinfo=dt.UTC)

# One realistic event of each stored kind (inference and feedback have their own tests above).
SAMPLES: list[Event] = [
    RetrievalLogged(
        request_id="req-1", collection="handbook", query="how do refunds work?", top_k=3,
        document_ids=["d-1", "d-2"], chunk_ids=["c-1", "c-7"], scores=[0.82, 0.4], latency_ms=7.5,
        mode="dense", occurred_at=AT, producer="retrieval", trace_id="t-1",
    ),
    TrainingRequested(
        request_key="drift-2026-11-03", base_model="smollm2", dataset_version_id="dv-3", model_name="bot",
        hyperparameters={"learning_rate": 2e-4, "epochs": 2, "target_modules": ["q_proj", "v_proj"],
                         "schedule": "cosine"},
        resources={"num_workers": 2, "cpus_per_worker": 1.5}, reason="drift", occurred_at=AT,
    ),
    TrainingProgress(
        job_id="job-1", step=10, total_steps=40, epoch=0.25, loss=1.75, learning_rate=1e-4,
        tokens_per_second=512.0, occurred_at=AT, producer="training",
    ),
    TrainingCompleted(
        job_id="job-1", model_name="bot", base_model="smollm2", dataset_version_id="dv-3",
        adapter_uri="file:///artifacts/job-1", method="sft_lora", params={"rank": "8"},
        metrics={"eval_loss": 1.25}, occurred_at=AT,
    ),
    TrainingFailed(job_id="job-2", reason="OutOfMemory: worker 1", occurred_at=AT),
    ModelVersionRegistered(
        model="bot", version=4, artifact_uri="file:///artifacts/job-1", base_model="smollm2",
        metrics={"eval_loss": 1.25}, occurred_at=AT,
    ),
    ModelAliasChanged(
        model="bot", alias="champion", version=4, previous_version=3, artifact_uri="file:///artifacts/job-1",
        base_model="smollm2", actor="policy", reason="promoted", occurred_at=AT,
    ),
    ModelCanaryChanged(
        model="bot", alias="champion", challenger_alias="challenger", share=0.1, champion_version=3,
        challenger_version=4, occurred_at=AT,
    ),
    DocumentRaw(
        document_id="doc-1", dataset="handbook", text="Refunds take 5 days. Café.", source="upload",
        metadata={"lang": "en"}, occurred_at=AT,
    ),
    DocumentCleaned(
        document_id="doc-1", dataset="handbook", batch_id="b-1", snapshot_id="s-1",
        text="Refunds take 5 days.", content_hash="abc123", pii_redacted={"email": 2}, occurred_at=AT,
    ),
    IngestionBatchCompleted(
        batch_id="b-1", dataset="handbook", snapshot_id="s-1", snapshot_uri="file:///snapshots/s-1",
        counts={"received": 3, "kept": 2}, occurred_at=AT,
    ),
    LabelCreated(
        label_id="l-1", task_id="t-1", queue="quality", source="human", labeler_id="ann", value="good",
        document_id="doc-1", occurred_at=AT,
    ),
    DatasetVersionCreated(
        version_id="dv-3", dataset="handbook", uri="file:///datasets/dv-3", train_count=90, eval_count=10,
        snapshot_ids=["s-1"], queues=["quality"], occurred_at=AT,
    ),
    FeedbackRejected(
        request_id="req-1", feedback_id="fb-9", reasons=["score must be between 0 and 1, got 7.0"],
        submitted_event_id=uuid.UUID(int=7), occurred_at=AT,
    ),
    DriftDetected(
        model="bot", signal="prompt_length", statistic="psi", value=0.31, threshold=0.2,
        window_start=AT - dt.timedelta(hours=1), window_end=AT, occurred_at=AT, model_version="bot/3",
        arm="challenger", p_value=None, alpha=None, reference_start=AT - dt.timedelta(days=1),
        reference_end=AT - dt.timedelta(hours=1), reference_count=500, current_count=80, report_id="r-1",
    ),
    AlertRaised(
        rule="feedback_drop", severity="warning", message="thumbs-up share fell", labels={"model": "bot"},
        occurred_at=AT, model="bot", subject="bot/3", query="SELECT avg(score) FROM feedback_v",
        parameters={"model": "bot"}, window_start=AT - dt.timedelta(hours=1), window_end=AT,
        values={"observed": 0.41, "threshold": 0.6},
    ),
    LoopStepped(
        loop_id="loop-1", model="bot", step="canary_stepped", reason="challenger ahead, not yet significant",
        trigger="feedback", dataset_version_id="dv-3", training_request_key="loop-1/train",
        training_job_id="job-1", champion_version=2, challenger_version=3, canary_share=0.25,
        next_step="analyse again", values={"p_value": 0.08}, evidence={"query": "SELECT 1"}, occurred_at=AT,
    ),
    AnswerJudged(
        request_id="req-1", model="bot", model_version="bot/3", arm="challenger", judge="judge",
        prompt_version="v1", score=0.75, rating=4.0, judge_answer="4", loop_id="loop-1", occurred_at=AT,
    ),
]  # fmt: skip


def test_every_event_type_but_feedback_submitted_has_a_table_and_a_consumer() -> None:
    # feedback.submitted is answered by feedback.accepted or .rejected, and those are stored.
    assert set(EVENT_TABLES) == set(ALL_EVENTS) - {FeedbackSubmitted}
    assert {type(e) for e in SAMPLES} == set(EVENT_TABLES) - {InferenceLogged, FeedbackAccepted}
    assert set(CONSUMED) == set(EVENT_TABLES)
    assert len(set(CONSUMED.values())) == len(CONSUMED)
    for target in EVENT_TABLES.values():
        assert target.columns[0] == "event_id" and len(set(target.columns)) == len(target.columns)


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: type(e).__name__)
async def test_each_event_is_one_row_in_its_view(store: AnalyticsStore, event: Event) -> None:
    target = EVENT_TABLES[type(event)]
    assert await store.insert(type(event), [event]) == 1
    # Redelivered in a later batch (another part, not merged yet): still one row in the _v view.
    assert await store.insert(type(event), [event]) == 1
    columns = ", ".join(target.columns)
    result = await store.query(f"SELECT {columns}, ingested_at FROM {target.table}_v", {}, 10)
    assert len(result.rows) == 1
    (*values, ingested_at) = result.rows[0]
    assert values == [to_python(v) for v in target.row(event)]
    assert values[0] == str(event.event_id) and "2026-11-03T14:05:06.789000+00:00" in values
    assert ingested_at > "2026-"
    raw = await store.query(f"SELECT count() FROM {target.table}", {}, 1)
    assert raw.rows == [[2]]  # both copies stored until a merge; FINAL reads one


async def test_documents_are_stored_without_their_text(store: AnalyticsStore) -> None:
    raw, cleaned = SAMPLES[8], SAMPLES[9]
    assert isinstance(raw, DocumentRaw) and isinstance(cleaned, DocumentCleaned)
    await store.insert(DocumentRaw, [raw])
    await store.insert(DocumentCleaned, [cleaned])
    (row,) = (await store.query("SELECT text_chars, text_bytes, text_sha256 FROM documents_raw_v")).rows
    assert row == [26, 27, hashlib.sha256(raw.text.encode()).hexdigest()]  # 'é' is two bytes
    (row,) = (
        await store.query("SELECT text_chars, content_hash, pii_redacted FROM documents_cleaned_v")
    ).rows
    assert row == [20, "abc123", {"email": 2}]
    for table in ("documents_raw", "documents_cleaned"):
        described = await store.query(f"DESCRIBE {table}", {}, 100)
        assert "text" not in [r[0] for r in described.rows]


async def test_training_request_hyperparameters_read_as_text(store: AnalyticsStore) -> None:
    await store.insert(TrainingRequested, [SAMPLES[1]])
    (row,) = (await store.query("SELECT hyperparameters, resources FROM training_requests_v")).rows
    assert row == [
        {
            "learning_rate": "0.0002",
            "epochs": "2",
            "target_modules": '["q_proj", "v_proj"]',
            "schedule": "cosine",
        },
        {"num_workers": 2.0, "cpus_per_worker": 1.5},
    ]


# --- the views -------------------------------------------------------------------------------------

HOUR = dt.datetime(2026, 11, 3, 14, tzinfo=dt.UTC)


async def test_quality_hourly_per_arm(store: AnalyticsStore) -> None:
    at = HOUR + dt.timedelta(minutes=5)
    champion = [
        inference(f"q-{i}", arm="champion", model_version="bot/3", occurred_at=at, latency_ms=latency,
                  time_to_first_token_ms=ttft, prompt_tokens=10, completion_tokens=i + 1)
        for i, (latency, ttft) in enumerate([(10.0, 1.0), (20.0, 2.0), (30.0, 3.0)])
    ]  # fmt: skip
    challenger = inference("q-c", arm="challenger", model_version="bot/4", occurred_at=at, latency_ms=50.0)
    next_hour = inference(
        "q-later", arm="champion", model_version="bot/3", occurred_at=at + dt.timedelta(hours=1)
    )
    await store.insert_inference([*champion, challenger, next_hour])
    await store.insert_feedback(
        [
            FeedbackAccepted(feedback_id="f-1", request_id="q-0", score=1.0, thumb="up"),
            FeedbackAccepted(feedback_id="f-2", request_id="q-0", score=0.5),  # a second one, no thumb
            FeedbackAccepted(feedback_id="f-3", request_id="q-1", score=0.0, thumb="down"),
        ]
    )
    result = await store.query(
        "SELECT hour, model, model_version, arm, requests, rated_requests, feedback_count, mean_score,"
        " p50_score, thumbs_up_share, p50_latency_ms, p95_latency_ms, p50_ttft_ms, prompt_tokens,"
        " completion_tokens FROM quality_hourly ORDER BY hour, arm"
    )
    hour = HOUR.isoformat()
    assert result.rows == [
        # Requests count once however many feedbacks they got; q-0's score is its mean (0.75).
        [hour, "tiny", "bot/4", "challenger", 1, 0, 0, None, None, None, 50.0, 50.0, 3.0, 2, 1],
        [hour, "tiny", "bot/3", "champion", 3, 2, 3, 0.375, 0.375, 0.5, 20.0, 29.0, 2.0, 30, 6],
        [(HOUR + dt.timedelta(hours=1)).isoformat(), "tiny", "bot/3", "champion", 1, 0, 0, None, None, None,
         12.5, 12.5, 3.0, 2, 1],
    ]  # fmt: skip


async def test_inference_with_feedback_shows_the_arm_template_and_user(store: AnalyticsStore) -> None:
    event = inference("req-arm", user="u-1", arm="challenger", template="support", template_version=2)
    await store.insert_inference([event, inference("req-none")])
    await store.insert_feedback(
        [FeedbackAccepted(feedback_id="f", request_id="req-arm", score=1.0, user_id="u-9")]
    )
    result = await store.query(
        "SELECT request_id, score, event_id, user, arm, template, template_version, feedback_user_id,"
        " feedback_occurred_at IS NULL FROM inference_with_feedback ORDER BY request_id"
    )
    assert result.rows == [
        ["req-arm", 1.0, str(event.event_id), "u-1", "challenger", "support", 2, "u-9", False],
        ["req-none", None, result.rows[1][2], "", "", "", None, "", True],
    ]


def test_usage_by_caller_counts_tokens_and_prices_only_what_has_a_price(client: Client) -> None:
    apply_migrations(client, migrations_dir())
    day = dt.datetime(2026, 11, 3, 9, tzinfo=dt.UTC)
    rows = [
        inference("u-a", user="alice", occurred_at=day, prompt_tokens=100, completion_tokens=50),
        inference("u-b", user="alice", occurred_at=day + dt.timedelta(hours=5), prompt_tokens=200,
                  completion_tokens=100),
        inference("u-c", user="bob", occurred_at=day, prompt_tokens=7, completion_tokens=3),
        inference("u-d", user="alice", model="other", occurred_at=day, prompt_tokens=1, completion_tokens=1),
        # A requested alias or version is priced as its registered model.
        inference("u-e", user="alice", model="tiny@challenger", occurred_at=day + dt.timedelta(hours=6),
                  prompt_tokens=1000, completion_tokens=0),
        inference("u-f", user="alice", model="tiny/3", occurred_at=day + dt.timedelta(hours=6),
                  prompt_tokens=0, completion_tokens=1000),
    ]  # fmt: skip
    insert_rows(client, INFERENCE_TABLE, INFERENCE_COLUMNS, [inference_row(e) for e in rows])
    # tiny is priced from noon on: alice's 9 o'clock answer and bob's have no price.
    client.insert(
        "model_prices",
        [["tiny", day + dt.timedelta(hours=3), 2.0, 6.0, "EUR", "test rate card"]],
        column_names=[
            "model", "valid_from", "prompt_price_per_1m_tokens", "completion_price_per_1m_tokens",
            "currency", "source",
        ],
    )  # fmt: skip
    result = run_read_only_query(
        client,
        "SELECT toString(day), user, producer, model, requests, prompt_tokens, completion_tokens,"
        " total_tokens, unpriced_tokens, cost, currency FROM usage_by_caller ORDER BY user, model",
        {},
        10,
    )
    assert result.rows == [
        ["2026-11-03", "alice", "serving", "other", 1, 1, 1, 2, 2, None, ""],
        ["2026-11-03", "alice", "serving", "tiny", 2, 300, 150, 450, 150, pytest.approx(0.001), "EUR"],
        ["2026-11-03", "alice", "serving", "tiny/3", 1, 0, 1000, 1000, 0, pytest.approx(0.006), "EUR"],
        [
            "2026-11-03",
            "alice",
            "serving",
            "tiny@challenger",
            1,
            1000,
            0,
            1000,
            0,
            pytest.approx(0.002),
            "EUR",
        ],
        ["2026-11-03", "bob", "serving", "tiny", 1, 7, 3, 10, 10, None, ""],
    ]


async def test_retrieval_scores_hourly(store: AnalyticsStore) -> None:
    at = HOUR + dt.timedelta(minutes=1)

    def retrieval(scores: list[float], latency: float, mode: str = "dense") -> RetrievalLogged:
        ids = [f"c-{i}" for i in range(len(scores))]
        return RetrievalLogged(
            request_id="r", collection="handbook", query="q", top_k=3, chunk_ids=ids, document_ids=ids,
            scores=scores, latency_ms=latency, mode=mode, occurred_at=at,
        )  # fmt: skip

    events = [
        retrieval([0.5, 0.9], 10.0),
        retrieval([0.7], 20.0),
        retrieval([], 30.0),
        retrieval([0.03], 5, "hybrid"),
    ]
    await store.insert(RetrievalLogged, events)
    result = await store.query(
        "SELECT collection, mode, queries, zero_hit_share, mean_hits, mean_top_score, p50_top_score,"
        " p50_latency_ms, p95_latency_ms FROM retrieval_scores_hourly ORDER BY mode"
    )
    assert result.rows == [
        [
            "handbook",
            "dense",
            3,
            pytest.approx(1 / 3),
            1.0,
            pytest.approx(0.8),
            pytest.approx(0.8),
            20.0,
            29.0,
        ],
        ["handbook", "hybrid", 1, 0.0, 1.0, 0.03, 0.03, 5.0, 5.0],
    ]


async def test_training_runs_show_each_jobs_latest_state(store: AnalyticsStore) -> None:
    def at(minutes: int) -> dt.datetime:
        return HOUR + dt.timedelta(minutes=minutes)

    def progress(job: str, step: int, minutes: int) -> TrainingProgress:
        return TrainingProgress(
            job_id=job, step=step, total_steps=20, epoch=step / 20, loss=2.0 - step / 10,
            learning_rate=1e-4, occurred_at=at(minutes),
        )  # fmt: skip

    await store.insert(
        TrainingProgress,
        [progress("done", 5, 0), progress("done", 10, 1), progress("broke", 2, 0), progress("busy", 3, 2)],
    )
    await store.insert(
        TrainingCompleted,
        [TrainingCompleted(job_id="done", model_name="bot", base_model="smollm2", dataset_version_id="dv",
                           adapter_uri="file:///a", method="sft_lora", metrics={"eval_loss": 0.9},
                           occurred_at=at(3))],
    )  # fmt: skip
    await store.insert(TrainingFailed, [TrainingFailed(job_id="broke", reason="OOM", occurred_at=at(4))])
    await store.insert(
        TrainingFailed, [TrainingFailed(job_id="never-ran", reason="bad spec", occurred_at=at(5))]
    )
    result = await store.query(
        "SELECT job_id, state, duration_s, ended_at IS NULL, progress_events, last_step, total_steps,"
        " last_loss, model_name, metrics, failure_reason FROM training_runs_v ORDER BY job_id"
    )
    assert result.rows == [
        ["broke", "failed", 240.0, False, 1, 2, 20, 1.8, "", {}, "OOM"],
        ["busy", "running", 0.0, True, 1, 3, 20, 1.7, "", {}, ""],
        ["done", "completed", 180.0, False, 2, 10, 20, 1.0, "bot", {"eval_loss": 0.9}, ""],
        ["never-ran", "failed", 0.0, False, 0, None, None, None, "", {}, "bad spec"],
    ]


async def test_current_aliases_and_canaries(store: AnalyticsStore) -> None:
    def alias(name: str, version: int | None, minutes: int) -> ModelAliasChanged:
        return ModelAliasChanged(
            model="bot", alias=name, version=version, occurred_at=HOUR + dt.timedelta(minutes=minutes)
        )

    # champion moves 1 -> 2; challenger is set to 3 and then removed.
    changes = [
        alias("champion", 1, 0),
        alias("champion", 2, 5),
        alias("challenger", 3, 1),
        alias("challenger", None, 6),
    ]
    await store.insert(ModelAliasChanged, changes)
    rows = (await store.query("SELECT model, alias, version, changed_at FROM model_aliases_current")).rows
    assert rows == [["bot", "champion", 2, (HOUR + dt.timedelta(minutes=5)).isoformat()]]

    def canary(share: float, active: bool, outcome: str, minutes: int) -> ModelCanaryChanged:
        return ModelCanaryChanged.model_validate(
            {"model": "bot", "alias": "champion", "challenger_alias": "challenger", "share": share,
             "champion_version": 2, "challenger_version": 3, "active": active, "outcome": outcome,
             "occurred_at": HOUR + dt.timedelta(minutes=minutes)}
        )  # fmt: skip

    await store.insert(ModelCanaryChanged, [canary(0.1, True, "", 0), canary(0.0, False, "rollback", 9)])
    rows = (
        await store.query(
            "SELECT alias, challenger_alias, share, active, outcome FROM model_canaries_current"
        )
    ).rows
    assert rows == [["champion", "challenger", 0.0, False, "rollback"]]


def test_rolling_back_the_analyst_views_restores_inference_with_feedback(client: Client) -> None:
    apply_migrations(client, migrations_dir())
    assert rollback_migration(client, migrations_dir()) == "0020_judge_scores"
    assert "judge_scores" not in tables(client)
    assert rollback_migration(client, migrations_dir()) == "0019_histograms_answers_only"
    assert rollback_migration(client, migrations_dir()) == "0018_inference_histograms_hourly"
    assert rollback_migration(client, migrations_dir()) == "0017_views_without_failures"
    assert rollback_migration(client, migrations_dir()) == "0016_inference_errors"
    assert rollback_migration(client, migrations_dir()) == "0015_drift_results"
    assert rollback_migration(client, migrations_dir()) == "0014_drift_alert_evidence_and_loop"
    assert rollback_migration(client, migrations_dir()) == "0013_usage_priced_by_registered_name"
    assert rollback_migration(client, migrations_dir()) == "0012_analyst_views"
    described = run_read_only_query(client, "DESCRIBE inference_with_feedback", {}, 100)
    assert [r[0] for r in described.rows][-4:] == ["feedback_id", "score", "thumb", "comment"]
    assert "quality_hourly" not in tables(client)


# --- requests that failed on the server side (0017) ------------------------------------------------


async def test_quality_hourly_counts_failures_apart_from_answers(store: AnalyticsStore) -> None:
    at = HOUR + dt.timedelta(minutes=5)
    answers = [
        inference(f"a-{i}", arm="champion", model_version="bot/3", occurred_at=at, latency_ms=latency,
                  time_to_first_token_ms=ttft, prompt_tokens=10, completion_tokens=i + 1)
        for i, (latency, ttft) in enumerate([(10.0, 1.0), (20.0, 2.0), (30.0, 3.0)])
    ]  # fmt: skip
    # A timeout among them: slow, with tokens spent, and rated (the user saw nothing).
    timeout = inference("a-timeout", arm="champion", model_version="bot/3", occurred_at=at,
                        latency_ms=30_000.0, time_to_first_token_ms=0.0, prompt_tokens=10,
                        completion_tokens=7, completion="", error="DEADLINE_EXCEEDED")  # fmt: skip
    # An hour of the challenger where nothing was answered.
    away = inference("c-away", arm="challenger", model_version="bot/4", occurred_at=at, latency_ms=2.0,
                     prompt_tokens=4, completion_tokens=0, completion="", error="UNAVAILABLE")  # fmt: skip
    await store.insert_inference([*answers, timeout, away])
    await store.insert_feedback(
        [
            FeedbackAccepted(feedback_id="f-1", request_id="a-0", score=1.0, thumb="up"),
            FeedbackAccepted(feedback_id="f-2", request_id="a-0", score=0.5),
            FeedbackAccepted(feedback_id="f-3", request_id="a-1", score=0.0, thumb="down"),
            FeedbackAccepted(feedback_id="f-4", request_id="a-timeout", score=0.0, thumb="down"),
            FeedbackAccepted(feedback_id="f-5", request_id="c-away", score=0.0, thumb="down"),
        ]
    )
    result = await store.query(
        "SELECT arm, requests, failed, error_rate, rated_requests, feedback_count, mean_score, p50_score,"
        " thumbs_up_share, p50_latency_ms, p95_latency_ms, p50_ttft_ms, p95_ttft_ms, prompt_tokens,"
        " completion_tokens FROM quality_hourly ORDER BY arm"
    )
    assert result.rows == [
        # Nothing answered: no quantiles, no tokens, no scores; every request failed.
        ["challenger", 1, 1, 1.0, 0, 0, None, None, None, None, None, None, None, 0, 0],
        # Four requests, one failed. The rest is the three answers': a-0 scores 0.75 (two feedbacks),
        # a-1 0.0; thumbs 1 up of 2; latency 10/20/30 (p95 = 20 + 0.9 * 10); TTFT 1/2/3; tokens 30 and 6.
        ["champion", 4, 1, 0.25, 2, 3, 0.375, 0.375, 0.5, 20.0, 29.0, 2.0, pytest.approx(2.9), 30, 6],
    ]


async def test_inference_with_feedback_and_usage_by_caller_show_failures(store: AnalyticsStore) -> None:
    day = dt.datetime(2026, 11, 3, 9, tzinfo=dt.UTC)
    await store.insert_inference(
        [
            inference("ok", user="alice", occurred_at=day, prompt_tokens=100, completion_tokens=50),
            inference("late", user="alice", occurred_at=day, prompt_tokens=100, completion_tokens=20,
                      error="DEADLINE_EXCEEDED"),
        ]
    )  # fmt: skip
    await store.insert_feedback(
        [FeedbackAccepted(feedback_id="f", request_id="late", score=0.0, thumb="down")]
    )
    joined = await store.query(
        "SELECT request_id, thumb, error FROM inference_with_feedback ORDER BY request_id"
    )
    assert joined.rows == [["late", "down", "DEADLINE_EXCEEDED"], ["ok", "", ""]]
    # The failed request's tokens were spent: they stay in the usage, and the row says one failed.
    usage = await store.query(
        "SELECT user, requests, failed, prompt_tokens, completion_tokens, total_tokens FROM usage_by_caller"
    )
    assert usage.rows == [["alice", 2, 1, 200, 70, 270]]


def test_rolling_back_0017_restores_the_views_without_failures(client: Client) -> None:
    apply_migrations(client, migrations_dir())
    while rollback_migration(client, migrations_dir()) != "0017_views_without_failures":
        pass  # migrations that came after

    def columns(view: str) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in run_read_only_query(client, f"DESCRIBE {view}", {}, 100).rows]

    quality = columns("quality_hourly")
    assert [name for name, _ in quality][-2:] == ["prompt_tokens", "completion_tokens"]
    assert dict(quality)["p95_latency_ms"] == "Float64"
    assert columns("inference_with_feedback")[-1][0] == "feedback_occurred_at"
    assert columns("usage_by_caller")[-1][0] == "currency"
    # 0016's down drops inference_log.error, which the restored views no longer read.
    assert rollback_migration(client, migrations_dir()) == "0016_inference_errors"
    assert run_read_only_query(client, "SELECT count() FROM quality_hourly", {}, 1).rows == [[0]]
