"""Publishing inference.logged for every completed generation (and every request that failed on the
server side), without making the caller wait.

Events go through a :class:`~llmops.core.publish_buffer.PublishBuffer`: while the broker is away they
wait (in memory, then in a spool file under the data folder, kept across a restart) and are published
when it is back; past the buffer's bound a metric and a log line count what was dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from llmops.contracts.events import InferenceLogged
from llmops.core.messaging import EventBus
from llmops.core.publish_buffer import PublishBuffer
from llmops.serving.engine import GenerationParams


class InferenceLogWriter:
    """Queues each answer's log at once; the runtime enters :attr:`buffer`, which publishes them."""

    def __init__(
        self,
        bus: EventBus,
        spool: Path,
        *,
        memory_limit: int,
        spool_limit_bytes: int,
        redact: Callable[[str], str],
    ) -> None:
        self._bus = bus
        self._redact = redact
        self.buffer = PublishBuffer(
            bus.publish,
            InferenceLogged,
            spool,
            bus.service,
            memory_limit=memory_limit,
            spool_limit_bytes=spool_limit_bytes,
        )

    def record(
        self, *, params: GenerationParams | None, prompt: str, completion: str, **fields: object
    ) -> None:
        """Queue one request's log; ``params`` None for a request that failed before it had them."""
        event = InferenceLogged(
            # What the user typed and what the model said back, without personal data: the log
            # leaves this process (Kafka, ClickHouse, labeling's queue).
            prompt=self._redact(prompt),
            completion=self._redact(completion),
            temperature=params.temperature if params else None,
            top_p=params.top_p if params else None,
            max_tokens=params.max_tokens if params else None,
            **fields,  # type: ignore[arg-type]
        )
        # Stamped now, in the caller's context, so the trace id is the caller's request id.
        self.buffer.put(self._bus.stamp(event))

    async def drain(self, timeout: float = 10) -> None:
        await self.buffer.flush(timeout)
