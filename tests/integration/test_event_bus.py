"""EventBus against the real local Kafka broker: delivery, dedup, retries and the dead-letter topic."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import MetaData

from llmops.cli.local import BROKER, LocalPlatform
from llmops.contracts.events import FeedbackSubmitted, InferenceLogged
from llmops.contracts.topics import dlq
from llmops.core.errors import InvalidArgument
from llmops.core.handled_events import HandledEvents, handled_table
from llmops.core.messaging import DLQ_ATTEMPTS, DLQ_ERROR, DLQ_OFFSET, DLQ_TOPIC, EventBus
from llmops.core.settings import KafkaSettings
from llmops.core.sql import make_engine
from llmops.testing.platform import (
    committed_offset,
    end_offset,
    eventually,
    make_platform,
    publish_raw,
    read_topic,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    platform = make_platform(tmp_path_factory.mktemp("bus"))
    platform.start_broker()
    yield platform
    platform.down()


@pytest.fixture
async def bus(broker: LocalPlatform, tmp_path: Path) -> AsyncIterator[EventBus]:
    bus = _bus(broker, tmp_path, budget=0.3)
    yield bus
    await bus.stop()


def _bus(broker: LocalPlatform, tmp_path: Path, budget: float) -> EventBus:
    settings = KafkaSettings(
        bootstrap_servers=broker.bootstrap_servers,
        retry_budget_seconds=budget,
        retry_backoff_ms=10,
        retry_backoff_max_ms=100,
    )
    return EventBus(settings, "test", _handled_record(tmp_path))


def _handled_record(tmp_path: Path) -> HandledEvents:
    """A service's record of handled events, in its own SQLite database."""
    engine = make_engine(f"sqlite:///{tmp_path / 'service.sqlite'}")
    metadata = MetaData()
    table = handled_table(metadata, "test")
    metadata.create_all(engine)
    return HandledEvents(engine, table)


def _topic_of(event_type: type, suffix: str) -> str:
    # Each test gets its own topics so that runs do not see each other's messages.
    return f"{event_type.topic}.{suffix}"


def _feedback(request_id: str) -> FeedbackSubmitted:
    return FeedbackSubmitted(request_id=request_id, thumb="up")


async def test_malformed_message_goes_to_dlq_and_the_next_is_processed(
    bus: EventBus, broker: LocalPlatform
) -> None:
    run = uuid.uuid4().hex[:8]

    class Submitted(FeedbackSubmitted):
        topic = _topic_of(FeedbackSubmitted, run)

    handled: list[str] = []

    async def handler(event: Submitted) -> None:
        handled.append(event.request_id)

    bus.consume(Submitted, f"g-{run}", handler)
    await bus.start()
    await publish_raw(
        broker.bootstrap_servers,
        Submitted.topic,
        [
            b"{not json",
            b'{"request_id": 42, "thumb": "sideways"}',
            None,
            _feedback("ok-1").model_dump_json().encode(),
        ],
        # A tombstone (no value) needs a key.
        key=b"req",
    )
    await eventually(lambda: handled == ["ok-1"])
    dead = await read_topic(broker.bootstrap_servers, dlq(Submitted.topic), 3)
    headers = [dict(r.headers) for r in dead]
    assert [r.value for r in dead] == [b"{not json", b'{"request_id": 42, "thumb": "sideways"}', b""]
    assert [h[DLQ_OFFSET] for h in headers] == [b"0", b"1", b"2"]
    assert all(h[DLQ_TOPIC] == Submitted.topic.encode() for h in headers)
    assert b"Invalid JSON" in headers[0][DLQ_ERROR]
    assert b"request_id" in headers[1][DLQ_ERROR] and b"thumb" in headers[1][DLQ_ERROR]
    assert b"tombstone" in headers[2][DLQ_ERROR]


async def test_failing_handler_is_retried_then_dead_lettered(bus: EventBus, broker: LocalPlatform) -> None:
    run = uuid.uuid4().hex[:8]

    class Submitted(FeedbackSubmitted):
        topic = _topic_of(FeedbackSubmitted, run)

    attempts: dict[str, int] = {}
    handled: list[str] = []

    async def handler(event: Submitted) -> None:
        attempts[event.request_id] = attempts.get(event.request_id, 0) + 1
        if event.request_id == "poison":
            # A ValueError from the handler is a failure to retry, not an invalid message.
            raise ValueError("store is refusing this one")
        handled.append(event.request_id)

    bus.consume(Submitted, f"g-{run}", handler)
    await bus.start()
    await publish_raw(
        broker.bootstrap_servers,
        Submitted.topic,
        [_feedback("poison").model_dump_json().encode(), _feedback("after").model_dump_json().encode()],
    )
    await eventually(lambda: handled == ["after"])
    # Tried again with backoff until the (test's 0.3 s) budget was spent, then dead-lettered.
    assert attempts["poison"] >= 3
    dead = await read_topic(broker.bootstrap_servers, dlq(Submitted.topic), 1)
    assert b"store is refusing this one" in dict(dead[0].headers)[DLQ_ERROR]
    assert dict(dead[0].headers)[DLQ_ATTEMPTS] == str(attempts["poison"]).encode()


async def test_a_handler_whose_store_is_away_for_a_while_loses_nothing(
    broker: LocalPlatform, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]

    class Submitted(FeedbackSubmitted):
        topic = _topic_of(FeedbackSubmitted, run)

    bus = _bus(broker, tmp_path, budget=20)
    back_at = time.monotonic() + 2.0
    handled: list[str] = []

    async def handler(event: Submitted) -> None:
        if time.monotonic() < back_at:
            raise ConnectionError("store unavailable")
        handled.append(event.request_id)

    bus.consume(Submitted, f"g-{run}", handler)
    await bus.start()
    try:
        await publish_raw(
            broker.bootstrap_servers,
            Submitted.topic,
            [_feedback(f"r{i}").model_dump_json().encode() for i in range(5)],
        )
        await eventually(lambda: len(handled) == 5, timeout=30)
    finally:
        await bus.stop()
    assert handled == [f"r{i}" for i in range(5)]
    assert await end_offset(broker.bootstrap_servers, dlq(Submitted.topic)) == 0


async def test_an_app_message_without_the_envelope_twice_is_one_event(
    bus: EventBus, broker: LocalPlatform
) -> None:
    run = uuid.uuid4().hex[:8]

    class Submitted(FeedbackSubmitted):
        topic = _topic_of(FeedbackSubmitted, run)

    handled: list[str] = []

    async def handler(event: Submitted) -> None:
        handled.append(f"{event.request_id}:{event.event_id}")

    bus.consume(Submitted, f"g-{run}", handler)
    await bus.start()
    short = [b'{"request_id": "r-1", "thumb": "up"}', b'{"request_id": "r-2", "thumb": "up"}']
    await publish_raw(broker.bootstrap_servers, Submitted.topic, [short[0], short[0], short[1]])
    await eventually(lambda: len(handled) == 2)
    await asyncio.sleep(0.5)
    assert [h.split(":")[0] for h in handled] == ["r-1", "r-2"]
    assert handled[0].split(":")[1] != handled[1].split(":")[1]


async def test_a_failed_dead_letter_publish_commits_nothing_and_is_retried_once_the_broker_is_back(
    tmp_path: Path,
) -> None:
    platform = make_platform(tmp_path / "own-broker")
    platform.start_broker()
    try:
        run = uuid.uuid4().hex[:8]

        class Submitted(FeedbackSubmitted):
            topic = _topic_of(FeedbackSubmitted, run)

        bus = _bus(platform, tmp_path, budget=0.5)
        calls: list[float] = []

        async def handler(event: Submitted) -> None:
            calls.append(time.monotonic())
            if len(calls) == 1:
                # The broker goes away while the message fails: its dead-lettering fails too.
                platform.stop(BROKER)
            raise RuntimeError("poison")

        bus.consume(Submitted, f"g-{run}", handler)
        await bus.start()
        await publish_raw(
            platform.bootstrap_servers, Submitted.topic, [_feedback("p").model_dump_json().encode()]
        )
        await eventually(lambda: platform.pid(BROKER) is None, timeout=30)
        tried_while_down = len(calls)
        await asyncio.sleep(2)
        platform.start_broker()
        dead = await read_topic(platform.bootstrap_servers, dlq(Submitted.topic), 1, timeout=60)
        assert dict(dead[0].headers)[DLQ_OFFSET] == b"0"
        # Handled again after the broker came back (not committed while its DLQ publish failed), and
        # committed once it was in the DLQ. (Into the DLQ is at least once: a publish that timed out
        # while the broker was down may land too.)
        assert len(calls) > tried_while_down
        await eventually(
            lambda: committed_offset(platform.bootstrap_servers, f"g-{run}", Submitted.topic), timeout=30
        )
        assert await committed_offset(platform.bootstrap_servers, f"g-{run}", Submitted.topic) == 1
        await bus.stop()
    finally:
        platform.down()


async def test_a_message_cancelled_at_shutdown_is_not_committed(
    broker: LocalPlatform, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]

    class Submitted(FeedbackSubmitted):
        topic = _topic_of(FeedbackSubmitted, run)

    started = asyncio.Event()

    async def stuck(event: Submitted) -> None:
        started.set()
        await asyncio.sleep(3600)

    first = _bus(broker, tmp_path / "a", budget=0.3)
    first.consume(Submitted, f"g-{run}", stuck)
    await first.start()
    await publish_raw(
        broker.bootstrap_servers, Submitted.topic, [_feedback("mid-flight").model_dump_json().encode()]
    )
    await asyncio.wait_for(started.wait(), 30)
    await first.stop()

    handled: list[str] = []

    async def handler(event: Submitted) -> None:
        handled.append(event.request_id)

    second = _bus(broker, tmp_path / "b", budget=0.3)
    second.consume(Submitted, f"g-{run}", handler)
    await second.start()
    try:
        await eventually(lambda: handled == ["mid-flight"], timeout=30)
    finally:
        await second.stop()


async def test_redelivered_event_is_processed_once(bus: EventBus, broker: LocalPlatform) -> None:
    run = uuid.uuid4().hex[:8]

    class Submitted(FeedbackSubmitted):
        topic = _topic_of(FeedbackSubmitted, run)

    handled: list[str] = []

    async def handler(event: Submitted) -> None:
        handled.append(event.request_id)

    bus.consume(Submitted, f"g-{run}", handler)
    await bus.start()
    event = _feedback("once")
    await publish_raw(broker.bootstrap_servers, Submitted.topic, [event.model_dump_json().encode()] * 2)
    await publish_raw(
        broker.bootstrap_servers, Submitted.topic, [_feedback("next").model_dump_json().encode()]
    )
    await eventually(lambda: handled == ["once", "next"])
    await asyncio.sleep(0.5)
    assert handled == ["once", "next"]


async def test_batch_consumer_isolates_a_poisoned_event(bus: EventBus, broker: LocalPlatform) -> None:
    run = uuid.uuid4().hex[:8]

    class Logged(InferenceLogged):
        topic = _topic_of(InferenceLogged, run)

    stored: list[str] = []

    async def store(events: list[Logged]) -> None:
        if any(e.request_id == "poison" for e in events):
            raise RuntimeError("row rejected by the store")
        stored.extend(e.request_id for e in events)

    bus.consume_batches(Logged, f"g-{run}", store, max_records=50, timeout_ms=300)
    await bus.start()

    def logged(rid: str) -> bytes:
        return (
            Logged(
                request_id=rid,
                model="m",
                prompt="p",
                completion="c",
                prompt_tokens=1,
                completion_tokens=1,
                latency_ms=1.0,
                time_to_first_token_ms=1.0,
            )
            .model_dump_json()
            .encode()
        )

    await publish_raw(
        broker.bootstrap_servers, Logged.topic, [logged("a"), logged("poison"), b"[]", logged("b")]
    )
    await eventually(lambda: sorted(stored) == ["a", "b"])
    dead = await read_topic(broker.bootstrap_servers, dlq(Logged.topic), 2)
    errors = sorted(dict(r.headers)[DLQ_ERROR] for r in dead)
    assert any(b"row rejected by the store" in e for e in errors)
    assert any(b"invalid" in e for e in errors)


async def test_idle_consumer_does_not_spin_on_a_broker_that_answers_empty_fetches_at_once(
    broker: LocalPlatform,
) -> None:
    """The local broker answers an empty fetch at once; paced, an idle consumer fetches ~10 times a
    second instead of hundreds (see llmops.core.kafka_fetch)."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.conn import AIOKafkaConnection

    from llmops.core.kafka_fetch import pace_empty_fetches

    topic = f"llmops.test.idle.{uuid.uuid4().hex[:8]}"
    await publish_raw(broker.bootstrap_servers, topic, [b"one"])

    async def fetches_while_idle(pause_ms: int) -> int:
        pace_empty_fetches(pause_ms)
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=broker.bootstrap_servers, group_id=None, auto_offset_reset="earliest"
        )
        await consumer.start()
        sent = 0
        original = AIOKafkaConnection.send

        def counting(self: AIOKafkaConnection, request: object, *args: object, **kwargs: object):  # noqa: ANN202
            nonlocal sent
            sent += type(request).__name__.startswith("FetchRequest")
            return original(self, request, *args, **kwargs)

        try:
            await consumer.getone()  # the one record; from here on every fetch comes back empty
            AIOKafkaConnection.send = counting  # type: ignore[method-assign]
            with pytest.raises(TimeoutError):  # waiting for a record that never comes
                await asyncio.wait_for(consumer.getone(), 2)
        finally:
            AIOKafkaConnection.send = original  # type: ignore[method-assign]
            await consumer.stop()
        return sent

    try:
        unpaced = await fetches_while_idle(0)
        paced = await fetches_while_idle(100)
    finally:
        pace_empty_fetches(KafkaSettings().idle_fetch_pause_ms)
    assert paced <= 25, paced  # 2 s / 100 ms, plus slack
    assert unpaced > 5 * paced, (unpaced, paced)


async def test_dead_letters_are_listed_with_their_reason_and_a_replay_after_the_fix_is_handled(
    bus: EventBus, broker: LocalPlatform
) -> None:
    run = uuid.uuid4().hex[:8]

    class Submitted(FeedbackSubmitted):
        topic = _topic_of(FeedbackSubmitted, run)

    fixed = False
    stored: list[str] = []

    async def handler(event: Submitted) -> None:
        if event.request_id == "needs-fix" and not fixed:
            raise InvalidArgument("comment has a character the store refuses")
        stored.append(event.request_id)

    bus.consume(Submitted, f"g-{run}", handler)
    await bus.start()
    await publish_raw(
        broker.bootstrap_servers,
        Submitted.topic,
        [b'{"request_id": "needs-fix", "thumb": "up"}', b'{"request_id": "fine", "thumb": "up"}'],
    )
    await eventually(lambda: stored == ["fine"])
    env = {**os.environ, "LLMOPS_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers, "COLUMNS": "250"}

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "llmops.cli", "dlq", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    listed = cli("list", Submitted.topic)
    assert "0:0" in listed and "comment has a character the store refuses" in listed
    assert "needs-fix" in cli("show", Submitted.topic, "0:0")
    fixed = True  # the fix is deployed
    assert "1 replayed" in cli("replay", Submitted.topic, "0:0")
    await eventually(lambda: stored == ["fine", "needs-fix"])


async def test_the_platform_makes_its_topics_with_a_retention_the_broker_honours(
    broker: LocalPlatform, tmp_path: Path
) -> None:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    run = uuid.uuid4().hex[:8]

    class Submitted(FeedbackSubmitted):
        topic = _topic_of(FeedbackSubmitted, run)

    settings = KafkaSettings(bootstrap_servers=broker.bootstrap_servers, topic_retention_mb=1)
    bus = EventBus(settings, "test")
    bus.publishes(Submitted)
    await bus.start()
    await bus.stop()
    # 3,000 messages of about 700 bytes: twice what the topic may keep.
    await publish_raw(
        broker.bootstrap_servers,
        Submitted.topic,
        [_feedback(f"r{i}-" + "x" * 600).model_dump_json().encode() for i in range(3000)],
    )
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap_servers, group_id=None)
    await consumer.start()
    try:
        tp = TopicPartition(Submitted.topic, 0)
        size = len(_feedback("r0-" + "x" * 600).model_dump_json())

        async def kept() -> tuple[int, int]:
            first = (await consumer.beginning_offsets([tp]))[tp]
            return first, (await consumer.end_offsets([tp]))[tp]

        async def within_bound() -> bool:
            first, end = await kept()
            return (end - first) * size <= 1.1 * 1024 * 1024

        # The broker applies retention on its own schedule: bounded wait.
        await eventually(within_bound, timeout=60)
        first, end = await kept()
    finally:
        await consumer.stop()
    kept_bytes = (end - first) * size
    print(f"kept {end - first} of {end} messages, about {kept_bytes / 1e6:.2f} MB (bound 1 MiB)")
    assert end == 3000 and kept_bytes <= 1.1 * 1024 * 1024
