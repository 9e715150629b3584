"""Serving follows the registry: aliases move, adapters are fetched and loaded into vLLM, no restart."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import fsspec
import grpc

from llmops.contracts.events import ModelAliasChanged, ModelCanaryChanged
from llmops.contracts.rpc.registry.v1 import registry_pb2, registry_pb2_grpc
from llmops.core.errors import InvalidArgument, Unavailable
from llmops.serving.domain.canary import goes_to_challenger
from llmops.serving.engine import TextEngine
from llmops.serving.routing import AliasTable, Canary, Deployment, Route, UnknownModel, parse

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
    """Request names to deployments (aliases, canaries, versions), with their adapters loaded.

    Adapters no alias names any more stay loaded while in use or among the ``max_idle_adapters``
    most recently used; older ones are unloaded, so memory does not grow with every promotion.
    """

    def __init__(
        self,
        engine: TextEngine,
        table: AliasTable,
        served_name: str,
        cache_dir: Path,
        registry: RegistryLookup | None = None,
        *,
        max_idle_adapters: int = 2,
    ) -> None:
        self.engine = engine
        self.table = table
        self.served_name = served_name
        self.cache_dir = cache_dir
        self.registry = registry
        self.max_idle_adapters = max_idle_adapters
        self._loading = asyncio.Lock()
        self._in_use: Counter[str] = Counter()
        self._last_used: dict[str, float] = {}

    async def resolve(self, requested: str, user: str = "") -> tuple[Route, LoRARequest | None]:
        """The route for a request's model name, with its adapter loaded (UnknownModel if none).

        A request for an alias under a canary goes to the challenger alias's holder for the canary's
        share of users (by a stable hash of ``user``; of requests, when there is no user).
        """
        if requested in ("", self.served_name):
            return Route(self.served_name, None), None
        model, alias, version = parse(requested)
        arm = alias or ""
        deployment = None
        if alias:
            canary = self.table.canary(model, alias)
            if canary is not None and goes_to_challenger(model, alias, user, canary.share):
                # A challenger alias not (yet) known here leaves the request with the champion.
                deployment = self.table.by_alias(model, canary.challenger_alias)
                if deployment is not None:
                    arm = canary.challenger_alias
            if deployment is None:
                deployment = self.table.by_alias(model, alias)
        else:
            deployment = self.table.by_version(model, version or 0)
        if deployment is None and version is not None and self.registry is not None:
            deployment = await self.registry.get(model, version)
            if deployment is not None:
                self.table.remember(deployment)
        if deployment is None:
            what = f"alias {alias!r} of {model!r}" if alias else f"version {version} of {model!r}"
            raise UnknownModel(
                f"unknown model {requested!r}: no {what} is deployed here (base model: {self.served_name})"
            )
        return Route(requested, deployment, arm), await self.load(deployment)

    @contextlib.asynccontextmanager
    async def using(self, route: Route) -> AsyncIterator[None]:
        """Mark the route's adapter as in use for the block: it is not unloaded meanwhile."""
        name = route.deployment.adapter_name if route.deployment else None
        if name is None:
            yield
            return
        self._in_use[name] += 1
        try:
            yield
        finally:
            self._in_use[name] -= 1
            if self._in_use[name] <= 0:
                del self._in_use[name]
            self._last_used[name] = time.monotonic()

    async def load(self, deployment: Deployment) -> LoRARequest:
        if Path(deployment.base_model).name != self.served_name:
            raise UnknownModel(
                f"{deployment.adapter_name} is an adapter for {deployment.base_model!r}; "
                f"this server serves {self.served_name!r}"
            )
        name = deployment.adapter_name
        self._last_used[name] = time.monotonic()
        # Every request for an adapter passes here: a loaded one is returned without the lock.
        loaded = self.engine.adapter(name)
        if loaded is not None:
            return loaded
        async with self._loading:
            loaded = self.engine.adapter(name)
            if loaded is not None:
                return loaded
            cache = self.cache_dir / deployment.model / str(deployment.version)
            local = await asyncio.to_thread(fetch_adapter, deployment.artifact_uri, cache)
            lora = await self.engine.load_adapter(name, local)
            log.info("loaded adapter %s from %s", name, deployment.artifact_uri)
        await self.unload_idle(keep=name)
        return lora

    def aliases_by_adapter(self) -> dict[str, list[str]]:
        """Adapter name -> the ``model@alias`` names that route to it now (canary challengers included)."""
        named: dict[str, list[str]] = {}
        for model, alias, d in self.table.all_aliases():
            named.setdefault(d.adapter_name, []).append(f"{model}@{alias}")
        return named

    async def unload_idle(self, keep: str | None = None) -> list[str]:
        """Unload the adapters no alias names and no request uses, beyond the newest ``max_idle_adapters``.

        ``keep`` (just loaded for a request that has not started yet) stays whatever the bound.
        """
        named = self.aliases_by_adapter()
        async with self._loading:
            idle = [
                n for n in self.engine.adapters if n not in named and not self._in_use.get(n) and n != keep
            ]
            idle.sort(key=lambda n: self._last_used.get(n, 0.0), reverse=True)
            gone = idle[self.max_idle_adapters :]
            for name in gone:
                await self.engine.unload_adapter(name)
                self._last_used.pop(name, None)
                log.info("unloaded adapter %s (no alias names it; idle)", name)
        return gone

    async def on_alias_changed(self, event: ModelAliasChanged) -> None:
        if event.version is None:
            self.table.set(event.model, event.alias, None)
            log.info("alias %s@%s removed", event.model, event.alias)
            await self.unload_idle()
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
        # The previous holder may be idle now.
        await self.unload_idle()

    async def on_canary_changed(self, event: ModelCanaryChanged) -> None:
        if not event.active:
            self.table.set_canary(event.model, event.alias, None)
            log.info("canary on %s@%s ended (%s)", event.model, event.alias, event.outcome or "ended")
            return
        canary = Canary(event.model, event.alias, event.challenger_alias, event.share)
        self.table.set_canary(event.model, event.alias, canary)
        log.info(
            "canary on %s@%s: %.1f%% to %s",
            event.model,
            event.alias,
            event.share * 100,
            event.challenger_alias,
        )

    async def load_all(self) -> None:
        """At start-up: load the adapters every persisted alias points at."""
        for model, alias, deployment in self.table.all_aliases():
            try:
                await self.load(deployment)
            except Exception:
                log.exception("could not load %s for %s@%s", deployment.adapter_name, model, alias)
