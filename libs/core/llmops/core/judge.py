"""LLM-as-judge, the platform's one way to ask it: a prompt sent to serving's Generate (greedy, a few
tokens), and its answer read as a rating. Labeling labels queues with it; monitoring scores live
answers with it for the canary analysis.

An answer the reader cannot read is an abstention (None), never a guess.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from llmops.contracts.rpc.serving.v1 import serving_pb2, serving_pb2_grpc

log = logging.getLogger(__name__)

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def parse_rating(answer: str, low: float, high: float) -> float | None:
    """The first number in ``answer`` when it lies in [low, high]; None otherwise."""
    m = _NUMBER.search(answer)
    if m is None:
        return None
    value = float(m.group())
    return value if low <= value <= high else None


class ServingJudge:
    """Asks serving's Generate over a channel from ``runtime.channel("serving")`` (which adds the API
    key and the request id; the runtime closes it)."""

    def __init__(self, channel: grpc.aio.Channel, timeout: float, caller: str) -> None:
        self._health = health_pb2_grpc.HealthStub(channel)
        self._stub = serving_pb2_grpc.ServingServiceStub(channel)
        # Generation may queue behind other requests, so the judge has its own (longer) deadline.
        self._timeout = timeout
        self._caller = caller

    async def available(self) -> bool:
        """Whether serving answers its health check with SERVING."""
        try:
            reply = await self._health.Check(
                health_pb2.HealthCheckRequest(service="llmops.serving.v1.ServingService")
            )
        except grpc.RpcError as exc:
            log.info("serving is not reachable (%s): no judge", exc.code().name)
            return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    async def ask(
        self, prompt: str, model: str, max_tokens: int = 16, metadata: Mapping[str, str] | None = None
    ) -> str:
        """The judge's answer to ``prompt`` (greedy), from the model serving answers ``model`` with."""
        reply = await self._stub.Generate(
            serving_pb2.GenerateRequest(
                model=model,
                prompt=prompt,
                max_tokens=max_tokens,
                temperature=0,
                metadata={"caller": self._caller, **(metadata or {})},
            ),
            timeout=self._timeout,
        )
        return reply.text
