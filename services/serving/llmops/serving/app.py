"""Serving: Generate / GenerateStream on vLLM; every answer is published as inference.logged."""

from __future__ import annotations

from llmops.contracts.events import ModelAliasChanged
from llmops.contracts.rpc.serving.v1 import serving_pb2_grpc
from llmops.core.model_assets import smollm2_path
from llmops.core.service import Runtime
from llmops.serving.deployments import ModelRouter, RegistryLookup
from llmops.serving.engine import TextEngine
from llmops.serving.grpc_server import ServingServicer
from llmops.serving.inference_log import InferenceLogWriter
from llmops.serving.routing import AliasTable
from llmops.serving.settings import Settings


class ServingService:
    name = "serving"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        s = settings
        self.engine = TextEngine(
            s.model_path or smollm2_path(s.platform.models_dir),
            served_name=s.served_model_name,
            max_model_len=s.max_model_len,
            dtype=s.dtype,
            enable_lora=s.enable_lora,
            max_loras=s.max_loras,
            max_lora_rank=s.max_lora_rank,
            cache_dir=s.platform.data_dir / "cache",
            kv_cache_gib=s.kv_cache_gib,
        )
        self.log: InferenceLogWriter | None = None
        folder = s.platform.data_dir / "serving"
        key = s.clients.api_key.get_secret_value() if s.clients.api_key else ""
        self.registry = RegistryLookup(s.clients.address("registry"), key) if key else None
        self.table = AliasTable(folder / "aliases.sqlite")
        self.router = ModelRouter(
            self.engine, self.table, s.served_model_name, folder / "adapters", self.registry
        )

    def register(self, runtime: Runtime) -> None:
        self.log = InferenceLogWriter(runtime.bus)
        runtime.grpc.add(
            serving_pb2_grpc.add_ServingServiceServicer_to_server,
            ServingServicer(self.settings, self.engine, self.log, self.router),
            "llmops.serving.v1.ServingService",
        )
        group = f"llmops-serving.aliases.{self.settings.instance_id}-{self.settings.grpc_port}"
        runtime.bus.consume(ModelAliasChanged, group, self.router.on_alias_changed)

    async def start(self, runtime: Runtime) -> None:
        clients = self.settings.clients
        if clients.api_key is not None:
            # gRPC aio channels belong to the running loop, so this is made here, not in __init__.
            self.registry = RegistryLookup(clients.address("registry"), clients.api_key.get_secret_value())
            self.router.registry = self.registry
        await self.engine.__aenter__()
        await self.router.load_all()

    async def drain(self) -> None:
        if self.log is not None:
            await self.log.drain()

    async def stop(self) -> None:
        if self.registry is not None:
            await self.registry.close()
        self.table.close()
        await self.engine.__aexit__(None, None, None)
