"""The publish buffer against the real local broker: an outage and a restart lose nothing; past its
bound it drops and counts, never silently."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from llmops.cli.local import BROKER
from llmops.contracts.events import FeedbackSubmitted
from llmops.core.messaging import EventBus
from llmops.core.publish_buffer import PublishBuffer
from llmops.core.settings import KafkaSettings
from llmops.testing.platform import eventually, make_platform, read_topic

pytestmark = pytest.mark.integration


def _topic_type(run: str) -> type[FeedbackSubmitted]:
    class Submitted(FeedbackSubmitted):
        topic = f"llmops.test.buffer.{run}"

    return Submitted


async def test_events_wait_out_a_broker_outage_and_a_restart_of_the_process(tmp_path: Path) -> None:
    platform = make_platform(tmp_path / "p")
    platform.start_broker()
    run = uuid.uuid4().hex[:8]
    Submitted = _topic_type(run)
    spool = tmp_path / "spool" / "log.jsonl"
    try:
        bus = EventBus(
            KafkaSettings(bootstrap_servers=platform.bootstrap_servers, close_timeout_seconds=3), "test"
        )
        await bus.start()
        buffer = PublishBuffer(bus.publish, Submitted, spool, "test", memory_limit=10)
        await buffer.__aenter__()
        buffer.put(Submitted(request_id="before"))
        await eventually(lambda: buffer.pending() == 0)

        platform.stop(BROKER)
        sent = [Submitted(request_id=f"r{i}") for i in range(30)]
        for event in sent:
            buffer.put(event)
        await asyncio.sleep(1)
        # Past the 10 the memory holds, events wait in the spool file.
        assert spool.exists()
        # The process stops before the broker is back: what is still in memory joins the spool.
        await buffer.close(timeout=0.5)
        await bus.stop()
        assert buffer.pending() == len(spool.read_bytes().splitlines()) >= 20 and buffer.dropped == 0

        platform.start_broker()
        bus = EventBus(
            KafkaSettings(bootstrap_servers=platform.bootstrap_servers, close_timeout_seconds=3), "test"
        )
        await bus.start()
        async with PublishBuffer(bus.publish, Submitted, spool, "test", memory_limit=10) as restarted:
            await eventually(lambda: restarted.pending() == 0, timeout=60)
        await bus.stop()
        records = await read_topic(platform.bootstrap_servers, Submitted.topic, 31)
        got = {Submitted.model_validate_json(r.value).event_id for r in records}
        assert {e.event_id for e in sent} <= got
        assert not spool.exists()
    finally:
        platform.down()


async def test_past_its_bound_the_buffer_drops_and_counts(tmp_path: Path) -> None:
    platform = make_platform(tmp_path / "p")
    platform.start_broker()
    run = uuid.uuid4().hex[:8]
    Submitted = _topic_type(run)
    try:
        bus = EventBus(
            KafkaSettings(bootstrap_servers=platform.bootstrap_servers, close_timeout_seconds=3), "test"
        )
        await bus.start()
        one = len(Submitted(request_id="r00").model_dump_json()) + 1
        buffer = PublishBuffer(
            bus.publish, Submitted, tmp_path / "s.jsonl", "test", memory_limit=5, spool_limit_bytes=5 * one
        )
        platform.stop(BROKER)
        async with buffer:
            for i in range(15):
                buffer.put(Submitted(request_id=f"r{i:02d}"))
            assert buffer.dropped == 5 and buffer.pending() == 10
        await bus.stop()
    finally:
        platform.down()
