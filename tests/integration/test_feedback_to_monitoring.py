"""Feedback and monitoring as real processes on the real broker: what apps publish ends up in SQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import grpc
import pytest

from llmops.cli.local import BROKER, LocalPlatform
from llmops.contracts import topics
from llmops.contracts.rpc.feedback.v1 import feedback_pb2, feedback_pb2_grpc
from llmops.core.messaging import DLQ_ERROR, DLQ_OFFSET
from llmops.testing.platform import (
    as_json,
    auth,
    eventually,
    publish_raw,
    query_monitoring,
    read_topic,
    running_platform,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    with running_platform(tmp_path_factory.mktemp("fb"), ["feedback", "monitoring"]) as platform:
        yield platform


async def test_malformed_feedback_is_dead_lettered_and_the_next_valid_one_is_stored(
    platform: LocalPlatform,
) -> None:
    request_id = f"req-{uuid.uuid4()}"
    await publish_raw(
        platform.bootstrap_servers,
        topics.FEEDBACK_SUBMITTED,
        [
            b"this is not json",
            as_json({"request_id": request_id, "thumb": "down", "comment": "wrong answer"}),
        ],
        key=request_id.encode(),
    )
    rows = await eventually(
        lambda: query_monitoring(
            platform,
            "SELECT request_id, score, thumb, comment FROM feedback_v WHERE request_id = {r:String}",
            r=request_id,
        )
    )
    assert rows == [[request_id, 0.0, "down", "wrong answer"]]
    dead = await read_topic(platform.bootstrap_servers, topics.dlq(topics.FEEDBACK_SUBMITTED), 1)
    assert dead[0].value == b"this is not json"
    assert dict(dead[0].headers)[DLQ_OFFSET] == b"0"
    assert b"Invalid JSON" in dict(dead[0].headers)[DLQ_ERROR]


async def test_rule_breaking_feedback_is_rejected_with_reasons_not_stored(platform: LocalPlatform) -> None:
    request_id = f"req-{uuid.uuid4()}"
    await publish_raw(
        platform.bootstrap_servers,
        topics.FEEDBACK_SUBMITTED,
        [as_json({"request_id": request_id, "score": 7})],
    )
    rejected = await read_topic(platform.bootstrap_servers, topics.FEEDBACK_REJECTED, 1)
    reasons = [r for r in rejected if request_id.encode() in r.value]
    assert reasons and b"score must be between 0 and 1, got 7.0" in reasons[0].value
    assert query_monitoring(
        platform, "SELECT count() FROM feedback_v WHERE request_id = {r:String}", r=request_id
    ) == [[0.0]]


async def test_submit_over_grpc_is_stored_and_redelivery_does_not_duplicate(platform: LocalPlatform) -> None:
    request_id = f"req-{uuid.uuid4()}"
    with grpc.insecure_channel(platform.address("feedback")) as channel:
        stub = feedback_pb2_grpc.FeedbackServiceStub(channel)
        request = feedback_pb2.SubmitFeedbackRequest(request_id=request_id, score=0.75, feedback_id="fb-1")
        # The same feedback twice (a client retry): one row.
        for _ in range(2):
            reply = stub.Submit(request, metadata=auth(platform), timeout=10)
        assert reply.feedback_id == "fb-1" and reply.score == 0.75
        with pytest.raises(grpc.RpcError) as err:
            stub.Submit(
                feedback_pb2.SubmitFeedbackRequest(request_id=request_id), metadata=auth(platform), timeout=10
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "no signal" in err.value.details()
    rows = await eventually(
        lambda: query_monitoring(
            platform, "SELECT feedback_id, score FROM feedback_v WHERE request_id = {r:String}", r=request_id
        )
    )
    assert rows == [["fb-1", 0.75]]


async def test_feedback_submitted_while_the_broker_is_away_reaches_monitoring_once_it_is_back(
    platform: LocalPlatform,
) -> None:
    run = f"away-{uuid.uuid4().hex[:8]}-"
    request_ids = [f"{run}{i}" for i in range(5)]
    platform.stop(BROKER)
    await eventually(lambda: platform.pid(BROKER) is None, timeout=30)
    try:
        with grpc.insecure_channel(platform.address("feedback")) as channel:
            stub = feedback_pb2_grpc.FeedbackServiceStub(channel)
            for request_id in request_ids:
                # Accepted and kept in the feedback service's outbox: no error for the caller.
                reply = stub.Submit(
                    feedback_pb2.SubmitFeedbackRequest(request_id=request_id, thumb=feedback_pb2.THUMB_UP),
                    metadata=auth(platform),
                    timeout=10,
                )
                assert reply.feedback_id and reply.score == 1.0
    finally:
        platform.start_broker()

    def stored() -> list[str] | None:
        rows = query_monitoring(
            platform, "SELECT request_id FROM feedback_v WHERE startsWith(request_id, {p:String})", p=run
        )
        return sorted(r[0] for r in rows) if len(rows) >= len(request_ids) else None

    assert await eventually(stored, timeout=90) == request_ids
