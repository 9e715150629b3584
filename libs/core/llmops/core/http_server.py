"""The one HTTP server bootstrap (for a service that also speaks HTTP, e.g. serving's OpenAI API).

uvicorn runs an ASGI app inside the service's event loop as an async context manager the runtime
enters (``runtime.enter(HttpServer(...))``): it is listening when entered and stops gracefully (calls in
flight get ``grace_seconds``) when the runtime closes. The runtime owns SIGTERM/SIGINT; uvicorn does not
take them over.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import uvicorn


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpServer:
    """uvicorn serving ``app`` on host:port as an async context manager."""

    def __init__(self, app: Any, host: str, port: int, *, grace_seconds: float, name: str = "http") -> None:
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=max(1, int(grace_seconds)),
        )
        self._server = _Server(config)
        self._name = name
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> HttpServer:
        self._task = asyncio.create_task(self._server.serve(), name=self._name)
        deadline = time.monotonic() + 30
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise OSError(f"the HTTP server stopped at start (is port {self._server.config.port} taken?)")
            if time.monotonic() > deadline:
                raise TimeoutError("the HTTP server did not start within 30 s")
            await asyncio.sleep(0.05)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task
