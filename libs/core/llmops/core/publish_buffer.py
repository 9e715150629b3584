"""Events published without making the caller wait, that wait out a broker outage and a restart.

Serving logs every answer: the caller must not wait for Kafka, and an answer's log must not be lost
because the broker is away. :class:`PublishBuffer` keeps events in memory and publishes them in the
background; while publishing fails it keeps them (retrying with capped backoff, without end), and
when memory holds ``memory_limit`` events the next ones go to a spool file (JSON lines under the data
folder). On close, whatever is still in memory is written to the spool too, and the next start
publishes the spool first. Past ``spool_limit_bytes`` an event is dropped, and a metric and a log
line say how many (nothing is dropped silently).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path

from prometheus_client import Counter, Gauge

from llmops.contracts.events import Event
from llmops.core.retry import RetryPolicy

log = logging.getLogger(__name__)

BUFFERED = Gauge("llmops_publish_buffer_events", "Events waiting in memory to be published.", ["service"])
SPOOLED = Gauge(
    "llmops_publish_buffer_spool_bytes", "Bytes of events waiting in the spool file.", ["service"]
)
DROPPED = Counter(
    "llmops_publish_buffer_dropped_total", "Events dropped because the buffer was full.", ["service", "topic"]
)

# Publishing is retried without end while the broker is away, at most this far apart.
_BACKOFF = RetryPolicy(budget_s=float("inf"), first_delay_s=0.2, max_delay_s=5.0)
_CONCURRENT = 64


class PublishBuffer:
    """A bounded, restart-surviving queue of events in front of ``publish`` (see the module doc)."""

    def __init__(
        self,
        publish: Callable[[Event], Awaitable[None]],
        event_type: type[Event],
        spool: Path,
        service: str,
        *,
        memory_limit: int = 10_000,
        spool_limit_bytes: int = 256 * 1024 * 1024,
    ) -> None:
        self._publish = publish
        self._event_type = event_type
        self._spool = spool
        self._service = service
        self._memory_limit = memory_limit
        self._spool_limit = spool_limit_bytes
        self._memory: deque[Event] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._dropped = 0
        self._dropped_logged_at = 0.0

    # --- producing ---------------------------------------------------------------------------------

    def put(self, event: Event) -> None:
        """Queue ``event`` (returns at once): memory, else the spool file, else dropped and counted."""
        if len(self._memory) < self._memory_limit and not self._spooled_bytes():
            self._memory.append(event)
        elif not self._append_to_spool([event]):
            self._drop(event)
        self._observe()
        self._wake.set()

    @property
    def dropped(self) -> int:
        return self._dropped

    def pending(self) -> int:
        """Events not yet published (memory and spool)."""
        return len(self._memory) + self._spooled_count()

    # --- lifecycle ---------------------------------------------------------------------------------

    async def __aenter__(self) -> PublishBuffer:
        self._spool.parent.mkdir(parents=True, exist_ok=True)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="publish-buffer")
        if self._spooled_bytes():
            log.info(
                "%s: %d event(s) spooled before the last stop are published first",
                self._service,
                self._spooled_count(),
            )
            self._wake.set()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for everything queued to be published; True if it was."""
        deadline = time.monotonic() + timeout
        while self.pending() and time.monotonic() < deadline:
            self._wake.set()
            await asyncio.sleep(0.05)
        return not self.pending()

    async def close(self, timeout: float = 5.0) -> None:
        """Publish what can be published within ``timeout``; spool the rest for the next start."""
        with contextlib.suppress(Exception):
            await self.flush(timeout)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._memory:
            left = list(self._memory)
            self._memory.clear()
            if self._append_to_spool(left):
                log.warning(
                    "%s: %d event(s) not yet published are kept in %s", self._service, len(left), self._spool
                )
            else:
                for event in left:
                    self._drop(event)
        self._observe()

    # --- publishing --------------------------------------------------------------------------------

    async def _run(self) -> None:
        delays = _BACKOFF.delays()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._memory or self._spooled_bytes():
                try:
                    await self._publish_some()
                    delays = _BACKOFF.delays()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    wait = next(delays)
                    log.warning(
                        "%s: publishing %d buffered event(s) failed (%s); again in %.1fs",
                        self._service,
                        self.pending(),
                        exc,
                        wait,
                    )
                    await asyncio.sleep(wait)

    async def _publish_some(self) -> None:
        if self._memory:
            batch = [self._memory[i] for i in range(min(_CONCURRENT, len(self._memory)))]
            results = await asyncio.gather(*(self._publish(e) for e in batch), return_exceptions=True)
            # Drop from the left what was published, in order; keep the first failure and after.
            for result in results:
                if isinstance(result, BaseException):
                    self._observe()
                    raise result
                self._memory.popleft()
            self._observe()
            return
        await self._publish_spool()

    async def _publish_spool(self) -> None:
        # The spool is published in chunks, oldest first; a chunk's lines leave the file only after
        # they were all published (a crash in between publishes them again: consumers dedup).
        lines = self._spool.read_bytes().splitlines()
        done = 0
        try:
            for start in range(0, len(lines), _CONCURRENT):
                chunk = [
                    self._event_type.model_validate_json(line) for line in lines[start : start + _CONCURRENT]
                ]
                results = await asyncio.gather(*(self._publish(e) for e in chunk), return_exceptions=True)
                failed = next((r for r in results if isinstance(r, BaseException)), None)
                if failed is not None:
                    raise failed
                done = start + len(chunk)
        finally:
            self._rewrite_spool(lines[done:])
            self._observe()

    # --- the spool file ----------------------------------------------------------------------------

    def _spooled_bytes(self) -> int:
        try:
            return self._spool.stat().st_size
        except FileNotFoundError:
            return 0

    def _spooled_count(self) -> int:
        if not self._spooled_bytes():
            return 0
        with self._spool.open("rb") as f:
            return sum(1 for _ in f)

    def _append_to_spool(self, events: list[Event]) -> bool:
        data = b"".join(e.model_dump_json().encode() + b"\n" for e in events)
        if self._spooled_bytes() + len(data) > self._spool_limit:
            return False
        with self._spool.open("ab") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return True

    def _rewrite_spool(self, lines: list[bytes]) -> None:
        if not lines:
            self._spool.unlink(missing_ok=True)
            return
        tmp = self._spool.with_suffix(".tmp")
        tmp.write_bytes(b"".join(line + b"\n" for line in lines))
        os.replace(tmp, self._spool)

    def _drop(self, event: Event) -> None:
        self._dropped += 1
        DROPPED.labels(self._service, event.topic).inc()
        now = time.monotonic()
        if now - self._dropped_logged_at > 10:
            self._dropped_logged_at = now
            log.error(
                "%s: publish buffer full (memory %d events, spool %d bytes): %d event(s) dropped so far",
                self._service,
                self._memory_limit,
                self._spool_limit,
                self._dropped,
            )

    def _observe(self) -> None:
        BUFFERED.labels(self._service).set(len(self._memory))
        SPOOLED.labels(self._service).set(self._spooled_bytes())
