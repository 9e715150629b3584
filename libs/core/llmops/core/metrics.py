"""Prometheus metrics every service exposes on its metrics port (``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

GRPC_REQUESTS = Counter("llmops_grpc_requests_total", "gRPC calls handled.", ["service", "method", "code"])
GRPC_LATENCY = Histogram(
    "llmops_grpc_request_seconds",
    "gRPC call duration (for streams: until the last message).",
    ["service", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
EVENTS_CONSUMED = Counter(
    "llmops_events_consumed_total",
    "Kafka messages consumed, by outcome (processed, duplicate, dead_lettered).",
    ["service", "topic", "outcome"],
)
EVENTS_PUBLISHED = Counter("llmops_events_published_total", "Events published.", ["service", "topic"])
EVENT_PROCESSING = Histogram(
    "llmops_event_processing_seconds", "Time to process one message or batch.", ["service", "topic"]
)
OUTBOX_PENDING = Gauge(
    "llmops_outbox_pending_events",
    "Events stored in the service's outbox and not yet published (they wait while Kafka is away).",
    ["service"],
)
OUTBOX_RELAYED = Counter("llmops_outbox_relayed_total", "Events the outbox relay published.", ["service"])
CONSUMER_LAG = Gauge(
    "llmops_consumer_lag_messages",
    "Messages behind the partition's high watermark, as of the last fetch.",
    ["service", "topic", "partition", "group"],
)

IN_FLIGHT = Gauge("llmops_in_flight", "Work in flight under an admission limit.", ["service", "what"])
REFUSED = Counter(
    "llmops_refused_total",
    "Work refused at once because its admission limit was reached.",
    ["service", "what"],
)


def serve_metrics(host: str, port: int) -> None:
    """Start the ``/metrics`` HTTP endpoint in a background thread (port 0 leaves it off)."""
    if port:
        start_http_server(port, addr=host)
