"""The broker stopped for 30 s while serving answers requests and an app submits feedback: no caller
gets an error, and once the broker is back every answer's log and every accepted feedback reaches
ClickHouse, each once."""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import pytest

from llmops.cli.local import BROKER, LocalPlatform
from llmops.contracts.rpc.feedback.v1 import feedback_pb2, feedback_pb2_grpc
from llmops.contracts.rpc.serving.v1 import serving_pb2, serving_pb2_grpc
from llmops.testing.platform import auth, eventually, query_monitoring, running_platform

pytestmark = pytest.mark.e2e

OUTAGE_S = 30.0
# Once the broker is back, everything that waited reaches ClickHouse within this bound.
CATCH_UP_BOUND_S = 120.0


@pytest.fixture
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    # A short folder: vLLM's IPC socket paths under it must stay within 107 characters.
    root = tmp_path_factory.mktemp("outage")
    with running_platform(root, ["registry", "serving", "feedback", "monitoring"]) as platform:
        yield platform


def _ids_in(platform: LocalPlatform, view: str, request_ids: list[str]) -> list[tuple[str, int]]:
    rows = query_monitoring(
        platform,
        f"SELECT request_id, count() FROM {view} WHERE has(splitByChar(',', {{ids:String}}), request_id)"
        " GROUP BY request_id ORDER BY request_id",
        ids=",".join(request_ids),
    )
    return [(r[0], int(r[1])) for r in rows]


async def test_a_broker_outage_delays_logs_and_feedback_and_loses_none(platform: LocalPlatform) -> None:
    md = auth(platform)
    answered: list[str] = []
    with (
        grpc.insecure_channel(platform.address("serving")) as serving_channel,
        grpc.insecure_channel(platform.address("feedback")) as feedback_channel,
    ):
        serving = serving_pb2_grpc.ServingServiceStub(serving_channel)
        feedback = feedback_pb2_grpc.FeedbackServiceStub(feedback_channel)

        def answer_and_rate(i: int) -> None:
            reply = serving.Generate(
                serving_pb2.GenerateRequest(prompt=f"Count to {i % 5 + 2}.", max_tokens=6, temperature=0),
                metadata=md,
                timeout=60,
            )
            assert reply.request_id and reply.text
            accepted = feedback.Submit(
                feedback_pb2.SubmitFeedbackRequest(request_id=reply.request_id, score=0.5 + (i % 2) / 4),
                metadata=md,
                timeout=30,
            )
            assert accepted.feedback_id
            answered.append(reply.request_id)

        answer_and_rate(0)  # before the outage
        platform.stop(BROKER)
        await eventually(lambda: platform.pid(BROKER) is None, timeout=30)
        stopped_at = time.monotonic()
        i = 1
        # Every call made while the broker is away succeeds (an error would raise here).
        while time.monotonic() - stopped_at < OUTAGE_S:
            answer_and_rate(i)
            i += 1
        during = len(answered) - 1
        platform.start_broker()
        back_at = time.monotonic()
        answer_and_rate(i)  # after it
    print(f"{during} answers and feedbacks while the broker was away for {OUTAGE_S:.0f}s")
    assert during >= 5

    expected = [(r, 1) for r in sorted(answered)]

    def logs_complete() -> bool:
        return _ids_in(platform, "inference_log_v", answered) == expected

    def feedback_complete() -> bool:
        return _ids_in(platform, "feedback_v", answered) == expected

    await eventually(logs_complete, timeout=CATCH_UP_BOUND_S)
    await eventually(feedback_complete, timeout=CATCH_UP_BOUND_S)
    print(f"all {len(answered)} logs and feedbacks in ClickHouse {time.monotonic() - back_at:.1f}s after")
