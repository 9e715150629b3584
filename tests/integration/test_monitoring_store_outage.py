"""ClickHouse away from monitoring for a few seconds while inference logs flow: nothing is
dead-lettered and every event is stored exactly once.

The fault is real: monitoring's connection to the chdb engine drops, and for five seconds another
process holds the database folder (chdb's own lock refuses monitoring, as a server that is down
refuses connections); monitoring's inserts fail until the folder is free again.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from llmops.cli.local import LocalPlatform
from llmops.contracts import topics
from llmops.core.service import Runtime
from llmops.core.settings import AuthSettings, ClickHouseSettings, KafkaSettings, PlatformSettings
from llmops.monitoring.app import MonitoringService
from llmops.monitoring.settings import Settings
from llmops.testing.platform import end_offset, eventually, inference_message, make_platform

pytestmark = pytest.mark.integration

EVENTS = 4_000
HOLD_S = 5.0

_HOLDER = """
import sys, time
from llmops.core.clickhouse import connect
client = connect(sys.argv[1])
client.query("SELECT 1")
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
client.close()
"""


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalPlatform]:
    platform = make_platform(tmp_path / "p")
    try:
        platform.start_broker()
        yield platform
    finally:
        platform.down()


async def _produce(bootstrap: str, first: int, count: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for start in range(first, first + count, 250):
            futures = [
                await producer.send(topics.INFERENCE_LOGGED, inference_message(i), key=f"req-{i}".encode())
                for i in range(start, min(start + 250, first + count))
            ]
            await asyncio.gather(*futures)
            await asyncio.sleep(0.05)
    finally:
        await producer.stop()


async def test_clickhouse_away_for_seconds_loses_and_dead_letters_nothing(
    broker: LocalPlatform, tmp_path: Path
) -> None:
    dsn = f"chdb://{tmp_path / 'clickhouse'}"
    settings = Settings(
        platform=PlatformSettings(data_dir=tmp_path / "data", run_dir=tmp_path / "run"),
        auth=AuthSettings(auth_disabled=True),
        kafka=KafkaSettings(bootstrap_servers=broker.bootstrap_servers),
        clickhouse=ClickHouseSettings(dsn=dsn),
        batch_max_records=200,
    )
    runtime = Runtime(settings)
    service = MonitoringService(settings)
    service.register(runtime)
    await service.start(runtime)
    await runtime.bus.start()
    runtime.own(runtime.bus, close=lambda bus: bus.stop())
    holder: subprocess.Popen | None = None
    try:
        await _produce(broker.bootstrap_servers, 0, EVENTS // 2)

        async def stored() -> int:
            result = await service.store.query("SELECT count() FROM inference_log")
            return int(result.rows[0][0])

        async def stored_at_least(count: int) -> bool:
            return await stored() >= count

        # The first half is in (monitoring is idle: nothing reconnects before the holder has the folder).
        await eventually(lambda: stored_at_least(EVENTS // 2), timeout=60)
        # ClickHouse goes away: the connection drops and another process holds the folder.
        await service.store.disconnect()
        holder = await asyncio.to_thread(
            subprocess.Popen,
            [sys.executable, "-c", _HOLDER, dsn, str(HOLD_S)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout is not None
        assert (await asyncio.to_thread(holder.stdout.readline)).strip() == "holding"
        away_at = time.monotonic()
        await _produce(broker.bootstrap_servers, EVENTS // 2, EVENTS // 2)
        await asyncio.to_thread(holder.wait, 60)
        print(f"ClickHouse was away for {time.monotonic() - away_at:.1f}s")

        await eventually(lambda: stored_at_least(EVENTS), timeout=120)
        result = await service.store.query(
            "SELECT count(), uniqExact(event_id), uniqExact(request_id) FROM inference_log FINAL"
        )
        assert [int(v) for v in result.rows[0]] == [EVENTS, EVENTS, EVENTS]
        assert await end_offset(broker.bootstrap_servers, topics.dlq(topics.INFERENCE_LOGGED)) == 0
    finally:
        if holder is not None and holder.poll() is None:
            holder.kill()
        await runtime.close()
