"""Running a service process: the same start-up and shutdown order for all eight services.

1. settings are already validated (bad ones failed before this);
2. the service registers its gRPC servicers and Kafka consumers (no I/O yet);
3. gRPC starts and health says NOT_SERVING; metrics start;
4. the service opens its stores and engines (may take a while: vLLM loads here);
5. Kafka connects and consumers start; health says SERVING;
6. on SIGTERM/SIGINT: NOT_SERVING, calls in flight get ``grace_seconds``, consumers stop, stores close.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from llmops.core.dedup import ProcessedEvents
from llmops.core.grpc_server import GrpcServer
from llmops.core.logging import configure_logging
from llmops.core.messaging import EventBus
from llmops.core.metrics import serve_metrics
from llmops.core.settings import ServiceSettings

log = logging.getLogger(__name__)

S = TypeVar("S", bound=ServiceSettings)


class Runtime:
    """What a service gets to wire itself up: its settings, its gRPC server and its event bus."""

    def __init__(self, name: str, settings: ServiceSettings) -> None:
        self.name = name
        self.settings = settings
        self.grpc = GrpcServer(name, settings.host, settings.grpc_port, settings.auth)
        self.processed = ProcessedEvents(settings.platform.data_dir / name / "processed_events.sqlite")
        self.bus = EventBus(settings.kafka, name, self.processed)


class Service(Protocol):
    name: str

    def register(self, runtime: Runtime) -> None:
        """Add servicers and consumers; no I/O."""

    async def start(self, runtime: Runtime) -> None:
        """Open stores and engines."""

    async def stop(self) -> None:
        """Close what start opened."""


async def serve(service: Service, settings: ServiceSettings) -> None:
    runtime = Runtime(service.name, settings)
    service.register(runtime)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    serve_metrics(settings.host, settings.metrics_port)
    await runtime.grpc.start()
    started_service = False
    started_bus = False
    try:
        await _until_stopped(service.start(runtime), stop)
        started_service = True
        if stop.is_set():
            return
        await runtime.bus.start()
        started_bus = True
        await runtime.grpc.set_serving()
        log.info("%s is SERVING on %s", service.name, runtime.grpc.address)
        await stop.wait()
        log.info("%s is stopping", service.name)
    finally:
        await runtime.grpc.stop(settings.grace_seconds)
        drain = getattr(service, "drain", None)
        if started_service and drain is not None:
            # Work the finished calls left behind (e.g. events still being published) needs the bus.
            await drain()
        if started_bus:
            await runtime.bus.stop()
        if started_service:
            await service.stop()
        runtime.processed.close()


async def _until_stopped(work: Any, stop: asyncio.Event) -> None:
    """Run ``work`` but give up as soon as a stop signal arrives (a slow engine load is interruptible)."""
    task = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        waiter.cancel()
        task.result()
        return
    task.cancel()
    try:
        await task
    except (asyncio.CancelledError, Exception):  # noqa: BLE001 - shutting down anyway
        pass


def main(name: str, settings_factory: Callable[[], S], service_factory: Callable[[S], Service]) -> None:
    """Entry point for ``python -m llmops.<service>``: settings errors end the process with a clear line."""
    from pydantic import ValidationError

    try:
        settings = settings_factory()
    except ValidationError as exc:
        lines = [f"  {'.'.join(map(str, e['loc'])) or exc.title}: {e['msg']}" for e in exc.errors()]
        print(f"{name}: invalid settings\n" + "\n".join(lines), file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(name, settings.platform.log_level, settings.platform.log_format)
    try:
        service = service_factory(settings)
    except Exception as exc:  # noqa: BLE001 - any set-up error ends the process with its message
        log.error("%s cannot start: %s", name, exc)
        raise SystemExit(1) from None
    try:
        asyncio.run(serve(service, settings))
    except (ConnectionError, OSError) as exc:
        log.error("%s failed to start: %s", name, exc)
        raise SystemExit(1) from None
