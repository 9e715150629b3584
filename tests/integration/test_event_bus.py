"""EventBus against the real local Kafka broker: delivery, dedup, retries and the dead-letter topic."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from llmops.cli.local import LocalPlatform
from llmops.contracts.events import FeedbackSubmitted, InferenceLogged
from llmops.contracts.topics import dlq
from llmops.core.handled_events import HandledEvents
from llmops.core.messaging import DLQ_ERROR, DLQ_OFFSET, DLQ_TOPIC, EventBus
from llmops.core.settings import KafkaSettings
from llmops.testing.platform import eventually, make_platform, publish_raw, read_topic

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    platform = make_platform(tmp_path_factory.mktemp("bus"))
    platform.start_broker()
    yield platform
    platform.down()


@pytest.fixture
async def bus(broker: LocalPlatform, tmp_path: Path) -> AsyncIterator[EventBus]:
    settings = KafkaSettings(bootstrap_servers=broker.bootstrap_servers, max_attempts=3, retry_backoff_ms=10)
    bus = EventBus(settings, "test", HandledEvents(tmp_path / "processed.sqlite"))
    yield bus
    await bus.stop()


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
    assert attempts["poison"] == 3
    dead = await read_topic(broker.bootstrap_servers, dlq(Submitted.topic), 1)
    assert b"store is refusing this one" in dict(dead[0].headers)[DLQ_ERROR]


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
