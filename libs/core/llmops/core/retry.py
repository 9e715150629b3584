"""The one retry: capped exponential backoff with jitter, within a time budget.

Consumers, the outbox relay and serving's log buffer retry through :func:`retry`; a failure that
retrying cannot fix (the input itself is wrong: :class:`~llmops.core.errors.InvalidArgument`, a
pydantic ``ValidationError``) is raised at once, anything else is tried again until the budget is
spent (long enough, by default, to ride out a store or broker restart).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from pydantic import ValidationError

from llmops.core.errors import InvalidArgument

log = logging.getLogger(__name__)

T = TypeVar("T")

# Errors that say the input is wrong: the same input fails the same way every time.
PERMANENT: tuple[type[BaseException], ...] = (InvalidArgument, ValidationError)


def is_permanent(exc: BaseException) -> bool:
    return isinstance(exc, PERMANENT)


@dataclass(frozen=True)
class RetryPolicy:
    """Try until ``budget_s`` has passed, waiting ``first_delay_s``, then twice as long each time, at
    most ``max_delay_s`` (with up to 20% jitter, so replicas do not retry in step)."""

    budget_s: float = 60.0
    first_delay_s: float = 0.2
    max_delay_s: float = 5.0

    def delays(self) -> Iterator[float]:
        """The waits between attempts, ending when the next wait would pass the budget."""
        spent, delay = 0.0, self.first_delay_s
        while True:
            wait = min(delay, self.max_delay_s) * random.uniform(0.8, 1.0)
            if spent + wait > self.budget_s:
                return
            spent += wait
            yield wait
            delay *= 2


class RetriesExhausted(Exception):
    """Every attempt failed; ``__cause__`` is the last failure and ``attempts`` how many were made."""

    def __init__(self, attempts: int, elapsed_s: float) -> None:
        super().__init__(f"failed {attempts} time(s) over {elapsed_s:.1f}s")
        self.attempts = attempts


async def retry(call: Callable[[], Awaitable[T]], policy: RetryPolicy, what: str) -> T:
    """``await call()``, again after each failure that is not permanent, until ``policy``'s budget is
    spent; then :class:`RetriesExhausted` from the last failure. A permanent failure and
    cancellation are raised at once."""
    started = time.monotonic()
    delays = policy.delays()
    attempt = 0
    while True:
        attempt += 1
        try:
            return await call()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if is_permanent(exc):
                raise
            wait = next(delays, None)
            if wait is None:
                raise RetriesExhausted(attempt, time.monotonic() - started) from exc
            log.warning(
                "%s failed (attempt %d, %s); retrying in %.2fs", what, attempt, short_error(exc), wait
            )
            await asyncio.sleep(wait)


def short_error(exc: BaseException) -> str:
    """``exc`` in one short line for a log message."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__
