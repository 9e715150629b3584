"""Ingestion service: its gRPC contract is served; its behaviour is planned in the data-path issue (#3)."""

from __future__ import annotations

from llmops.contracts.rpc.ingestion.v1 import ingestion_pb2_grpc
from llmops.core.service import Runtime
from llmops.core.unimplemented import planned_servicer
from llmops.ingestion.settings import Settings


class IngestionService:
    name = "ingestion"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def register(self, runtime: Runtime) -> None:
        runtime.grpc.add(
            ingestion_pb2_grpc.add_IngestionServiceServicer_to_server,
            planned_servicer(
                ingestion_pb2_grpc.IngestionServiceServicer,
                "IngestionService",
                "planned in the data-path issue (#3)",
            ),
            "llmops.ingestion.v1.IngestionService",
        )

    async def start(self, runtime: Runtime) -> None:
        """Nothing to open until the service's behaviour lands."""

    async def stop(self) -> None:
        """Nothing to close."""
