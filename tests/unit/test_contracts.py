from __future__ import annotations

import json
import re
import uuid

import pytest
from pydantic import ValidationError

from llmops.cli.asyncapi import build
from llmops.contracts import topics
from llmops.contracts.events import ALL_EVENTS, EVENT_BY_TOPIC, FeedbackAccepted, InferenceLogged


def test_every_topic_has_exactly_one_event_and_follows_the_naming_rule() -> None:
    names = {v for k, v in vars(topics).items() if k.isupper() and k != "DLQ_SUFFIX"}
    assert names == set(EVENT_BY_TOPIC)
    assert len(EVENT_BY_TOPIC) == len(ALL_EVENTS)
    for name in names:
        assert re.fullmatch(r"llmops\.[a-z]+\.[a-z_]+\.v\d+", name), name
    assert topics.dlq(topics.FEEDBACK_SUBMITTED) == "llmops.feedback.submitted.v1.dlq"


def test_envelope_defaults_key_and_immutability() -> None:
    event = InferenceLogged(
        request_id="r-1",
        model="m",
        prompt="p",
        completion="c",
        prompt_tokens=3,
        completion_tokens=4,
        latency_ms=10,
        time_to_first_token_ms=2,
    )
    assert isinstance(event.event_id, uuid.UUID) and event.occurred_at.tzinfo is not None
    assert event.schema_version == 1 and event.kafka_key() == b"r-1"
    with pytest.raises(ValidationError):
        event.request_id = "other"  # type: ignore[misc]
    again = InferenceLogged.model_validate_json(event.model_dump_json())
    assert again == event


def test_events_reject_bad_values_with_the_field_name() -> None:
    with pytest.raises(ValidationError, match="score"):
        FeedbackAccepted(feedback_id="f", request_id="r", score=1.5)
    with pytest.raises(ValidationError, match="prompt_tokens"):
        InferenceLogged(
            request_id="r",
            model="m",
            prompt="",
            completion="",
            prompt_tokens=-1,
            completion_tokens=0,
            latency_ms=0,
            time_to_first_token_ms=0,
        )


def test_asyncapi_comes_from_what_the_services_subscribe_and_publish() -> None:
    doc = build()
    assert doc["asyncapi"] == "3.0.0"
    channels = doc["channels"]
    # The event model is the handler's parameter: the consumer's channel carries its schema.
    assert (
        channels["llmops-monitoring.inference:llmops.inference.logged.v1"]["address"] == InferenceLogged.topic
    )
    schema = doc["components"]["schemas"]["InferenceLogged"]
    assert {"request_id", "prompt_tokens", "event_id"} <= set(schema["properties"])
    # Every service's declared publications, named by the service.
    published = {name.split(":", 1)[0]: set() for name in channels}
    for name, channel in channels.items():
        published[name.split(":", 1)[0]].add(channel["address"])
    assert topics.INFERENCE_LOGGED in published["serving"]
    assert {topics.FEEDBACK_ACCEPTED, topics.FEEDBACK_REJECTED} <= published["feedback"]
    assert {topics.TRAINING_COMPLETED, topics.TRAINING_FAILED, topics.TRAINING_PROGRESS} <= published[
        "training"
    ]
    assert {topics.DOCUMENTS_CLEANED, topics.INGESTION_BATCH_COMPLETED} <= published["ingestion"]
    assert {topics.MODELS_VERSION_REGISTERED, topics.MODELS_ALIAS_CHANGED} <= published["registry"]
    assert topics.DATASETS_VERSION_CREATED in published["labeling"]
    # Every topic someone consumes is documented.
    addresses = {c["address"] for c in channels.values()}
    assert {topics.DOCUMENTS_RAW, topics.FEEDBACK_SUBMITTED, topics.TRAINING_REQUESTED} <= addresses
    assert addresses <= set(EVENT_BY_TOPIC)
    json.dumps(doc)


def test_an_event_that_follows_another_keeps_its_trace_and_payload_but_not_its_identity() -> None:
    from llmops.contracts.events import FeedbackAccepted, FeedbackSubmitted

    submitted = FeedbackSubmitted(
        request_id="r-1", thumb="up", comment="good", user_id="u-7", trace_id="t-42", producer="app"
    )
    accepted = FeedbackAccepted.following(submitted, feedback_id="f-1", score=1.0)
    assert (accepted.request_id, accepted.thumb, accepted.comment, accepted.user_id) == (
        "r-1",
        "up",
        "good",
        "u-7",
    )
    assert (accepted.feedback_id, accepted.score, accepted.trace_id) == ("f-1", 1.0, "t-42")
    assert accepted.event_id != submitted.event_id and accepted.producer == ""
    # A field given wins over the cause's.
    assert FeedbackAccepted.following(submitted, feedback_id="f", score=0.5, comment="").comment == ""
