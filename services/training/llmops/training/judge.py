"""The evaluation judge: a pairwise prompt sent to serving's Generate, its answer read as A or B."""

from __future__ import annotations

import logging
import re

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from llmops.contracts.rpc.serving.v1 import serving_pb2, serving_pb2_grpc

log = logging.getLogger(__name__)

# Versioned like labeling's judge prompts: a version is never edited once used.
PAIRWISE_PROMPT_V1 = (
    "You compare two answers to the same request. Which answer is more correct and more helpful?\n\n"
    "Request:\n{prompt}\n\nAnswer A:\n{answer_a}\n\nAnswer B:\n{answer_b}\n\n"
    "Reply with the single letter A or B."
)
_VERDICT = re.compile(r"\b([AB])\b")


def parse_verdict(text: str) -> str | None:
    """The first standalone "A" or "B" in the judge's reply; None when there is none."""
    match = _VERDICT.search(text.strip())
    return match.group(1) if match else None


class ServingJudge:
    """judge(prompt, answer_a, answer_b) -> "A" | "B" | None over serving's gRPC API (greedy)."""

    def __init__(self, address: str, api_key: str, model: str = "", timeout: float = 60.0) -> None:
        self.address = address
        self._channel = grpc.aio.insecure_channel(address)
        self._stub = serving_pb2_grpc.ServingServiceStub(self._channel)
        self._metadata = (("x-api-key", api_key),)
        self._model = model
        self._timeout = timeout

    async def available(self) -> bool:
        """Whether serving answers its health check with SERVING (checked before each evaluation)."""
        try:
            reply = await health_pb2_grpc.HealthStub(self._channel).Check(
                health_pb2.HealthCheckRequest(service="llmops.serving.v1.ServingService"), timeout=3
            )
        except grpc.RpcError as exc:
            log.info("serving at %s is not reachable (%s): no judge", self.address, exc.code().name)
            return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    async def __call__(self, prompt: str, answer_a: str, answer_b: str) -> str | None:
        reply = await self._stub.Generate(
            serving_pb2.GenerateRequest(
                model=self._model,
                prompt=PAIRWISE_PROMPT_V1.format(prompt=prompt, answer_a=answer_a, answer_b=answer_b),
                max_tokens=4,
                temperature=0.0,
                metadata={"caller": "training-eval-judge", "judge_prompt": "pairwise@v1"},
            ),
            metadata=self._metadata,
            timeout=self._timeout,
        )
        return parse_verdict(reply.text)

    async def close(self) -> None:
        await self._channel.close()
