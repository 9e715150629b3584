"""Bounded analyst queries: the engine stops a query at its limits, a ``SETTINGS`` clause cannot raise
them, and a running query can be stopped from another connection (what a cancelled call does).

Each test opens its own chdb folder and closes every client (one folder per process at a time).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from llmops.contracts.events import InferenceLogged
from llmops.core.clickhouse import (
    QueryLimitExceeded,
    QueryLimits,
    ReadOnlyQueryError,
    connect,
    kill_query,
    run_read_only_query,
)
from llmops.monitoring.store.analytics import AnalyticsStore

# A scan that takes minutes: far past any limit a test sets.
SLOW = "SELECT count() FROM numbers(100000000000) WHERE sipHash64(number) % 7 = 3"
NAMES = {
    "max_seconds": "LLMOPS_MONITORING_QUERY_MAX_SECONDS",
    "max_rows_to_read": "LLMOPS_MONITORING_QUERY_MAX_ROWS_TO_READ",
    "max_bytes_to_read": "LLMOPS_MONITORING_QUERY_MAX_BYTES_TO_READ",
    "max_result_bytes": "LLMOPS_MONITORING_QUERY_MAX_RESULT_BYTES",
}


@pytest.fixture
def clients(tmp_path: Path) -> Iterator[tuple[Client, Client]]:
    """A writer and a reader on one folder, as the monitoring store has them."""
    writer = connect(f"chdb://{tmp_path / 'clickhouse'}")
    reader = connect(f"chdb://{tmp_path / 'clickhouse'}")
    try:
        writer.command("CREATE TABLE t (id UInt64, body String) ENGINE = MergeTree ORDER BY id")
        writer.insert("t", [[i, "x" * 100] for i in range(20_000)], column_names=["id", "body"])
        yield writer, reader
    finally:
        reader.close()
        writer.close()


def test_a_query_past_its_time_is_stopped_and_the_error_names_the_setting(clients) -> None:  # noqa: ANN001
    _, reader = clients
    began = time.monotonic()
    with pytest.raises(
        QueryLimitExceeded, match=r"1 s of execution time \(LLMOPS_MONITORING_QUERY_MAX_SECONDS\)"
    ):
        run_read_only_query(reader, SLOW, limits=QueryLimits(max_seconds=1, setting_names=NAMES))
    assert time.monotonic() - began < 10


@pytest.mark.parametrize(
    ("limits", "sql", "message"),
    [
        (QueryLimits(max_rows_to_read=1000), "SELECT sum(length(body)) FROM t", "1,000 rows read"),
        (QueryLimits(max_bytes_to_read=100_000), "SELECT sum(length(body)) FROM t", "100,000 bytes read"),
        (QueryLimits(max_result_bytes=50_000), "SELECT id, body FROM t", "50,000 bytes of result"),
    ],
)
def test_reads_and_results_past_their_limits_are_refused(clients, limits, sql, message) -> None:  # noqa: ANN001
    _, reader = clients
    named = QueryLimits(
        max_rows_to_read=limits.max_rows_to_read,
        max_bytes_to_read=limits.max_bytes_to_read,
        max_result_bytes=limits.max_result_bytes,
        setting_names=NAMES,
    )
    with pytest.raises(QueryLimitExceeded, match=message):
        run_read_only_query(reader, sql, max_rows=100_000, limits=named)
    # The same query within generous limits answers: the limit, not the query, stopped it.
    result = run_read_only_query(reader, sql, max_rows=100_000, limits=QueryLimits(max_seconds=60))
    assert result.rows


def test_a_settings_clause_cannot_raise_the_limits(clients) -> None:  # noqa: ANN001
    _, reader = clients
    with pytest.raises(ReadOnlyQueryError, match="read-only mode"):
        run_read_only_query(
            reader,
            "SELECT sum(length(body)) FROM t SETTINGS max_rows_to_read = 1000000",
            limits=QueryLimits(max_rows_to_read=1000),
        )


def test_a_running_query_is_stopped_from_another_connection(clients) -> None:  # noqa: ANN001
    writer, reader = clients
    outcome: list[BaseException | None] = []

    def analyst() -> None:
        try:
            run_read_only_query(reader, SLOW, limits=QueryLimits(max_seconds=120), tag="analyst-1")
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    thread = threading.Thread(target=analyst)
    thread.start()
    deadline = time.monotonic() + 10
    stopped = 0
    while not stopped and time.monotonic() < deadline:
        time.sleep(0.2)
        stopped = kill_query(writer, "analyst-1")
    assert stopped == 1
    thread.join(timeout=10)
    assert not thread.is_alive(), "the query still ran 10 s after it was killed"
    assert outcome and outcome[0] is not None and "cancelled" in str(outcome[0]).lower()
    assert kill_query(writer, "analyst-1") == 0  # nothing left running under that tag


def test_writes_go_on_while_a_long_read_runs(clients) -> None:  # noqa: ANN001
    writer, reader = clients

    def analyst() -> None:
        with pytest.raises(ClickHouseError, match="cancelled"):
            run_read_only_query(reader, SLOW, limits=QueryLimits(max_seconds=60), tag="long")

    thread = threading.Thread(target=analyst)
    thread.start()
    time.sleep(1)  # the read is running
    writer.insert("t", [[100_000 + i, "y"] for i in range(1000)], column_names=["id", "body"])
    # The write is done and visible while the read still runs: it did not wait for it.
    assert writer.query("SELECT count() FROM t").result_rows == [(21_000,)]
    assert thread.is_alive(), "the read ended before the write was done: the test did not overlap them"
    assert kill_query(writer, "long") == 1
    thread.join(timeout=10)
    assert not thread.is_alive()


# --- the monitoring store: limits, readers beside the writer, cancelled callers ---------------------

RUNNING_SLOW = (
    "SELECT count() FROM system.processes"
    " WHERE query LIKE '%sipHash64%' AND query NOT LIKE '%system.processes%'"
)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[AnalyticsStore]:
    s = AnalyticsStore(
        f"chdb://{tmp_path / 'analytics'}", limits=QueryLimits(max_seconds=60, setting_names=NAMES), readers=2
    )
    try:
        await s.open()
        yield s
    finally:
        await s.close()


async def _slow_running(store: AnalyticsStore) -> int:
    return (await store.query(RUNNING_SLOW)).rows[0][0]


async def test_the_store_applies_its_limits(tmp_path: Path) -> None:
    store = AnalyticsStore(f"chdb://{tmp_path / 'a'}", limits=QueryLimits(max_seconds=1, setting_names=NAMES))
    await store.open()
    try:
        with pytest.raises(QueryLimitExceeded, match="LLMOPS_MONITORING_QUERY_MAX_SECONDS"):
            await store.query(SLOW)
        # The reader that hit the limit answers the next query normally.
        assert (await store.query("SELECT 1")).rows == [[1]]
    finally:
        await store.close()


async def test_inserts_and_other_reads_go_on_while_a_long_query_runs(store: AnalyticsStore) -> None:
    long = asyncio.create_task(store.query(SLOW))
    await eventually_true(lambda: _slow_running(store), want=1)
    logged = InferenceLogged(
        request_id="during-the-long-read",
        model="m",
        prompt="p",
        completion="c",
        prompt_tokens=1,
        completion_tokens=1,
        latency_ms=1.0,
        time_to_first_token_ms=1.0,
    )
    assert await store.insert_inference([logged]) == 1
    rows = (await store.query("SELECT request_id FROM inference_log_v")).rows
    assert rows == [["during-the-long-read"]]
    assert not long.done(), "the long query ended first: the test did not overlap them"
    long.cancel()
    with pytest.raises(asyncio.CancelledError):
        await long


async def test_a_cancelled_caller_has_its_query_stopped_in_the_engine(store: AnalyticsStore) -> None:
    long = asyncio.create_task(store.query(SLOW))
    await eventually_true(lambda: _slow_running(store), want=1)
    long.cancel()
    with pytest.raises(asyncio.CancelledError):
        await long
    # Stopped in the engine, not only abandoned here (it would run for its 60 s limit otherwise).
    await eventually_true(lambda: _slow_running(store), want=0, timeout=10)


async def eventually_true(probe, want: int, timeout: float = 20) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = await probe()
        if seen == want:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"wanted {want} within {timeout} s, last saw {seen}")
