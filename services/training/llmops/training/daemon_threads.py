"""Daemon threads for blocking work (a Ray Train fit, an evaluation) awaited from the event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any


def in_daemon_thread(fn: Callable[[], Any], name: str = "training-work") -> asyncio.Future[Any]:
    """Run ``fn`` in a daemon thread and return a future of its result.

    Unlike ``asyncio.to_thread``, a call still running when the service exits does not hold the
    process up (the default executor is joined at shutdown; a daemon thread is not).
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(value: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)

    def target() -> None:
        try:
            value = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
            error: BaseException | None = exc
            value = None
        else:
            error = None
        try:
            loop.call_soon_threadsafe(settle, value, error)
        except RuntimeError:
            pass  # the loop is closed: nobody is waiting any more

    threading.Thread(target=target, name=name, daemon=True).start()
    return future
