"""Training service: its gRPC contract is served;
its behaviour is planned in the training and registry issue (#4)."""

from __future__ import annotations

from llmops.contracts.rpc.training.v1 import training_pb2_grpc
from llmops.core.service import Runtime
from llmops.core.unimplemented import planned_servicer
from llmops.training.settings import Settings


class TrainingService:
    name = "training"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def register(self, runtime: Runtime) -> None:
        runtime.grpc.add(
            training_pb2_grpc.add_TrainingServiceServicer_to_server,
            planned_servicer(
                training_pb2_grpc.TrainingServiceServicer,
                "TrainingService",
                "planned in the training and registry issue (#4)",
            ),
            "llmops.training.v1.TrainingService",
        )

    async def start(self, runtime: Runtime) -> None:
        """Nothing to open until the service's behaviour lands."""

    async def stop(self) -> None:
        """Nothing to close."""
