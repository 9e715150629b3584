"""Retrieval service: its gRPC contract is served;
its behaviour is planned with retrieval (RAG over Qdrant)."""

from __future__ import annotations

from llmops.contracts.rpc.retrieval.v1 import retrieval_pb2_grpc
from llmops.core.service import Runtime
from llmops.core.unimplemented import planned_servicer
from llmops.retrieval.settings import Settings


class RetrievalService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def register(self, runtime: Runtime) -> None:
        runtime.grpc.add(
            retrieval_pb2_grpc.add_RetrievalServiceServicer_to_server,
            planned_servicer(
                retrieval_pb2_grpc.RetrievalServiceServicer,
                "RetrievalService",
                "planned with retrieval (RAG over Qdrant)",
            ),
            "llmops.retrieval.v1.RetrievalService",
        )

    async def start(self, runtime: Runtime) -> None:
        """Nothing to open until the service's behaviour lands (each store then goes to runtime.own)."""
