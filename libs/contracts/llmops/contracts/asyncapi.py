"""The AsyncAPI 3.0 document of every topic, built from the event models (``make asyncapi``)."""

from __future__ import annotations

import json
from typing import Any

from pydantic.json_schema import models_json_schema

from llmops.contracts.events import ALL_EVENTS
from llmops.contracts.topics import dlq

# Which service produces and which consume each topic (the architecture's table).
PRODUCERS: dict[str, str] = {
    "DocumentRaw": "apps",
    "DocumentCleaned": "ingestion",
    "IngestionBatchCompleted": "ingestion",
    "LabelCreated": "labeling",
    "DatasetVersionCreated": "labeling",
    "TrainingRequested": "monitoring (loop policy), apps",
    "TrainingProgress": "training",
    "TrainingCompleted": "training",
    "TrainingFailed": "training",
    "ModelVersionRegistered": "registry",
    "ModelAliasChanged": "registry",
    "InferenceLogged": "serving",
    "RetrievalLogged": "retrieval",
    "FeedbackSubmitted": "apps",
    "FeedbackAccepted": "feedback",
    "FeedbackRejected": "feedback",
    "DriftDetected": "monitoring",
    "AlertRaised": "monitoring",
}


def build() -> dict[str, Any]:
    _, schemas = models_json_schema(
        [(e, "serialization") for e in ALL_EVENTS], ref_template="#/components/schemas/{model}"
    )
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for event in ALL_EVENTS:
        name = event.__name__
        messages[name] = {
            "name": name,
            "title": name,
            "summary": (event.__doc__ or name).strip().splitlines()[0],
            "contentType": "application/json",
            "payload": {"$ref": f"#/components/schemas/{name}"},
            "bindings": {
                "kafka": {"key": {"type": "string", "description": f"the event's {event.key_field}"}}
            },
        }
        channels[name] = {
            "address": event.topic,
            "description": f"Produced by {PRODUCERS.get(name, '?')}. Dead letters go to {dlq(event.topic)}.",
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
        }
        operations[f"publish{name}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{name}"},
            "messages": [{"$ref": f"#/channels/{name}/messages/{name}"}],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "LLMOps platform events",
            "version": "1",
            "description": "Every Kafka topic of the platform. Each event carries the envelope "
            "(event_id, occurred_at, schema_version, trace_id, producer); consumers dedup on event_id.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas.get("$defs", {})},
    }


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"
