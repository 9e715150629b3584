"""Serving follows the registry: aliases move, adapters are fetched and loaded into vLLM, no restart."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import fsspec
import grpc

from llmops.contracts.events import ModelAliasChanged
from llmops.contracts.rpc.registry.v1 import registry_pb2, registry_pb2_grpc
from llmops.core.errors import InvalidArgument, Unavailable
from llmops.serving.engine import TextEngine
from llmops.serving.routing import AliasTable, Deployment, Route, UnknownModel, parse

if TYPE_CHECKING:
    from vllm.lora.request import LoRARequest

log = logging.getLogger(__name__)
_FETCHED = ".llmops-fetched"


def fetch_adapter(uri: str, cache: Path) -> Path:
    """A local folder holding the adapter at ``uri`` (a local artifact is used where it lies)."""
    fs, path = fsspec.core.url_to_fs(uri)
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    if "file" in protocols or "local" in protocols:
        local = Path(path)
        if not (local / "adapter_config.json").exists():
            raise FileNotFoundError(f"no LoRA adapter (adapter_config.json) at {uri}")
        return local
    if not (cache / _FETCHED).exists():
        cache.mkdir(parents=True, exist_ok=True)
        fs.get(path.rstrip("/") + "/", str(cache) + "/", recursive=True)
        if not (cache / "adapter_config.json").exists():
            raise FileNotFoundError(f"no LoRA adapter (adapter_config.json) at {uri}")
        (cache / _FETCHED).touch()
    return cache


class RegistryUnavailable(Unavailable):
    """The registry could not be asked (down, unreachable, refusing the key)."""


class RegistryLookup:
    """Finds a version by number in the registry, for requests naming a version no alias named."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        # The channel (llmops.core.clients) adds the API key, request id and deadline to each call.
        self._stub = registry_pb2_grpc.RegistryServiceStub(channel)

    async def get(self, model: str, version: int) -> Deployment | None:
        try:
            v = await self._stub.GetVersion(registry_pb2.GetVersionRequest(model=model, version=version))
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise RegistryUnavailable(
                f"cannot look up version {version} of {model!r} in the registry: "
                f"{exc.code().name} {exc.details()}"
            ) from exc
        return Deployment(model, v.version, v.artifact_uri, v.base_model)


class ModelRouter:
    def __init__(
        self,
        engine: TextEngine,
        table: AliasTable,
        served_name: str,
        cache_dir: Path,
        registry: RegistryLookup | None = None,
    ) -> None:
        self.engine = engine
        self.table = table
        self.served_name = served_name
        self.cache_dir = cache_dir
        self.registry = registry
        self._loading = asyncio.Lock()

    async def resolve(self, requested: str) -> tuple[Route, LoRARequest | None]:
        """The route for a request's model name, with its adapter loaded (UnknownModel if none)."""
        if requested in ("", self.served_name):
            return Route(self.served_name, None), None
        model, alias, version = parse(requested)
        deployment = (
            self.table.by_alias(model, alias) if alias else self.table.by_version(model, version or 0)
        )
        if deployment is None and version is not None and self.registry is not None:
            deployment = await self.registry.get(model, version)
            if deployment is not None:
                self.table.remember(deployment)
        if deployment is None:
            what = f"alias {alias!r} of {model!r}" if alias else f"version {version} of {model!r}"
            raise UnknownModel(
                f"unknown model {requested!r}: no {what} is deployed here (base model: {self.served_name})"
            )
        return Route(requested, deployment), await self.load(deployment)

    async def load(self, deployment: Deployment) -> LoRARequest:
        if Path(deployment.base_model).name != self.served_name:
            raise UnknownModel(
                f"{deployment.adapter_name} is an adapter for {deployment.base_model!r}; "
                f"this server serves {self.served_name!r}"
            )
        async with self._loading:
            if deployment.adapter_name in self.engine.adapters:
                return self.engine.adapters[deployment.adapter_name]
            cache = self.cache_dir / deployment.model / str(deployment.version)
            local = await asyncio.to_thread(fetch_adapter, deployment.artifact_uri, cache)
            lora = await self.engine.load_adapter(deployment.adapter_name, local)
            log.info("loaded adapter %s from %s", deployment.adapter_name, deployment.artifact_uri)
            return lora

    async def on_alias_changed(self, event: ModelAliasChanged) -> None:
        if event.version is None:
            self.table.set(event.model, event.alias, None)
            log.info("alias %s@%s removed", event.model, event.alias)
            return
        deployment = Deployment(event.model, event.version, event.artifact_uri, event.base_model)
        if Path(deployment.base_model).name != self.served_name:
            # Retrying cannot help: the event goes to the DLQ at once, the alias keeps its holder.
            raise InvalidArgument(
                f"{deployment.adapter_name} for {event.model}@{event.alias} is an adapter for "
                f"{deployment.base_model!r}; this server serves {self.served_name!r}"
            )
        # Load first, then switch: a request never meets an alias whose adapter is not ready.
        await self.load(deployment)
        self.table.set(event.model, event.alias, deployment)
        log.info("alias %s@%s -> version %d (%s)", event.model, event.alias, event.version, event.reason)

    async def load_all(self) -> None:
        """At start-up: load the adapters every persisted alias points at."""
        for model, alias, deployment in self.table.all_aliases():
            try:
                await self.load(deployment)
            except Exception:
                log.exception("could not load %s for %s@%s", deployment.adapter_name, model, alias)
