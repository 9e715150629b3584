"""The AsyncAPI document of the platform, made by FastStream from what each service declares.

Every service's ``register`` (no I/O) adds its typed subscribers and the publishers it declares
(``bus.publishes``) to its own broker; FastStream documents those brokers. So the document comes
from the same definitions the services run with, not from a table kept by hand.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import tempfile
from pathlib import Path
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from llmops.core.service import Runtime
from llmops.core.settings import DEFAULT_GRPC_PORTS, AuthSettings, PlatformSettings

DESCRIPTION = (
    "Every Kafka topic of the platform, with the services that publish and consume it. Each event "
    "carries the envelope (event_id, occurred_at, schema_version, trace_id, producer); consumers "
    "dedup on event_id. A message that fails validation or processing goes to <topic>.dlq."
)


def _service_class(name: str) -> type:
    module = importlib.import_module(f"llmops.{name}.app")
    return getattr(module, f"{name.capitalize()}Service")


def brokers(data_dir: Path) -> list[KafkaBroker]:
    """Each service's broker with its subscribers and publishers registered (nothing connects)."""
    out: list[KafkaBroker] = []
    for name in DEFAULT_GRPC_PORTS:
        settings_cls = importlib.import_module(f"llmops.{name}.settings").Settings
        extra = {"instance_id": "doc"} if "instance_id" in settings_cls.model_fields else {}
        settings = settings_cls(
            platform=PlatformSettings(data_dir=data_dir, run_dir=data_dir / "run"),
            auth=AuthSettings(auth_disabled=True),
            **extra,
        )
        runtime = Runtime(settings)
        _service_class(name)(settings).register(runtime)
        out.append(runtime.bus.broker)
    return out


def build() -> dict[str, Any]:
    # A service's register() makes its grpc.aio server, which needs an event loop; run it in one.
    return asyncio.run(_build())


async def _build() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="llmops-asyncapi-") as tmp:
        spec = AsyncAPI(
            *brokers(Path(tmp)), title="LLMOps platform events", version="1", description=DESCRIPTION
        ).to_specification()
        return json.loads(spec.to_json())


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"
