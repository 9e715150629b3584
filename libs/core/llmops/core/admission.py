"""Backpressure: a bound on work in flight that refuses at once instead of queueing without limit.

A server that queues every request it cannot start turns overload into unbounded latency for
everyone; refusing the excess at once (RESOURCE_EXHAUSTED over gRPC, 429 with Retry-After over HTTP)
lets callers back off or go to another replica, as load balancers expect.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from llmops.core.errors import ResourceExhausted
from llmops.core.metrics import IN_FLIGHT, REFUSED


class InFlightLimit:
    """At most ``limit`` holders at once; one more is refused with :class:`ResourceExhausted`."""

    def __init__(self, service: str, what: str, limit: int, *, retry_after_seconds: float = 1.0) -> None:
        if limit < 1:
            raise ValueError(f"the limit of {what} in flight must be at least 1, got {limit}")
        self._service = service
        self._what = what
        self.limit = limit
        self._retry_after = retry_after_seconds
        self._held = 0

    @property
    def in_flight(self) -> int:
        return self._held

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one slot for the block (event-loop code: the check and the count are not interleaved)."""
        if self._held >= self.limit:
            REFUSED.labels(self._service, self._what).inc()
            raise ResourceExhausted(
                f"{self._service} has {self._held} {self._what} in flight, its limit; retry shortly",
                retry_after_seconds=self._retry_after,
            )
        self._held += 1
        IN_FLIGHT.labels(self._service, self._what).set(self._held)
        try:
            yield
        finally:
            self._held -= 1
            IN_FLIGHT.labels(self._service, self._what).set(self._held)
