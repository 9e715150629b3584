"""Pace empty fetches against brokers that answer them at once.

A Kafka consumer asks for records with ``fetch.max.wait.ms``: Apache Kafka holds an empty fetch until
data arrives or that time is up, so an idle consumer sends about two fetches a second. The
development broker ``make up`` runs (noida-db) answers an empty fetch immediately, and aiokafka then
asks again at once: measured, about 480 fetches a second per idle consumer and a fifth of a core per
service doing nothing. :func:`pace_empty_fetches` makes the consumer wait out the rest of
``pause_ms`` after an empty answer that came back sooner than that. Against Apache Kafka an empty
answer takes ``fetch.max.wait.ms`` (500 ms by default), longer than the pause, so nothing changes
there; against an early answering broker a new record waits at most ``pause_ms`` longer.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any

from aiokafka.consumer.fetcher import Fetcher

log = logging.getLogger(__name__)

_pause_s = 0.0
_installed = False


def pace_empty_fetches(pause_ms: int) -> None:
    """From now on (in this process), an empty fetch answered in under ``pause_ms`` is followed by a
    wait until ``pause_ms`` have passed since it was sent. 0 turns pacing off."""
    global _pause_s, _installed
    _pause_s = pause_ms / 1000
    if _installed or pause_ms <= 0:
        return
    original = getattr(Fetcher, "_proc_fetch_request", None)
    if original is None:  # a different aiokafka: say so instead of failing
        log.warning("aiokafka's Fetcher has no _proc_fetch_request; empty fetches are not paced")
        return

    @functools.wraps(original)
    async def paced(self: Any, assignment: Any, node_id: Any, request: Any) -> bool:
        started = time.monotonic()
        got_data = await original(self, assignment, node_id, request)
        if not got_data and _pause_s > 0:
            left = _pause_s - (time.monotonic() - started)
            if left > 0:
                try:
                    await asyncio.sleep(left)
                except asyncio.CancelledError:  # closing or unassigned: as the original, no result
                    return False
        return got_data

    Fetcher._proc_fetch_request = paced  # type: ignore[method-assign]
    _installed = True
