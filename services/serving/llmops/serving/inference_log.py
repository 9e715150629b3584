"""Publishing inference.logged for every completed generation, without making the caller wait."""

from __future__ import annotations

import asyncio
import logging

from llmops.contracts.events import InferenceLogged
from llmops.core.messaging import EventBus
from llmops.serving.engine import GenerationParams

log = logging.getLogger(__name__)


class InferenceLogWriter:
    """Publishes in the background; ``drain()`` at shutdown waits for what is still in flight."""

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self._pending: set[asyncio.Task[None]] = set()

    def record(self, *, params: GenerationParams, **fields: object) -> None:
        event = InferenceLogged(
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_tokens,
            **fields,  # type: ignore[arg-type]
        )
        # The task copies this call's context, so the bus stamps the caller's request id as trace_id.
        task = asyncio.get_running_loop().create_task(self._publish(event))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _publish(self, event: InferenceLogged) -> None:
        try:
            await self._bus.publish(event)
        except Exception:
            # The caller already has the answer; a lost log line is reported, not raised.
            log.exception("could not publish inference.logged for request %s", event.request_id)

    async def drain(self, timeout: float = 10) -> None:
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=timeout)
