"""Publishing inference.logged for every completed generation (and every request that failed on the
server side), without making the caller wait.

Events go through a :class:`~llmops.core.publish_buffer.PublishBuffer`: while the broker is away they
wait (in memory, then in a spool file under the data folder, kept across a restart) and are published
when it is back; past the buffer's bound a metric and a log line count what was dropped.

The prompt and the completion are redacted for personal data before the event enters the buffer
(so neither Kafka nor the spool file sees them), on a thread of its own: redaction costs about 1 ms
per KB of text (34 ms for a 32 KB prompt with retrieved documents), which the caller's last chunk
would otherwise wait for. One thread, so events reach the buffer in the order they were recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from llmops.contracts.events import InferenceLogged
from llmops.core.messaging import EventBus
from llmops.core.publish_buffer import PublishBuffer
from llmops.serving.engine import GenerationParams

log = logging.getLogger(__name__)


class InferenceLogWriter:
    """Queues each answer's log at once (an async context manager: entering it starts publishing;
    leaving it waits for the redactions under way, then closes the buffer, spooling what is left)."""

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
        self._redactor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="log-redact")
        self._redacting = 0  # recorded events not yet in the buffer
        self._all_queued = asyncio.Event()
        self._all_queued.set()

    async def __aenter__(self) -> InferenceLogWriter:
        await self.buffer.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        # Every recorded event reaches the buffer (redaction is bounded work), then the buffer closes.
        await asyncio.to_thread(self._redactor.shutdown, wait=True)
        await asyncio.sleep(0)  # the last hand-overs were scheduled on this loop: let them run
        await self.buffer.close()

    def record(
        self, *, params: GenerationParams | None, prompt: str, completion: str, **fields: object
    ) -> None:
        """Queue one request's log; ``params`` None for a request that failed before it had them."""
        event = InferenceLogged(
            prompt=prompt,
            completion=completion,
            temperature=params.temperature if params else None,
            top_p=params.top_p if params else None,
            max_tokens=params.max_tokens if params else None,
            **fields,  # type: ignore[arg-type]
        )
        # Stamped now, in the caller's context, so the trace id is the caller's request id.
        event = self._bus.stamp(event)
        loop = asyncio.get_running_loop()
        self._redacting += 1
        self._all_queued.clear()
        self._redactor.submit(self._redact_then_queue, event, loop)

    def _redact_then_queue(self, event: InferenceLogged, loop: asyncio.AbstractEventLoop) -> None:
        # What the user typed and what the model said back, without personal data: the log leaves
        # this process (Kafka, ClickHouse, labeling's queue).
        clean: InferenceLogged | None
        try:
            clean = event.model_copy(
                update={"prompt": self._redact(event.prompt), "completion": self._redact(event.completion)}
            )
        except Exception:
            # Never published unredacted: a bug in a detector costs this one log, loudly.
            log.exception("redacting the log of request %s failed; the log is dropped", event.request_id)
            clean = None
        loop.call_soon_threadsafe(self._queue, clean)

    def _queue(self, event: InferenceLogged | None) -> None:
        self._redacting -= 1
        if not self._redacting:
            self._all_queued.set()
        if event is not None:
            self.buffer.put(event)

    def pending(self) -> int:
        """Recorded events not yet published."""
        return self._redacting + self.buffer.pending()

    async def drain(self, timeout: float = 10) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all_queued.wait(), timeout)
        await self.buffer.flush(max(0.0, deadline - loop.time()))
