"""The one Kafka broker factory: publishing events and consuming them safely.

Consumers get validated event models and may assume:
- at-least-once delivery, made idempotent on ``event_id`` (a :class:`HandledEvents` store, or a
  store that is itself safe against redelivery for batch consumers); a message published without the
  envelope (an app's short shape) gets an ``event_id`` derived from its content, so a redelivery or
  a repeated publish of the same bytes has the same id;
- an offset is committed only once its message was handled or is safely in ``<topic>.dlq``; a
  failed DLQ publish, or a cancellation at shutdown, commits nothing (the message comes again);
- a failing handler is retried with capped exponential backoff for ``retry_budget_seconds`` (long
  enough to ride out a store or broker restart), then dead-lettered; a message that fails its event
  model, or a handler's :class:`~llmops.core.errors.InvalidArgument`, goes to the DLQ at once. The
  dead letter keeps the original key and value, with headers that say what went wrong and where it
  came from; the consumer then goes on with the next message.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import ssl
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiokafka import ConsumerRecord, TopicPartition
from faststream import BaseMiddleware
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.middlewares import AckPolicy
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from pydantic import ValidationError

from llmops.contracts.events import Event
from llmops.contracts.topics import dlq
from llmops.core.handled_events import AlreadyHandled, HandledEvents, delivering
from llmops.core.kafka_fetch import pace_empty_fetches
from llmops.core.metrics import CONSUMER_LAG, EVENT_PROCESSING, EVENTS_CONSUMED, EVENTS_PUBLISHED
from llmops.core.outbox import stamp
from llmops.core.retry import RetriesExhausted, RetryPolicy, is_permanent, retry
from llmops.core.settings import KafkaSettings

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Event)

# Header names on dead-lettered messages (Kafka Connect uses the same idea).
DLQ_ERROR = "dlq.error"
DLQ_ERROR_TYPE = "dlq.error_type"
DLQ_TOPIC = "dlq.original_topic"
DLQ_PARTITION = "dlq.original_partition"
DLQ_OFFSET = "dlq.original_offset"
DLQ_GROUP = "dlq.consumer_group"
DLQ_ATTEMPTS = "dlq.attempts"
DLQ_FAILED_AT = "dlq.failed_at"

# Ids of events that came without the envelope: uuid5 of this namespace and the message's content.
_CONTENT_ID_NAMESPACE = uuid.UUID("3a7c55e2-6f0b-4d9e-8c1a-52b9e0f4d6a1")
# After a batch spent its budget on a failure that retrying could not fix, its events are tried once each.
_ONCE = RetryPolicy(budget_s=0)


def _security(settings: KafkaSettings) -> BaseSecurity | None:
    protocol = settings.security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = ssl.create_default_context() if protocol.endswith("SSL") else None
    if protocol == "SSL":
        return BaseSecurity(ssl_context=context)
    password = settings.sasl_password.get_secret_value() if settings.sasl_password else ""
    cls = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}[
        settings.sasl_mechanism or "PLAIN"
    ]
    return cls(username=settings.sasl_username or "", password=password, ssl_context=context)


def kafka_client_options(settings: KafkaSettings) -> dict[str, Any]:
    """Connection options for a plain aiokafka client (admin, DLQ tools), as the bus connects: the
    same security object, translated by FastStream's own mapping to aiokafka's keywords."""
    from faststream.kafka.security import parse_security

    return {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.security_protocol,
        **parse_security(_security(settings)),
    }


class EventBus:
    """A service's connection to Kafka: typed publishing and safe consuming."""

    def __init__(
        self,
        settings: KafkaSettings,
        service: str,
        processed: HandledEvents | None = None,
        *,
        replica: str | None = None,
    ) -> None:
        self.settings = settings
        self.service = service
        # Static membership (Kafka's group.instance.id): a replica that restarts, also after kill -9,
        # takes its partitions back at once instead of waiting for the group to give up on the old
        # member (with the development broker, without it, it never did).
        self._instance = f"llmops-{service}-{replica}" if replica else None
        self._policy = settings.retry_policy()
        # The record of handled events of single-event consumers (a service sets its store's, see
        # Runtime.deliver_with); None: the handlers are idempotent on their own.
        self.processed = processed
        pace_empty_fetches(settings.idle_fetch_pause_ms)
        self.broker = KafkaBroker(
            settings.bootstrap_servers,
            client_id=f"llmops-{service}",
            security=_security(settings),
            enable_idempotence=True,
            acks="all",
            graceful_timeout=settings.handler_grace_seconds,
            logger=logging.getLogger(f"llmops.{service}.kafka"),
        )

        # Topics whose subscriber takes the event model as its parameter, and their consumer group.
        # Per topic: the consumer group, the event model and what to do with a message that fails it.
        self._typed_groups: dict[str, tuple[str, type[Event], Callable[[Any], Awaitable[None]]]] = {}
        self._published: set[str] = set()
        bus = self

        class _DeadLetterInvalid(BaseMiddleware):
            # FastStream validates a message against its handler's event model before the handler
            # runs; one that fails is dead-lettered here, at once (retrying cannot help).
            async def consume_scope(self, call_next: Callable[..., Awaitable[Any]], msg: Any) -> Any:
                try:
                    return await call_next(msg)
                except (ValidationError, ValueError):
                    raw = msg.raw_message
                    records = list(raw) if isinstance(raw, (list, tuple)) else [raw]
                    typed = bus._typed_groups.get(getattr(records[0], "topic", "")) if records else None
                    # Only a message that really fails its event model is invalid; any other error
                    # (a bug on the way to the handler) must not dead-letter good messages.
                    if typed is None or all(_decodes(typed[1], r) for r in records):
                        raise
                    await typed[2](msg)
                    return None

        self.broker.add_middleware(_DeadLetterInvalid)

    async def start(self) -> None:
        try:
            if self.settings.create_topics:
                await self._create_topics()
            await self.broker.start()
        except Exception as exc:
            # A start that failed half way (producer up, a consumer not) closes what it opened.
            with contextlib.suppress(Exception):
                await self.broker.stop()
            raise ConnectionError(
                f"cannot reach Kafka at {self.settings.bootstrap_servers} ({exc}); is the broker running "
                "(`make up` starts one) and is LLMOPS_KAFKA_BOOTSTRAP_SERVERS right?"
            ) from exc

    async def _create_topics(self) -> None:
        """Create the topics this service publishes or consumes (and their DLQs) that do not exist
        yet, with the platform's retention: by time and by size, so a long-running broker keeps a
        bounded amount (the development broker holds everything it keeps in memory)."""
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic
        from aiokafka.errors import TopicAlreadyExistsError

        s = self.settings
        wanted = {t: s.topic_retention_hours for t in self._published | set(self._typed_groups)}
        wanted.update({dlq(t): s.dlq_retention_hours for t in self._typed_groups})
        admin = AIOKafkaAdminClient(**kafka_client_options(s))
        await admin.start()
        try:
            missing = sorted(set(wanted) - set(await admin.list_topics()))
            for name in missing:
                configs = {"retention.ms": str(int(wanted[name] * 3_600_000))}
                if s.topic_retention_mb > 0:
                    size = s.topic_retention_mb * 1024 * 1024
                    # Brokers delete whole segments: several per bound, so the bound is kept closely.
                    configs.update({"retention.bytes": str(size), "segment.bytes": str(size // 8)})
                topic = NewTopic(name, s.topic_partitions, s.topic_replication_factor, topic_configs=configs)
                with contextlib.suppress(TopicAlreadyExistsError):  # another service made it meanwhile
                    await admin.create_topics([topic])
        finally:
            await admin.close()

    async def stop(self) -> None:
        # aiokafka's producer waits for unsent messages at close; with the broker away that wait has
        # no end, and a service could not stop. Past the bound, close without them (a caller that
        # must not lose an event keeps it itself: the outbox, serving's publish buffer).
        try:
            await asyncio.wait_for(self.broker.stop(), self.settings.close_timeout_seconds)
        except TimeoutError:
            log.warning(
                "Kafka at %s did not close within %.0fs (is the broker away?); closed without flushing",
                self.settings.bootstrap_servers,
                self.settings.close_timeout_seconds,
            )

    def publishes(self, *event_types: type[Event]) -> None:
        """Declare the events this service publishes (for the AsyncAPI document; no I/O)."""
        for event_type in event_types:
            if event_type.topic in self._published:
                continue
            self._published.add(event_type.topic)
            self.broker.publisher(
                event_type.topic,
                schema=event_type,
                title=f"{self.service}:{event_type.topic}",
                description=(event_type.__doc__ or event_type.__name__).strip().splitlines()[0],
            )

    def stamp(self, event: E) -> E:
        """``event`` with this service as its producer and, where unset, the current request as trace."""
        return stamp(event, self.service)  # type: ignore[return-value]

    async def publish(self, event: Event) -> None:
        """Publish ``event`` to its topic, keyed by its entity id; waits for the broker's ack.

        The bus stamps ``producer`` and ``trace_id`` (see :meth:`stamp`); callers leave them unset.
        """
        event = self.stamp(event)
        await self.broker.publish(
            event.model_dump_json().encode(),
            topic=event.topic,
            key=event.kafka_key(),
            headers={"content-type": "application/json", "event-type": type(event).__name__},
        )
        EVENTS_PUBLISHED.labels(self.service, event.topic).inc()

    # --- consuming ---------------------------------------------------------------------------------

    def consume(
        self,
        event_type: type[E],
        group_id: str,
        handler: Callable[[E], Awaitable[None]],
    ) -> None:
        """Call ``handler`` for each event on ``event_type.topic``, one at a time, in order."""
        topic = event_type.topic
        bus = self

        async def _on_event(event: Any, msg: KafkaMessage) -> None:
            record: ConsumerRecord = msg.raw_message  # type: ignore[assignment]
            bus._observe_lag(msg, [record], group_id)
            started = time.perf_counter()
            await bus._handle_parsed(event, group_id, record, handler, processed=bus.processed)
            EVENT_PROCESSING.labels(bus.service, topic).observe(time.perf_counter() - started)

        # The event model is the handler's parameter: FastStream validates with it and documents it.
        _on_event.__annotations__ = {"event": event_type, "msg": KafkaMessage, "return": None}
        self.broker.subscriber(
            topic,
            group_id=group_id,
            auto_offset_reset="earliest",
            # Committed after the handler returned (handled or dead-lettered); an error or a
            # cancellation commits nothing, so the message is read again.
            ack_policy=AckPolicy.NACK_ON_ERROR,
            decoder=_decoder(event_type, batch=False),
            group_instance_id=self._instance,
            title=f"{group_id}:{topic}",
        )(_on_event)

        async def _dead_letter_invalid(msg: KafkaMessage) -> None:
            record: ConsumerRecord = msg.raw_message  # type: ignore[assignment]
            await bus._dead_letter(record, group_id, _reason(record, event_type), attempts=1)

        self._typed_groups[topic] = (group_id, event_type, _dead_letter_invalid)

    def consume_batches(
        self,
        event_type: type[E],
        group_id: str,
        handler: Callable[[list[E]], Awaitable[None]],
        *,
        max_records: int = 500,
        timeout_ms: int = 500,
    ) -> None:
        """Call ``handler`` with up to ``max_records`` events at a time (for bulk writes).

        The handler must be safe against redelivery (the store dedups on its own key), since a batch is
        only committed after it returns. A failing batch is retried as a whole (a store that is away
        for a while loses nothing); one that fails in a way retrying cannot fix, or past the budget,
        is tried one event at a time, so that only the poisoned ones go to the dead-letter topic.
        """
        topic = event_type.topic
        bus = self

        async def _on_batch(events: list[Any], msg: KafkaMessage) -> None:
            records: Sequence[ConsumerRecord] = msg.raw_message  # type: ignore[assignment]
            await bus._handle_batch(msg, group_id, list(zip(events, records, strict=True)), handler)

        async def _on_invalid(msg: KafkaMessage) -> None:
            records: Sequence[ConsumerRecord] = msg.raw_message  # type: ignore[assignment]
            # One bad message fails the typed batch: parse one by one, dead-letter the bad ones only.
            pairs = []
            for record in records:
                event = await bus._parse_or_dead_letter(event_type, group_id, record)
                if event is not None:
                    pairs.append((event, record))
            await bus._handle_batch(msg, group_id, pairs, handler)

        _on_batch.__annotations__ = {"events": list[event_type], "msg": KafkaMessage, "return": None}
        self.broker.subscriber(
            topic,
            group_id=group_id,
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.NACK_ON_ERROR,
            decoder=_decoder(event_type, batch=True),
            group_instance_id=self._instance,
            batch=True,
            max_records=max_records,
            batch_timeout_ms=timeout_ms,
            title=f"{group_id}:{topic}",
        )(_on_batch)
        self._typed_groups[topic] = (group_id, event_type, _on_invalid)

    async def _handle_batch(
        self,
        msg: KafkaMessage,
        group_id: str,
        pairs: list[tuple[E, ConsumerRecord]],
        handler: Callable[[list[E]], Awaitable[None]],
    ) -> None:
        records: Sequence[ConsumerRecord] = msg.raw_message  # type: ignore[assignment]
        if not records:
            return
        topic = records[0].topic
        self._observe_lag(msg, records, group_id)
        started = time.perf_counter()
        events: list[E] = []
        kept: list[ConsumerRecord] = []
        seen_ids: set[Any] = set()
        duplicates = 0
        for event, record in pairs:
            if event.event_id in seen_ids:
                duplicates += 1
                continue
            seen_ids.add(event.event_id)
            events.append(event)
            kept.append(record)
        if duplicates:
            EVENTS_CONSUMED.labels(self.service, topic, "duplicate").inc(duplicates)
        if events:
            try:
                await retry(lambda: handler(events), self._policy, f"batch of {len(events)} from {topic}")
                EVENTS_CONSUMED.labels(self.service, topic, "processed").inc(len(events))
            except Exception as exc:
                # Permanent: find the bad events with a full budget each. Exhausted: the budget is
                # spent; one try each, and what fails goes to the DLQ, so the partition moves on.
                policy = self._policy if is_permanent(exc) else _ONCE
                log.warning("batch of %d from %s failed (%s); one by one", len(events), topic, exc)
                for event, record in zip(events, kept, strict=True):
                    await self._handle_parsed(event, group_id, record, lambda e: handler([e]), policy)
        EVENT_PROCESSING.labels(self.service, topic).observe(time.perf_counter() - started)

    async def _handle_parsed(
        self,
        event: E,
        group_id: str,
        record: ConsumerRecord,
        handler: Callable[[E], Awaitable[None]],
        policy: RetryPolicy | None = None,
        *,
        processed: HandledEvents | None = None,
    ) -> None:
        """Run ``handler`` on ``event`` (retried within ``policy``), or dead-letter it. With a record of
        handled events, a redelivered event is skipped and a handled one is recorded."""
        event_id = str(event.event_id)
        if processed is not None and await retry(
            lambda: asyncio.to_thread(processed.seen, group_id, event_id),
            self._policy,
            f"looking up event {event_id}",
        ):
            self._skip_duplicate(event, record)
            return
        with delivering(group_id, event_id) as delivery:

            async def attempt() -> bool:
                try:
                    await handler(event)
                except AlreadyHandled:
                    # Another replica (or an earlier delivery) committed it first; this one changed nothing.
                    return False
                return True

            try:
                fresh = await retry(attempt, policy or self._policy, f"event {event_id}")
            except RetriesExhausted as exc:
                assert exc.__cause__ is not None
                await self._dead_letter(record, group_id, exc.__cause__, exc.attempts)
                return
            except Exception as exc:  # permanent: retrying cannot help
                await self._dead_letter(record, group_id, exc, attempts=1)
                return
        if not fresh:
            self._skip_duplicate(event, record)
            return
        if processed is not None and not delivery.marked:
            # The handler's own transaction did not mark it: mark it now, before the offset is committed.
            await retry(
                lambda: asyncio.to_thread(processed.mark, group_id, event_id),
                self._policy,
                f"recording event {event_id} as handled",
            )
        EVENTS_CONSUMED.labels(self.service, record.topic, "processed").inc()

    def _skip_duplicate(self, event: Event, record: ConsumerRecord) -> None:
        EVENTS_CONSUMED.labels(self.service, record.topic, "duplicate").inc()
        log.info("skipping redelivered event %s on %s", event.event_id, record.topic)

    async def _parse_or_dead_letter(
        self, event_type: type[E], group_id: str, record: ConsumerRecord
    ) -> E | None:
        try:
            return parse_record(event_type, record)
        except (ValidationError, ValueError) as exc:
            # Validation is deterministic: retrying cannot help, so dead-letter at once.
            await self._dead_letter(record, group_id, exc, attempts=1)
            return None

    async def _dead_letter(
        self, record: ConsumerRecord, group_id: str, exc: BaseException, attempts: int
    ) -> None:
        error = _describe(exc)
        headers = {
            DLQ_ERROR: error[:4000],
            DLQ_ERROR_TYPE: type(exc).__name__,
            DLQ_TOPIC: record.topic,
            DLQ_PARTITION: str(record.partition),
            DLQ_OFFSET: str(record.offset),
            DLQ_GROUP: group_id,
            DLQ_ATTEMPTS: str(attempts),
            DLQ_FAILED_AT: datetime.now(UTC).isoformat(),
        }
        # A DLQ that cannot be reached within the budget raises: the message is not committed and is
        # read again (and handled again, idempotently) once the broker is back.
        await retry(
            lambda: self.broker.publish(
                record.value or b"", topic=dlq(record.topic), key=record.key, headers=headers
            ),
            self._policy,
            f"dead-lettering {record.topic}[{record.partition}]@{record.offset}",
        )
        EVENTS_CONSUMED.labels(self.service, record.topic, "dead_lettered").inc()
        log.error(
            "message %s[%d]@%d sent to %s: %s",
            record.topic,
            record.partition,
            record.offset,
            dlq(record.topic),
            error,
        )

    def _observe_lag(self, msg: KafkaMessage, records: Sequence[ConsumerRecord], group_id: str) -> None:
        consumer: Any = getattr(msg, "consumer", None)
        if consumer is None or not hasattr(consumer, "highwater"):
            return
        last: dict[tuple[str, int], int] = {}
        for r in records:
            last[(r.topic, r.partition)] = max(r.offset, last.get((r.topic, r.partition), -1))
        for (topic, partition), offset in last.items():
            highwater = consumer.highwater(TopicPartition(topic, partition))
            if highwater is not None:
                lag = max(highwater - offset - 1, 0)
                CONSUMER_LAG.labels(self.service, topic, str(partition), group_id).set(lag)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        parts = [f"{'.'.join(map(str, e['loc'])) or '<message>'}: {e['msg']}" for e in exc.errors()]
        return f"invalid {exc.title}: " + "; ".join(parts)
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


def _decodes(event_type: type[Event], record: ConsumerRecord) -> bool:
    try:
        parse_record(event_type, record)
    except (ValidationError, ValueError):
        return False
    return True


def _reason(record: ConsumerRecord, event_type: type[Event]) -> BaseException:
    """The error to record for an invalid message: the event model's own, on the raw bytes."""
    try:
        parse_record(event_type, record)
    except (ValidationError, ValueError) as precise:
        return precise
    return ValueError("message does not decode as the event")


def event_body(value: bytes | None) -> Any:
    """A message's JSON; an object without ``event_id`` (an app's short shape) gets one derived from
    its content, so the same message read twice, or published twice, is one event."""
    if value is None:
        raise ValueError("message has no value (tombstone)")
    try:
        body = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"Invalid JSON: {exc}") from None
    if isinstance(body, dict) and "event_id" not in body:
        body["event_id"] = str(uuid.uuid5(_CONTENT_ID_NAMESPACE, hashlib.sha256(value).hexdigest()))
    return body


def parse_value(event_type: type[E], value: bytes | None) -> E:
    """The event in a message's ``value`` (ValueError or ValidationError when it is not one)."""
    # Fast path: a message with the envelope is parsed and validated in one step (pydantic's JSON
    # parser); the slow one gives an envelope-less message its content-derived id.
    if value is not None and b'"event_id"' in value:
        try:
            event = event_type.model_validate_json(value)
        except ValidationError:
            pass  # not valid JSON of the event: the slow path below says why precisely
        else:
            if "event_id" in event.model_fields_set:  # not only a nested key of that name
                return event
    return event_type.model_validate(event_body(value))


def parse_record(event_type: type[E], record: ConsumerRecord) -> E:
    """The event in ``record`` (ValueError or ValidationError when it is not one)."""
    return parse_value(event_type, record.value)


def _decoder(event_type: type[Event], *, batch: bool) -> Callable[..., Any]:
    """The FastStream decoder of a subscriber: its message (or batch of them) into validated events."""

    async def one(msg: KafkaMessage, original: Any) -> Any:
        return parse_value(event_type, msg.raw_message.value)  # type: ignore[union-attr]

    async def many(msg: KafkaMessage, original: Any) -> Any:
        return [parse_value(event_type, r.value) for r in msg.raw_message]  # type: ignore[union-attr]

    return many if batch else one
