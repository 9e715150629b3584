"""The evaluation judge: a pairwise prompt sent to serving's Generate, its answer read as A or B."""

from __future__ import annotations

import logging

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from llmops.contracts.rpc.serving.v1 import serving_pb2, serving_pb2_grpc
from llmops.contracts.vocabulary import parse_pairwise_verdict

log = logging.getLogger(__name__)

# Versioned like labeling's judge prompts: a version is never edited once used.
PAIRWISE_PROMPT_V1 = (
    "You compare two answers to the same request. Which answer is more correct and more helpful?\n\n"
    "Request:\n{prompt}\n\nAnswer A:\n{answer_a}\n\nAnswer B:\n{answer_b}\n\n"
    "Reply with the single letter A or B."
)


class ServingJudge:
    """judge(prompt, answer_a, answer_b) -> "A" | "B" | None over serving's gRPC API (greedy).

    ``channel`` comes from ``runtime.channel("serving")``: it adds the API key, the request id and a
    default deadline, and the runtime closes it.
    """

    def __init__(self, channel: grpc.aio.Channel, model: str = "", timeout: float = 60.0) -> None:
        self._health = health_pb2_grpc.HealthStub(channel)
        self._stub = serving_pb2_grpc.ServingServiceStub(channel)
        self._model = model
        self._timeout = timeout

    async def available(self) -> bool:
        """Whether serving answers its health check with SERVING (checked before each evaluation)."""
        try:
            reply = await self._health.Check(
                health_pb2.HealthCheckRequest(service="llmops.serving.v1.ServingService")
            )
        except grpc.RpcError as exc:
            log.info("serving is not reachable (%s): no judge", exc.code().name)
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
            timeout=self._timeout,
        )
        return parse_pairwise_verdict(reply.text)
