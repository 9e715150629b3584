"""Labeling service: its gRPC contract is served; its behaviour is planned in the data-path issue (#3)."""

from __future__ import annotations

from llmops.contracts.rpc.labeling.v1 import labeling_pb2_grpc
from llmops.core.service import Runtime
from llmops.core.unimplemented import planned_servicer
from llmops.labeling.settings import Settings


class LabelingService:
    name = "labeling"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def register(self, runtime: Runtime) -> None:
        runtime.grpc.add(
            labeling_pb2_grpc.add_LabelingServiceServicer_to_server,
            planned_servicer(
                labeling_pb2_grpc.LabelingServiceServicer,
                "LabelingService",
                "planned in the data-path issue (#3)",
            ),
            "llmops.labeling.v1.LabelingService",
        )

    async def start(self, runtime: Runtime) -> None:
        """Nothing to open until the service's behaviour lands."""

    async def stop(self) -> None:
        """Nothing to close."""
