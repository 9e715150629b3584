"""kill -9 of monitoring while inference events flow: `llmops up --only monitoring` brings it back to
SERVING within seconds, and ClickHouse holds every event exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from llmops.cli.local import LocalPlatform
from llmops.contracts import topics
from llmops.testing.platform import eventually, inference_message, make_platform, query_monitoring

pytestmark = pytest.mark.e2e

EVENTS = 20_000
# The stated bound: a restarted monitoring is SERVING again within this many seconds.
RECOVERY_BOUND_S = 30


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[LocalPlatform]:
    platform = make_platform(tmp_path)
    try:
        platform.start_broker()
        platform.start_services(["monitoring"])
        yield platform
    finally:
        platform.down()


async def _produce(bootstrap: str, sent: list[int]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=20
    )
    await producer.start()
    try:
        for start in range(0, EVENTS, 500):
            futures = [
                await producer.send(topics.INFERENCE_LOGGED, inference_message(i), key=f"req-{i}".encode())
                for i in range(start, start + 500)
            ]
            await asyncio.gather(*futures)
            sent[0] = start + 500
            await asyncio.sleep(0.1)  # a steady flow over several seconds, not one burst
    finally:
        await producer.stop()


def _stored(platform: LocalPlatform) -> int:
    return int(query_monitoring(platform, "SELECT count() FROM inference_log")[0][0])


async def test_monitoring_killed_mid_flow_recovers_and_stores_each_event_once(
    platform: LocalPlatform,
) -> None:
    sent = [0]
    producing = asyncio.create_task(_produce(platform.bootstrap_servers, sent))
    await eventually(lambda: _stored(platform) >= 2_000, timeout=120)
    assert not producing.done(), "the events must still be flowing when monitoring is killed"
    pid = platform.pid("monitoring")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    await eventually(lambda: platform.pid("monitoring") is None, timeout=10)
    killed_at_sent = sent[0]

    started = time.monotonic()
    up = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "llmops.cli", "up", "--only", "monitoring", "--timeout", "120"],
        env=platform.env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    recovered_s = time.monotonic() - started
    assert up.returncode == 0, up.stdout + up.stderr
    assert platform.health("monitoring") == "SERVING"
    print(f"killed at {killed_at_sent} of {EVENTS} sent; SERVING again after {recovered_s:.1f}s")
    assert recovered_s < RECOVERY_BOUND_S

    await asyncio.wait_for(producing, 120)

    def exactly_once() -> bool:
        rows = query_monitoring(
            platform, "SELECT count(), uniqExact(event_id), uniqExact(request_id) FROM inference_log_v"
        )
        return [int(v) for v in rows[0]] == [EVENTS, EVENTS, EVENTS]

    await eventually(exactly_once, timeout=180, interval=2)
