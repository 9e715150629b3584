"""The evaluation judge: a pairwise prompt sent to serving's Generate, its answer read as A or B."""

from __future__ import annotations

import grpc

from llmops.contracts.vocabulary import parse_pairwise_verdict
from llmops.core import judge

# Versioned like labeling's judge prompts: a version is never edited once used.
PAIRWISE_PROMPT_V1 = (
    "You compare two answers to the same request. Which answer is more correct and more helpful?\n\n"
    "Request:\n{prompt}\n\nAnswer A:\n{answer_a}\n\nAnswer B:\n{answer_b}\n\n"
    "Reply with the single letter A or B."
)


class ServingJudge:
    """judge(prompt, answer_a, answer_b) -> "A" | "B" | None over serving's gRPC API (greedy), through
    llmops.core.judge.

    ``channel`` comes from ``runtime.channel("serving")``: it adds the API key, the request id and a
    default deadline, and the runtime closes it.
    """

    def __init__(self, channel: grpc.aio.Channel, model: str = "", timeout: float = 60.0) -> None:
        self._judge = judge.ServingJudge(channel, timeout, caller="training-eval-judge")
        self._model = model

    async def available(self) -> bool:
        """Whether serving answers its health check with SERVING (checked before each evaluation)."""
        return await self._judge.available()

    async def __call__(self, prompt: str, answer_a: str, answer_b: str) -> str | None:
        answer = await self._judge.ask(
            PAIRWISE_PROMPT_V1.format(prompt=prompt, answer_a=answer_a, answer_b=answer_b),
            self._model, max_tokens=4, metadata={"judge_prompt": "pairwise@v1"},
        )  # fmt: skip
        return parse_pairwise_verdict(answer)
