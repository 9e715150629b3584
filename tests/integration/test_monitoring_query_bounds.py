"""Analysts' queries through monitoring's Query RPC are bounded and stop when their caller goes away.

The monitoring process runs with a rows-read limit of 10 million and a 60 s time limit: a scan past
the rows limit is refused with RESOURCE_EXHAUSTED naming the setting, and a long query (a cross join
that reads few rows) whose call is cancelled leaves ClickHouse's process list well before its time
limit would have ended it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import grpc
import pytest

from llmops.cli.local import LocalPlatform
from llmops.contracts.rpc.monitoring.v1 import monitoring_pb2, monitoring_pb2_grpc
from llmops.testing.platform import auth, eventually, running_platform

pytestmark = pytest.mark.integration

SCAN = "SELECT count() FROM numbers(100000000000) WHERE sipHash64(number) % 7 = 3"
# About 10^10 hashes from 200,000 rows read: minutes of work within the rows limit.
LONG = (
    "SELECT count() FROM numbers(100000) AS a CROSS JOIN numbers(100000) AS b"
    " WHERE sipHash64(a.number, b.number) % 7 = 3"
)
RUNNING = (
    "SELECT count() FROM system.processes"
    " WHERE query LIKE '%CROSS JOIN numbers%' AND query NOT LIKE '%system.processes%'"
)
TIME_LIMIT_S = 60


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    with running_platform(
        tmp_path_factory.mktemp("bounds"),
        ["monitoring"],
        LLMOPS_MONITORING_QUERY_MAX_ROWS_TO_READ="10000000",
        LLMOPS_MONITORING_QUERY_MAX_SECONDS=str(TIME_LIMIT_S),
    ) as p:
        yield p


async def _running(stub: monitoring_pb2_grpc.MonitoringServiceStub, metadata: tuple) -> int:
    reply = await stub.Query(monitoring_pb2.QueryRequest(sql=RUNNING), metadata=metadata, timeout=30)
    return int(reply.rows[0].values[0].number_value)


async def test_a_scan_past_the_rows_limit_is_refused_naming_the_setting(platform: LocalPlatform) -> None:
    async with grpc.aio.insecure_channel(platform.address("monitoring")) as channel:
        stub = monitoring_pb2_grpc.MonitoringServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Query(monitoring_pb2.QueryRequest(sql=SCAN), metadata=auth(platform), timeout=60)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "10,000,000 rows read (LLMOPS_MONITORING_QUERY_MAX_ROWS_TO_READ)" in err.value.details()
        # A settings clause cannot lift it: readonly refuses the change.
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Query(
                monitoring_pb2.QueryRequest(sql=SCAN + " SETTINGS max_rows_to_read = 0"),
                metadata=auth(platform),
                timeout=60,
            )
        assert (
            err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "readonly" in err.value.details().lower()
        )


async def test_a_cancelled_call_stops_its_query(platform: LocalPlatform) -> None:
    metadata = auth(platform)
    async with grpc.aio.insecure_channel(platform.address("monitoring")) as channel:
        stub = monitoring_pb2_grpc.MonitoringServiceStub(channel)
        call = stub.Query(monitoring_pb2.QueryRequest(sql=LONG), metadata=metadata, timeout=300)
        began = time.monotonic()
        while await _running(stub, metadata) == 0:
            assert time.monotonic() - began < 30, "the long query never showed in the process list"
            await asyncio.sleep(0.2)
        call.cancel()
        cancelled_at = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await call
        # Gone from ClickHouse long before its time limit would have ended it.
        while await _running(stub, metadata) != 0:
            waited = time.monotonic() - cancelled_at
            assert waited < TIME_LIMIT_S / 4, (
                f"the query still ran {waited:.0f} s after its call was cancelled"
            )
            await asyncio.sleep(0.2)
        # And the service goes on answering.
        reply = await stub.Query(monitoring_pb2.QueryRequest(sql="SELECT 1"), metadata=metadata, timeout=30)
        assert reply.rows[0].values[0].number_value == 1
    # The query leaves the process list as the KILL takes effect; the service logs it once the KILL
    # returns, a moment later.
    await eventually(
        lambda: "stopped the query of a caller that went away" in platform.log_tail("monitoring", 200),
        timeout=10,
    )
