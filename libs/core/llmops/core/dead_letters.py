"""Dead letters: what went to ``<topic>.dlq``, why, and putting chosen ones back after a fix.

The bus dead-letters a message with its key and value unchanged and headers that say where it came
from and what went wrong (:mod:`llmops.core.messaging`). Replaying publishes the same key and value
to the original topic, with a header naming the dead letter it came from; consumers then handle it
as any other message (a message with the envelope keeps its ``event_id``, one without gets the same
content-derived id, so a replay that was already handled is skipped).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from llmops.contracts.topics import dlq
from llmops.core.errors import InvalidArgument, NotFound
from llmops.core.messaging import (
    DLQ_ATTEMPTS,
    DLQ_ERROR,
    DLQ_ERROR_TYPE,
    DLQ_FAILED_AT,
    DLQ_GROUP,
    DLQ_OFFSET,
    DLQ_PARTITION,
    DLQ_TOPIC,
    kafka_client_options,
)
from llmops.core.settings import KafkaSettings

REPLAYED_FROM = "dlq.replayed_from"
DLQ_SUFFIX = ".dlq"


@dataclass(frozen=True)
class DeadLetter:
    """One message in a dead-letter topic; ``position`` (``partition:offset``) names it there."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    error: str
    error_type: str
    original_topic: str
    original_partition: int
    original_offset: int
    consumer_group: str
    attempts: int
    failed_at: dt.datetime | None

    @property
    def position(self) -> str:
        return f"{self.partition}:{self.offset}"


def dead_letter_topic(topic: str) -> str:
    """The DLQ of ``topic`` (given as the topic or as its DLQ)."""
    if not topic.strip():
        raise InvalidArgument("a topic is required (for example llmops.feedback.submitted.v1)")
    return topic if topic.endswith(DLQ_SUFFIX) else dlq(topic)


def parse_position(text: str) -> tuple[int, int]:
    """``partition:offset`` (or a bare offset, in partition 0) as numbers."""
    partition, _, offset = text.rpartition(":")
    try:
        return int(partition or 0), int(offset)
    except ValueError:
        raise InvalidArgument(
            f"{text!r} is not a dead letter's position (partition:offset, e.g. 0:12)"
        ) from None


def _of(record: ConsumerRecord) -> DeadLetter:
    headers = {k: v.decode(errors="replace") for k, v in (record.headers or ())}
    failed_at = headers.get(DLQ_FAILED_AT)
    return DeadLetter(
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        error=headers.get(DLQ_ERROR, ""),
        error_type=headers.get(DLQ_ERROR_TYPE, ""),
        original_topic=headers.get(DLQ_TOPIC, ""),
        original_partition=int(headers.get(DLQ_PARTITION, "-1")),
        original_offset=int(headers.get(DLQ_OFFSET, "-1")),
        consumer_group=headers.get(DLQ_GROUP, ""),
        attempts=int(headers.get(DLQ_ATTEMPTS, "0")),
        failed_at=dt.datetime.fromisoformat(failed_at) if failed_at else None,
    )


async def list_dead_letters(settings: KafkaSettings, topic: str) -> list[DeadLetter]:
    """Every message now in ``topic``'s DLQ, oldest first per partition (reads; commits nothing)."""
    name = dead_letter_topic(topic)
    consumer = AIOKafkaConsumer(group_id=None, enable_auto_commit=False, **kafka_client_options(settings))
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(name)
        if partitions is None:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(name)
        if not partitions:
            return []
        assigned = [TopicPartition(name, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        ends = await consumer.end_offsets(assigned)
        await consumer.seek_to_beginning(*assigned)
        letters: list[DeadLetter] = []
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            batch = await consumer.getmany(*assigned, timeout_ms=1000)
            for records in batch.values():
                letters.extend(
                    _of(r) for r in records if r.offset < ends[TopicPartition(r.topic, r.partition)]
                )
        return sorted(letters, key=lambda d: (d.partition, d.offset))
    finally:
        await consumer.stop()


async def replay(settings: KafkaSettings, topic: str, positions: Iterable[str] | None) -> list[DeadLetter]:
    """Publish the chosen dead letters (``positions``; None: all) back to their original topic."""
    letters = await list_dead_letters(settings, topic)
    if positions is not None:
        wanted = {parse_position(p) for p in positions}
        found = {(d.partition, d.offset): d for d in letters}
        missing = sorted(wanted - set(found))
        if missing:
            shown = ", ".join(f"{p}:{o}" for p, o in missing)
            raise NotFound(f"no dead letter at {shown} in {dead_letter_topic(topic)}")
        letters = [found[w] for w in sorted(wanted)]
    producer = AIOKafkaProducer(enable_idempotence=True, acks="all", **kafka_client_options(settings))
    await producer.start()
    try:
        for letter in letters:
            if not letter.original_topic:
                raise InvalidArgument(f"dead letter {letter.position} does not name its original topic")
            await producer.send_and_wait(
                letter.original_topic,
                letter.value,
                key=letter.key,
                headers=[(REPLAYED_FROM, f"{dead_letter_topic(topic)}:{letter.position}".encode())],
            )
    finally:
        await producer.stop()
    return letters
