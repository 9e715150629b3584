"""The loop controller and its canary analysis, on a real ClickHouse (chdb) with the platform's
migrations; the registry, labeling and training are in-process fakes that keep the state the real
services would (aliases, canary share, the gate, jobs by idempotency key).

What a user would notice: falling feedback starts a loop; it builds a dataset, requests training,
evaluates the adapter against the champion, canaries it, and promotes a better challenger or rolls
a worse one back; approvals hold the loop until a person says so; a restarted controller goes on
where the loop was; every step is a row in ClickHouse.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from llmops.contracts.events import (
    AnswerJudged,
    Event,
    FeedbackAccepted,
    InferenceLogged,
    LoopStepped,
    TrainingRequested,
)
from llmops.contracts.rpc.labeling.v1 import labeling_pb2
from llmops.contracts.rpc.registry.v1 import registry_pb2
from llmops.contracts.rpc.training.v1 import training_pb2
from llmops.core.errors import FailedPrecondition, NotFound
from llmops.monitoring.loop.canary import analyse_canary
from llmops.monitoring.loop.controller import LoopController
from llmops.monitoring.loop.judge import LiveJudge
from llmops.monitoring.loop.policy import CanaryPolicy, JudgePolicy, LoopPolicy, LoopSettings
from llmops.monitoring.store.analytics import AnalyticsStore

MODEL = "bot"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[AnalyticsStore]:
    s = AnalyticsStore(f"chdb://{tmp_path / 'analytics'}")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def answers(
    store: AnalyticsStore, version: int, scores: list[float | None], *, at: dt.datetime | None = None,
    latency_ms: float = 100.0, model: str = MODEL, error: str = "", completion: str = "a",
) -> None:  # fmt: skip
    """Answers of ``model/version`` (requested as ``model``), each rated with its score (None: unrated)."""
    at = at or dt.datetime.now(dt.UTC)
    logged, rated = [], []
    for score in scores:
        request_id = uuid.uuid4().hex
        logged.append(
            InferenceLogged(
                request_id=request_id,
                model=model,
                model_version=f"{model}/{version}",
                prompt="q",
                completion=completion,
                prompt_tokens=3,
                completion_tokens=5,
                latency_ms=latency_ms,
                time_to_first_token_ms=10.0,
                occurred_at=at,
                error=error,
                arm="challenger" if version > 1 else "champion",
            )  # fmt: skip
        )
        if score is not None:
            rated.append(
                FeedbackAccepted(
                    feedback_id=uuid.uuid4().hex, request_id=request_id, score=score, occurred_at=at
                )
            )
    await store.insert(InferenceLogged, logged)
    if rated:
        await store.insert(FeedbackAccepted, rated)


def thumbs(rng: np.random.Generator, n: int, p_up: float) -> list[float | None]:
    return [float(x) for x in (rng.random(n) < p_up)]


# --- canary analysis -------------------------------------------------------------------------------

POLICY = CanaryPolicy(steps=(0.2, 0.5), min_requests=40, min_feedback=40, alpha=0.05, latency_p95_slo_ms=500)


async def verdict(store: AnalyticsStore, *, last_step: bool = False, start: dt.datetime | None = None):  # noqa: ANN201
    now = dt.datetime.now(dt.UTC)
    start = start or now - dt.timedelta(hours=1)
    return await store.read(lambda c: analyse_canary(c, MODEL, 1, 2, start, now, POLICY, last_step=last_step))


async def test_a_better_challenger_is_promoted_with_its_evidence(store: AnalyticsStore) -> None:
    rng = np.random.default_rng(1)
    await answers(store, 1, thumbs(rng, 80, 0.45))
    await answers(store, 2, thumbs(rng, 80, 0.85))
    found = await verdict(store)
    print(found.reason)
    assert found.action == "promote", found
    assert found.values["challenger_feedback_mean"] > found.values["champion_feedback_mean"]
    assert found.values["p_value"] < 0.05 and found.values["challenger_requests"] == 80
    assert "mannWhitneyUTest" in found.evidence["feedback_test_query"]


async def test_a_worse_challenger_is_rolled_back(store: AnalyticsStore) -> None:
    rng = np.random.default_rng(2)
    await answers(store, 1, thumbs(rng, 80, 0.85))
    await answers(store, 2, thumbs(rng, 80, 0.4))
    found = await verdict(store)
    assert found.action == "rollback" and "worse" in found.reason, found


async def test_a_slow_challenger_is_rolled_back_whatever_its_feedback(store: AnalyticsStore) -> None:
    rng = np.random.default_rng(3)
    await answers(store, 1, thumbs(rng, 60, 0.5))
    await answers(store, 2, thumbs(rng, 60, 0.9), latency_ms=900.0)
    found = await verdict(store)
    assert found.action == "rollback" and "p95 latency 900 ms breaks the SLO of 500 ms" in found.reason


async def test_a_failing_challenger_is_rolled_back_on_its_error_rate(store: AnalyticsStore) -> None:
    policy = CanaryPolicy(steps=(0.5,), min_requests=40, min_feedback=40, error_rate_slo=0.05)
    rng = np.random.default_rng(4)
    await answers(store, 1, thumbs(rng, 60, 0.5))
    await answers(store, 2, thumbs(rng, 50, 0.5))
    await answers(store, 2, [None] * 10, error="INTERNAL")
    now = dt.datetime.now(dt.UTC)
    found = await store.read(
        lambda c: analyse_canary(c, MODEL, 1, 2, now - dt.timedelta(hours=1), now, policy)
    )
    assert found.action == "rollback" and "error rate 16.7%" in found.reason, found


async def test_no_verdict_without_enough_traffic_and_a_step_when_the_share_has_seen_enough(
    store: AnalyticsStore,
) -> None:
    rng = np.random.default_rng(5)
    await answers(store, 1, thumbs(rng, 30, 0.6))
    await answers(store, 2, thumbs(rng, 10, 0.6))
    found = await verdict(store)
    assert found.action == "wait" and "not enough traffic" in found.reason
    # Same quality on both arms, enough of it: no verdict on quality, so the share goes up ...
    await answers(store, 1, thumbs(rng, 60, 0.6))
    await answers(store, 2, thumbs(rng, 60, 0.6))
    found = await verdict(store)
    assert found.action == "step" and found.values["p_value"] >= 0.05, found
    # ... unless it is the last share, where the canary waits for a verdict.
    assert (await verdict(store, last_step=True)).action == "wait"


async def test_only_the_window_counts(store: AnalyticsStore) -> None:
    rng = np.random.default_rng(6)
    old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)
    await answers(store, 1, thumbs(rng, 80, 0.9), at=old)
    await answers(store, 2, thumbs(rng, 80, 0.1), at=old)
    found = await verdict(store)
    assert found.action == "wait" and found.values["challenger_requests"] == 0


# --- the controller --------------------------------------------------------------------------------


def rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


class FakeRegistry:
    """The registry's state the loop touches: versions, aliases, the gate, one canary."""

    def __init__(self) -> None:
        self.versions: dict[int, registry_pb2.ModelVersion] = {
            1: registry_pb2.ModelVersion(model=MODEL, version=1, artifact_uri="file:///a/1", adapter=True)
        }
        self.aliases = {"champion": 1}
        self.gate: list[registry_pb2.GateRule] = []
        self.canary: registry_pb2.Canary | None = None
        self.calls: list[str] = []

    async def GetModel(self, request: Any) -> registry_pb2.Model:
        return registry_pb2.Model(name=MODEL, base_model="base", aliases=self.aliases, gate=self.gate)

    async def GetVersion(self, request: Any) -> registry_pb2.ModelVersion:
        if request.version not in self.versions:
            raise rpc_error(grpc.StatusCode.NOT_FOUND, f"no version {request.version}")
        return self.versions[request.version]

    async def CheckGate(self, request: Any) -> registry_pb2.GateCheck:
        # Answers as the registry's own check would for "<=" rules (the check is tested there).
        metrics = self.versions[request.version].metrics
        failed = [r for r in self.gate if not (r.metric in metrics and metrics[r.metric] <= r.threshold)]
        failures = "; ".join(
            f"{r.metric} = {metrics.get(r.metric)!r}, needs <= {r.threshold!r}" for r in failed
        )
        return registry_pb2.GateCheck(
            model=MODEL, version=request.version, passed=not failed, failures=failures,
            failed_metrics=[r.metric for r in failed],
        )  # fmt: skip

    async def SetAlias(self, request: Any) -> registry_pb2.AliasChange:
        self.calls.append(f"alias {request.alias}={request.version}")
        self.aliases[request.alias] = request.version
        return registry_pb2.AliasChange(model=MODEL, alias=request.alias, to_version=request.version)

    async def SetCanary(self, request: Any) -> registry_pb2.Canary:
        self.calls.append(f"canary {request.share}")
        self.canary = registry_pb2.Canary(
            model=MODEL, alias="champion", challenger_alias="challenger", share=request.share,
            champion_version=self.aliases["champion"], challenger_version=self.aliases["challenger"],
            active=True,
        )  # fmt: skip
        return self.canary

    async def EndCanary(self, request: Any) -> registry_pb2.Canary:
        outcome = registry_pb2.CanaryOutcome.Name(request.outcome)
        self.calls.append(f"end {outcome} by {request.actor}")
        if request.outcome == registry_pb2.CANARY_OUTCOME_PROMOTE:
            self.aliases["champion"] = self.aliases["challenger"]
        self.aliases.pop("challenger", None)
        return registry_pb2.Canary(model=MODEL, active=False, outcome=request.outcome)


class FakeLabeling:
    def __init__(self, train_count: int = 24) -> None:
        self.train_count = train_count
        self.requests: list[labeling_pb2.CreateDatasetVersionRequest] = []

    async def CreateDatasetVersion(self, request: Any) -> labeling_pb2.DatasetVersion:
        self.requests.append(request)
        return labeling_pb2.DatasetVersion(
            version_id="d" * 64, dataset=request.dataset, train_count=self.train_count, eval_count=6,
            uri="file:///datasets/d",
        )  # fmt: skip


class FakeTraining:
    """Jobs by idempotency key; the test moves them along as training would."""

    def __init__(self) -> None:
        self.jobs: dict[str, training_pb2.Job] = {}

    def submit(self, event: TrainingRequested) -> None:
        self.jobs[event.request_key] = training_pb2.Job(
            job_id=f"job-{len(self.jobs) + 1}", idempotency_key=event.request_key,
            state=training_pb2.JOB_STATE_RUNNING,
        )  # fmt: skip

    def finish(self, registry: FakeRegistry, win_rate: float) -> int:
        (key,) = self.jobs
        version = max(registry.versions) + 1
        registry.versions[version] = registry_pb2.ModelVersion(
            model=MODEL, version=version, artifact_uri=f"file:///a/{version}", adapter=True,
            metrics={"judge_win_rate": win_rate, "eval_loss": 1.2},
        )  # fmt: skip
        job = self.jobs[key]
        job.state, job.registered_version = training_pb2.JOB_STATE_SUCCEEDED, version
        job.metrics["judge_win_rate"] = win_rate
        return version

    async def ListJobs(self, request: Any) -> training_pb2.ListJobsResponse:
        return training_pb2.ListJobsResponse(jobs=list(self.jobs.values()))


class FakeJudge:
    """Serving answering the judge's prompt: it rates an answer by its text ("good" 5, "poor" 2),
    gives no number for "???" and fails on "boom"."""

    def __init__(self) -> None:
        self.asked: list[str] = []  # the answers it was asked about

    async def ask(self, prompt: str, model: str, max_tokens: int = 16, metadata: Any = None) -> str:
        assert model == "judge" and prompt.startswith("Rate how well the response answers the request")
        answer = prompt.split("Response:\n", 1)[1].split("\n\n", 1)[0]
        self.asked.append(answer)
        if answer == "boom":
            raise rpc_error(grpc.StatusCode.UNAVAILABLE, "serving is restarting")
        return {"good": "5", "poor": "2 - it misses the point"}.get(answer, "I cannot rate this.")


class Platform:
    """A controller over the store and fakes; published events land where the services take them."""

    def __init__(
        self, store: AnalyticsStore, policy: LoopPolicy, train_count: int = 24, judge: FakeJudge | None = None
    ) -> None:
        self.judge = judge
        self.store = store
        self.policy = policy
        self.registry, self.labeling, self.training = (
            FakeRegistry(),
            FakeLabeling(train_count),
            FakeTraining(),
        )
        self.published: list[Event] = []
        self.controller = self.new_controller()

    def new_controller(self) -> LoopController:
        settings = LoopSettings(policies={MODEL: self.policy}, interval_seconds=1)
        judge = LiveJudge(self.store, self.judge, self.publish) if self.judge else None
        return LoopController(
            settings, self.store, self.publish, self.registry, self.labeling, self.training, judge=judge
        )

    async def publish(self, event: Event) -> None:
        self.published.append(event)
        if isinstance(event, LoopStepped | AnswerJudged):  # monitoring's own consumers store them
            await self.store.insert(type(event), [event])
        if isinstance(event, TrainingRequested):
            self.training.submit(event)

    def steps(self) -> list[str]:
        return [e.step for e in self.published if isinstance(e, LoopStepped)]

    def last_step(self) -> LoopStepped:
        return [e for e in self.published if isinstance(e, LoopStepped)][-1]


def policy(**overrides: Any) -> LoopPolicy:
    canary = CanaryPolicy(
        steps=(0.25, 0.5), interval_seconds=0.01, min_requests=40, min_feedback=40, alpha=0.05
    )
    fields: dict[str, Any] = {
        "feedback_below": 0.5, "min_feedback": 20, "drift_signals": (), "cooldown_seconds": 0,
        "canary": canary,
    }  # fmt: skip
    return LoopPolicy(**{**fields, **overrides})


async def run_to_canary(p: Platform, rng: np.random.Generator) -> int:
    """Falling feedback on the champion, then training finishes: the canary starts."""
    await answers(p.store, 1, thumbs(rng, 30, 0.2))
    await p.controller.tick()
    assert p.steps() == ["triggered", "dataset_built", "training_requested"]
    await p.controller.tick()  # training still running: nothing new
    assert p.steps()[-1] == "training_requested"
    return p.training.finish(p.registry, win_rate=0.7)


async def test_falling_feedback_runs_the_loop_to_a_promotion(store: AnalyticsStore) -> None:
    p = Platform(store, policy())
    rng = np.random.default_rng(10)
    version = await run_to_canary(p, rng)
    (request,) = p.labeling.requests
    assert list(request.queues) == ["feedback-review"] and dict(request.filter) == {"registered_model": MODEL}
    (training,) = [e for e in p.published if isinstance(e, TrainingRequested)]
    # The judge compares the adapter with the registry's real champion, not the base model.
    assert (
        training.labels["champion_adapter_uri"] == "file:///a/1" and training.dataset_version_id == "d" * 64
    )
    await p.controller.tick()
    assert p.steps()[3:] == ["trained", "evaluated", "registered", "canary_started"]
    assert p.registry.calls == [f"alias challenger={version}", "canary 0.25"]
    # The challenger answers better over the same window: first the share steps up, then promotion.
    await answers(store, 1, thumbs(rng, 60, 0.5))
    await answers(store, 2, thumbs(rng, 60, 0.55))
    await p.controller.tick()
    assert p.steps()[-1] == "canary_stepped" and p.registry.canary.share == 0.5
    await answers(store, 1, thumbs(rng, 80, 0.45))
    await answers(store, 2, thumbs(rng, 80, 0.9))
    await p.controller.tick()
    assert p.steps()[-1] == "promoted", p.published[-1]
    assert p.registry.aliases == {"champion": version}
    assert p.registry.calls[-1] == "end CANARY_OUTCOME_PROMOTE by loop"
    last = p.published[-1]
    print(last.reason)
    assert last.values["challenger_feedback_mean"] > last.values["champion_feedback_mean"]
    # Every step is a row in ClickHouse, in order, with the ids that tie feedback to the deployment.
    rows = (await store.query(
        "SELECT step, dataset_version_id, training_job_id, challenger_version FROM loop_steps_v "
        "WHERE model = 'bot' ORDER BY occurred_at, event_id"
    )).rows  # fmt: skip
    assert [r[0] for r in rows] == p.steps()
    assert rows[-1][1:] == ["d" * 64, "job-1", version]


async def test_a_worse_challenger_is_rolled_back_and_the_champion_keeps_all_traffic(
    store: AnalyticsStore,
) -> None:
    p = Platform(store, policy())
    rng = np.random.default_rng(11)
    await run_to_canary(p, rng)
    await p.controller.tick()
    await answers(store, 1, thumbs(rng, 80, 0.8))
    await answers(store, 2, thumbs(rng, 80, 0.3))
    await p.controller.tick()
    assert p.steps()[-1] == "rolled_back" and "worse" in p.published[-1].reason
    assert p.registry.aliases == {"champion": 1}
    assert p.registry.calls[-1] == "end CANARY_OUTCOME_ROLLBACK by loop"


JUDGED = JudgePolicy(model="judge", sample=30, min_scores=20)


def judged_policy() -> LoopPolicy:
    canary = CanaryPolicy(
        steps=(0.25, 0.5), interval_seconds=0.01, min_requests=40, min_feedback=40, alpha=0.05, judge=JUDGED
    )
    return policy(canary=canary)


async def judge_rows(store: AnalyticsStore) -> list[list[Any]]:
    return (await store.query(
        "SELECT model_version, arm, score, rating, judge_answer, loop_id FROM judge_scores_v "
        "WHERE judge = 'judge' ORDER BY model_version, request_id"
    )).rows  # fmt: skip


async def test_the_judge_rates_a_sample_of_each_arm_and_a_better_judged_challenger_is_promoted(
    store: AnalyticsStore,
) -> None:
    judge = FakeJudge()
    p = Platform(store, judged_policy(), judge=judge)
    rng = np.random.default_rng(21)
    version = await run_to_canary(p, rng)
    await p.controller.tick()
    assert p.steps()[-1] == "canary_started"
    # The users rate both arms alike; the judge finds the challenger's answers better.
    await answers(store, 1, thumbs(rng, 60, 0.6), completion="poor")
    await answers(store, 2, thumbs(rng, 60, 0.6), completion="good")
    await p.controller.tick()
    last = p.last_step()
    print(last.reason)
    assert p.steps()[-1] == "promoted", last
    assert p.registry.aliases == {"champion": version}
    assert "judge score 1.000 (30 judged) against the champion's 0.250 (30 judged)" in last.reason
    assert last.values["p_value"] >= 0.05  # the feedback's
    assert last.values["judge_p_value"] < 0.05 and last.values["challenger_judge_scores"] == 30
    assert last.evidence["judge"] == "judge" and "judge_scores_v" in last.evidence["judge_query"]
    # A sample of 30 answers per arm (of 60), each asked about once, every rating stored with the loop.
    assert sorted(judge.asked) == ["good"] * 30 + ["poor"] * 30
    rows = await judge_rows(store)
    assert len(rows) == 60
    assert {tuple(r[:5]) for r in rows} == {
        ("bot/1", "champion", 0.25, 2.0, "2 - it misses the point"),
        (f"bot/{version}", "challenger", 1.0, 5.0, "5"),
    }
    assert {r[5] for r in rows} == {last.loop_id}


async def test_a_challenger_the_judge_finds_worse_is_rolled_back_whatever_its_feedback(
    store: AnalyticsStore,
) -> None:
    p = Platform(store, judged_policy(), judge=FakeJudge())
    rng = np.random.default_rng(22)
    await run_to_canary(p, rng)
    await p.controller.tick()
    await answers(store, 1, thumbs(rng, 60, 0.5), completion="good")
    await answers(store, 2, thumbs(rng, 60, 0.9), completion="poor")
    await p.controller.tick()
    last = p.last_step()
    print(last.reason)
    assert p.steps()[-1] == "rolled_back" and "is worse: judge score 0.250" in last.reason
    assert p.registry.aliases == {"champion": 1}


async def test_the_judge_has_its_say_before_a_promotion(store: AnalyticsStore) -> None:
    # Feedback alone would promote; until the judge has rated min_scores answers per arm, the canary
    # only steps up.
    p = Platform(store, judged_policy(), judge=FakeJudge())
    rng = np.random.default_rng(23)
    await run_to_canary(p, rng)
    await p.controller.tick()
    await answers(store, 1, thumbs(rng, 80, 0.45), completion="???")
    await answers(store, 2, thumbs(rng, 80, 0.9), completion="???")
    await p.controller.tick()
    last = p.last_step()
    print(last.reason)
    assert p.steps()[-1] == "canary_stepped", last
    assert (
        "not enough judged answers for a verdict: 0 / 0 answers judged (champion / challenger), "
        "need 20 per arm" in last.reason
    )


async def test_the_judge_is_not_asked_twice_and_a_failed_call_is_asked_again(store: AnalyticsStore) -> None:
    judge = FakeJudge()
    live = LiveJudge(store, judge, Platform(store, judged_policy()).publish)
    await answers(store, 1, [None] * 3, completion="???")
    await answers(store, 1, [None] * 2, completion="boom")
    now = dt.datetime.now(dt.UTC)
    window = (now - dt.timedelta(hours=1), now + dt.timedelta(seconds=1))
    first = await live.judge(MODEL, ["bot/1"], *window, JUDGED, "loop-9")
    assert (first["bot/1"].scored, first["bot/1"].abstained, first["bot/1"].failed) == (0, 3, 2)
    # An answer the judge would not rate is stored without a score; a failed call is not stored.
    rows = await judge_rows(store)
    assert [(r[2], r[3], r[4]) for r in rows] == [(None, None, "I cannot rate this.")] * 3
    second = await live.judge(MODEL, ["bot/1"], *window, JUDGED, "loop-9")
    assert (second["bot/1"].abstained, second["bot/1"].failed) == (0, 2)
    assert sorted(judge.asked) == ["???"] * 3 + ["boom"] * 4


async def test_asked_answers_are_forgotten_once_their_ratings_had_time_to_be_stored(
    store: AnalyticsStore,
) -> None:
    judge = FakeJudge()
    lost: list[Event] = []

    async def publish_lost(event: Event) -> None:  # the ratings never reach judge_scores
        lost.append(event)

    now = [1000.0]
    live = LiveJudge(store, judge, publish_lost, clock=lambda: now[0])
    await answers(store, 1, [None] * 3, completion="???")
    moment = dt.datetime.now(dt.UTC)
    window = (moment - dt.timedelta(hours=1), moment + dt.timedelta(seconds=1))
    await live.judge(MODEL, ["bot/1"], *window, JUDGED)
    assert live.asked() == 3 and len(lost) == 3
    # Within the time a rating takes to be stored, the same answers are not asked about again.
    now[0] += 300
    await live.judge(MODEL, ["bot/1"], *window, JUDGED)
    assert len(judge.asked) == 3 and live.asked() == 3
    # Past it, the ids are dropped (the list the query carries stays small); ratings that were never
    # stored are asked for again.
    now[0] += 301
    assert live.asked() == 0
    await live.judge(MODEL, ["bot/1"], *window, JUDGED)
    assert len(judge.asked) == 6 and live.asked() == 3


async def test_a_challenger_that_loses_to_the_champion_gets_no_traffic(store: AnalyticsStore) -> None:
    p = Platform(store, policy(min_judge_win_rate=0.6))
    rng = np.random.default_rng(12)
    await answers(store, 1, thumbs(rng, 30, 0.2))
    await p.controller.tick()
    p.training.finish(p.registry, win_rate=0.4)
    await p.controller.tick()
    assert p.steps()[-2:] == ["trained", "stopped"]
    assert "lost to champion bot/1: judge win rate 0.40 below the policy's 0.6" in p.published[-1].reason
    assert p.registry.calls == []


async def test_the_gate_is_checked_before_any_traffic(store: AnalyticsStore) -> None:
    p = Platform(store, policy())
    p.registry.gate = [
        registry_pb2.GateRule(metric="eval_loss", comparator=registry_pb2.COMPARATOR_LTE, threshold=1.0)
    ]
    rng = np.random.default_rng(13)
    await answers(store, 1, thumbs(rng, 30, 0.2))
    await p.controller.tick()
    p.training.finish(p.registry, win_rate=0.9)
    await p.controller.tick()
    assert p.steps()[-1] == "stopped" and "eval_loss = 1.2, needs <= 1.0" in p.published[-1].reason


async def test_too_little_feedback_data_stops_before_training(store: AnalyticsStore) -> None:
    p = Platform(store, policy(min_examples=50, dataset_wait_seconds=0), train_count=12)
    await answers(store, 1, thumbs(np.random.default_rng(14), 30, 0.2))
    await p.controller.tick()
    assert p.steps() == ["triggered", "stopped"]
    assert "too few training examples from feedback: 12" in p.published[-1].reason
    assert not [e for e in p.published if isinstance(e, TrainingRequested)]


async def test_the_dataset_waits_for_feedback_still_on_its_way_to_labeling(store: AnalyticsStore) -> None:
    p = Platform(store, policy(min_examples=20, dataset_wait_seconds=300), train_count=12)
    await answers(store, 1, thumbs(np.random.default_rng(19), 30, 0.2))
    await p.controller.tick()
    await p.controller.tick()
    assert p.steps() == ["triggered"] and len(p.labeling.requests) == 2  # built again each round
    p.labeling.train_count = 24  # labeling has caught up with the corrections
    await p.controller.tick()
    assert p.steps() == ["triggered", "dataset_built", "training_requested"]


async def test_good_feedback_or_too_little_of_it_starts_nothing(store: AnalyticsStore) -> None:
    p = Platform(store, policy())
    rng = np.random.default_rng(15)
    await answers(store, 1, thumbs(rng, 40, 0.9))
    await p.controller.tick()
    await answers(store, 1, thumbs(rng, 5, 0.0), model="other")
    await p.controller.tick()
    assert p.published == []


async def test_drift_starts_a_loop_naming_the_report(store: AnalyticsStore) -> None:
    from llmops.contracts.events import DriftDetected

    p = Platform(store, policy(feedback_below=None, drift_signals=("prompt_embedding",)))
    now = dt.datetime.now(dt.UTC)
    await store.insert(DriftDetected, [DriftDetected(
        model=MODEL, signal="prompt_embedding", statistic="centroid_distance", value=0.4, threshold=0.01,
        window_start=now - dt.timedelta(hours=1), window_end=now, model_version="bot/1", arm="champion",
        p_value=0.001, alpha=0.01, report_id="r-7", occurred_at=now - dt.timedelta(seconds=2),
    )])  # fmt: skip
    await p.controller.tick()
    first = p.published[0]
    assert first.step == "triggered" and first.trigger == "drift" and first.evidence["report_id"] == "r-7"
    assert "prompt_embedding of bot/1 (champion) drifted" in first.reason


async def test_approvals_hold_the_loop_until_a_person_approves(store: AnalyticsStore) -> None:
    p = Platform(store, policy(approval=("canary", "promote")))
    rng = np.random.default_rng(16)
    version = await run_to_canary(p, rng)
    await p.controller.tick()
    assert p.steps()[-1] == "awaiting_approval" and p.published[-1].next_step == "start_canary"
    assert p.registry.calls == [f"alias challenger={version}"]
    await p.controller.tick()  # still waiting
    assert p.steps()[-1] == "awaiting_approval"
    with pytest.raises(FailedPrecondition, match="not loop-x"):
        await p.controller.approve(MODEL, "loop-x", "ann", True, "")
    state = await p.controller.approve(MODEL, "", "ann", True, "looks fine")
    assert p.steps()[-2:] == ["approved", "canary_started"] and state.canary_share == 0.25
    assert p.published[-2].actor == "ann"
    await answers(store, 1, thumbs(rng, 80, 0.4))
    await answers(store, 2, thumbs(rng, 80, 0.9))
    await p.controller.tick()
    assert p.steps()[-1] == "awaiting_approval" and p.published[-1].next_step == "promote"
    # A restarted controller picks the loop up from ClickHouse and takes the approval.
    p.controller = p.new_controller()
    await p.controller.approve(MODEL, "", "bob", True, "")
    assert p.steps()[-2:] == ["approved", "promoted"]
    assert p.registry.calls[-1] == "end CANARY_OUTCOME_PROMOTE by bob"
    with pytest.raises(FailedPrecondition, match="waits for no approval"):
        await p.controller.approve(MODEL, "", "bob", True, "")


async def test_a_rejected_canary_is_rolled_back(store: AnalyticsStore) -> None:
    p = Platform(store, policy(approval=("promote",)))
    rng = np.random.default_rng(17)
    await run_to_canary(p, rng)
    await p.controller.tick()
    await answers(store, 1, thumbs(rng, 80, 0.4))
    await answers(store, 2, thumbs(rng, 80, 0.9))
    await p.controller.tick()
    await p.controller.approve(MODEL, "", "ann", False, "not before the release")
    assert (
        p.steps()[-1] == "rolled_back"
        and "rejected by ann (not before the release)" in p.published[-1].reason
    )
    assert p.registry.aliases == {"champion": 1}


async def test_a_restarted_controller_goes_on_where_the_loop_was(store: AnalyticsStore) -> None:
    p = Platform(store, policy())
    rng = np.random.default_rng(18)
    await run_to_canary(p, rng)
    p.controller = p.new_controller()  # the process restarted while training ran
    await p.controller.tick()
    assert p.steps()[3:] == ["trained", "evaluated", "registered", "canary_started"]
    assert len([e for e in p.published if isinstance(e, TrainingRequested)]) == 1


async def test_manual_start_and_unknown_models(store: AnalyticsStore) -> None:
    p = Platform(store, policy())
    state = await p.controller.start(MODEL, "ann", "new documents")
    assert p.steps() == ["triggered", "dataset_built", "training_requested"] and state.trigger == "manual"
    assert p.published[0].reason == "new documents" and p.published[0].actor == "ann"
    with pytest.raises(FailedPrecondition, match="is running"):
        await p.controller.start(MODEL, "ann", "")
    with pytest.raises(NotFound, match="has no loop policy"):
        await p.controller.start("nope", "ann", "")


def test_policies_come_from_one_setting_and_bad_ones_name_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "LLMOPS_MONITORING_LOOP_POLICIES",
        '{"bot": {"feedback_below": 0.4, "canary": {"steps": [0.1, 0.5]}, "approval": ["promote"]}}',
    )
    settings = LoopSettings()
    assert settings.policies["bot"].canary.steps == (0.1, 0.5)
    assert settings.policies["bot"].approval == ("promote",)
    monkeypatch.setenv("LLMOPS_MONITORING_LOOP_POLICIES", '{"bot": {"canary": {"steps": [0.5, 0.1]}}}')
    with pytest.raises(ValueError, match="shares must rise strictly"):
        LoopSettings()
    monkeypatch.setenv("LLMOPS_MONITORING_LOOP_POLICIES", '{"bot": {"drift_signals": ["vibes"]}}')
    with pytest.raises(ValueError, match="unknown drift signal"):
        LoopSettings()
