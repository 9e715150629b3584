"""Registry service: its gRPC contract is served;
its behaviour is planned in the training and registry issue (#4)."""

from __future__ import annotations

from llmops.contracts.rpc.registry.v1 import registry_pb2_grpc
from llmops.core.service import Runtime
from llmops.core.unimplemented import planned_servicer
from llmops.registry.settings import Settings


class RegistryService:
    name = "registry"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def register(self, runtime: Runtime) -> None:
        runtime.grpc.add(
            registry_pb2_grpc.add_RegistryServiceServicer_to_server,
            planned_servicer(
                registry_pb2_grpc.RegistryServiceServicer,
                "RegistryService",
                "planned in the training and registry issue (#4)",
            ),
            "llmops.registry.v1.RegistryService",
        )

    async def start(self, runtime: Runtime) -> None:
        """Nothing to open until the service's behaviour lands."""

    async def stop(self) -> None:
        """Nothing to close."""
