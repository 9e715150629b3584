"""The loop controller: from drift or falling feedback to a promoted, or rolled back, model.

It lives in monitoring, where the evidence is, and acts on the other services only through their
APIs: labeling's CreateDatasetVersion (a dataset from the model's feedback), ``training.requested``
(the fine-tune), training's ListJobs (has it finished, which registry version did it become),
and the registry (the challenger alias, the canary, promotion or rollback).

Each model with a policy (``LLMOPS_MONITORING_LOOP_POLICIES``) has at most one loop running. Every
step is a ``loop.stepped`` event, which monitoring also stores (``loop_steps``): the latest event of
a loop is where it stands, so a restarted controller picks the loop up where it was. Steps a person
must approve wait in ``awaiting_approval`` until ``ApproveLoopStep`` (``llmops loop approve``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from llmops.contracts.events import Event, LoopStepped, TrainingRequested
from llmops.contracts.rpc.labeling.v1 import labeling_pb2
from llmops.contracts.rpc.registry.v1 import registry_pb2
from llmops.contracts.rpc.training.v1 import training_pb2
from llmops.contracts.vocabulary import CHALLENGER_ALIAS, DEFAULT_ALIAS
from llmops.core.errors import FailedPrecondition, InvalidArgument, NotFound
from llmops.monitoring.loop.canary import REGISTERED, CanaryVerdict, analyse_canary, version_name
from llmops.monitoring.loop.judge import LiveJudge
from llmops.monitoring.loop.policy import LoopPolicy, LoopSettings
from llmops.monitoring.store.analytics import AnalyticsStore

log = logging.getLogger(__name__)

ENDED = frozenset({"promoted", "rolled_back", "failed", "stopped"})
CHAMPION, CHALLENGER = DEFAULT_ALIAS, CHALLENGER_ALIAS
# Answers a person or the caller can fix (the loop ends, saying why); anything else is retried.
_FINAL_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)

FEEDBACK_TRIGGER_SQL = f"""
SELECT count() AS rated, avg(f.score) AS mean
FROM
(
    SELECT request_id FROM inference_log_v
    WHERE {REGISTERED} = {{model:String}} AND error = ''
        AND occurred_at >= {{start:DateTime64(3, 'UTC')}} AND occurred_at < {{end:DateTime64(3, 'UTC')}}
) AS i
INNER JOIN
(
    SELECT request_id, avg(score) AS score FROM feedback_v
    WHERE occurred_at >= {{start:DateTime64(3, 'UTC')}}
    GROUP BY request_id
) AS f ON i.request_id = f.request_id
"""

DRIFT_TRIGGER_SQL = """
SELECT signal, statistic, value, threshold, model_version, arm, report_id, occurred_at
FROM drift_reports_v
WHERE model = {model:String} AND has({signals:Array(String)}, signal)
    AND occurred_at >= {start:DateTime64(3, 'UTC')} AND occurred_at < {end:DateTime64(3, 'UTC')}
ORDER BY occurred_at DESC
LIMIT 5
"""

LOOP_STEPS_SQL = """
SELECT loop_id, step, reason, occurred_at, trigger, dataset_version_id, training_request_key,
    training_job_id, champion_version, challenger_version, canary_share, next_step, actor, `values`,
    evidence
FROM loop_steps_v
WHERE model = {model:String}
    AND loop_id = (SELECT argMax(loop_id, occurred_at) FROM loop_steps_v WHERE model = {model:String})
ORDER BY occurred_at, event_id
"""

RECENT_STEPS_SQL = """
SELECT loop_id, step, reason, occurred_at, trigger, dataset_version_id, training_request_key,
    training_job_id, champion_version, challenger_version, canary_share, next_step, actor, `values`,
    evidence
FROM loop_steps_v
WHERE model = {model:String}
ORDER BY occurred_at DESC, event_id DESC
LIMIT {n:UInt32}
"""

_STEP_COLUMNS = (
    "loop_id", "step", "reason", "occurred_at", "trigger", "dataset_version_id", "training_request_key",
    "training_job_id", "champion_version", "challenger_version", "canary_share", "next_step", "actor",
    "values", "evidence",
)  # fmt: skip


@dataclasses.dataclass
class LoopState:
    """Where one loop stands: its latest step and what the steps so far refer to."""

    loop_id: str
    model: str
    step: str
    next_step: str = ""
    trigger: str = ""
    started_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    dataset_version_id: str = ""
    training_request_key: str = ""
    training_job_id: str = ""
    champion_version: int | None = None
    challenger_version: int | None = None
    canary_share: float | None = None
    canary_started_at: dt.datetime | None = None
    share_started_at: dt.datetime | None = None
    training_requested_at: dt.datetime | None = None
    approved: str = ""  # the next_step a person approved
    approved_by: str = ""
    analyses: int = 0
    last_analysis: float = 0.0  # monotonic

    @property
    def active(self) -> bool:
        return self.step not in ENDED

    def apply(self, event: LoopStepped) -> None:
        """Fold ``event`` (a later step of this loop) in."""
        self.step, self.next_step = event.step, event.next_step
        self.updated_at = event.occurred_at
        self.started_at = self.started_at or event.occurred_at
        for name in ("trigger", "dataset_version_id", "training_request_key", "training_job_id"):
            if getattr(event, name):
                setattr(self, name, getattr(event, name))
        for name in ("champion_version", "challenger_version", "canary_share"):
            if getattr(event, name) is not None:
                setattr(self, name, getattr(event, name))
        if event.step == "training_requested":
            self.training_requested_at = event.occurred_at
        if event.step == "canary_started":
            self.canary_started_at = self.share_started_at = event.occurred_at
        if event.step == "canary_stepped":
            self.share_started_at = event.occurred_at
        self.approved = event.next_step if event.step == "approved" else ""
        self.approved_by = event.actor if event.step == "approved" else ""


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def step_from_row(model: str, row: Any) -> LoopStepped:
    """A ``loop_steps_v`` row (in :data:`_STEP_COLUMNS` order) as the event it stores."""
    data = dict(zip(_STEP_COLUMNS, row, strict=True))
    data["occurred_at"] = _utc(data["occurred_at"])
    return LoopStepped(model=model, **data)


class _Final(Exception):
    """A step cannot go on: the loop ends with this reason."""


class LoopController:
    """Advances every model's loop; ``tick()`` is run every ``settings.interval_seconds``.

    ``registry``, ``labeling`` and ``training`` are the services' grpc.aio stubs (the runtime's
    channels add the API key and deadlines); ``publish`` is the event bus's.
    """

    def __init__(
        self,
        settings: LoopSettings,
        store: AnalyticsStore,
        publish: Callable[[Event], Awaitable[None]],
        registry: Any,
        labeling: Any,
        training: Any,
        *,
        judge: LiveJudge | None = None,
        clock: Callable[[], dt.datetime] = _utcnow,
    ) -> None:
        self.settings = settings
        self.judge = judge  # rates live answers for canaries whose policy names a judge
        self.store = store
        self._publish = publish
        self.registry, self.labeling, self.training = registry, labeling, training
        self._clock = clock
        self._states: dict[str, LoopState | None] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def policy(self, model: str) -> LoopPolicy:
        try:
            return self.settings.policies[model]
        except KeyError:
            known = ", ".join(sorted(self.settings.policies)) or "none"
            raise NotFound(
                f"model {model!r} has no loop policy (LLMOPS_MONITORING_LOOP_POLICIES; "
                f"models with one: {known})"
            ) from None

    def _lock(self, model: str) -> asyncio.Lock:
        return self._locks.setdefault(model, asyncio.Lock())

    # --- the periodic run ------------------------------------------------------------------------

    async def tick(self) -> None:
        """Advance each model's loop once; one model's failure does not hold the others up."""
        for model, policy in self.settings.policies.items():
            try:
                async with self._lock(model):
                    await self._advance(model, policy)
            except Exception:  # noqa: BLE001 - logged; the next tick tries again
                log.warning("loop of %s: step failed; trying again next round", model, exc_info=True)

    async def state(self, model: str) -> LoopState | None:
        """The model's latest loop (running or ended), recovered from ClickHouse on first use."""
        if model not in self._states:
            rows = await self.store.read(
                lambda c: c.query(LOOP_STEPS_SQL, parameters={"model": model}).result_rows
            )
            state = None
            for row in rows:
                event = step_from_row(model, row)
                state = state or LoopState(event.loop_id, model, event.step)
                state.apply(event)
            self._states[model] = state
        return self._states[model]

    async def _advance(self, model: str, policy: LoopPolicy) -> None:
        state = await self.state(model)
        if state is None or not state.active:
            trigger = await self._trigger(model, policy, state)
            if trigger is None:
                return
            kind, reason, values, evidence = trigger
            state = await self._begin(model, policy, kind, reason, values, evidence)
        await self._run(state, policy)

    async def _run(self, state: LoopState, policy: LoopPolicy) -> None:
        """Take the steps that need nobody's approval, until one must wait."""
        for _ in range(8):  # each pass takes one step; a step that waits returns
            if not state.active or state.step == "awaiting_approval":
                return
            action = state.next_step
            before = (state.step, state.updated_at)
            try:
                await self._act(action, state, policy)
            except _Final as final:
                await self._end(state, "stopped" if action in ("build_dataset", "evaluate") else "failed",
                                str(final))  # fmt: skip
                return
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in _FINAL_CODES:
                    raise
                await self._end(state, "failed", f"{action}: {exc.code().name}: {exc.details()}")
                return
            if (state.step, state.updated_at) == before:
                return  # waiting (training running, canary undecided)

    async def _act(self, action: str, state: LoopState, policy: LoopPolicy) -> None:
        if action in _GATED and _GATED[action] in policy.approval and state.approved != action:
            await self._emit(
                state, "awaiting_approval", f"{action.replace('_', ' ')} waits for a person's approval "
                f"(policy approval: {', '.join(policy.approval)}); run `llmops loop approve {state.model}`",
                next_step=action,
            )  # fmt: skip
            return
        steps: dict[str, Callable[[LoopState, LoopPolicy], Awaitable[None]]] = {
            "build_dataset": self._build_dataset,
            "request_training": self._request_training,
            "await_training": self._await_training,
            "evaluate": self._evaluate,
            "set_challenger": self._set_challenger,
            "start_canary": self._start_canary,
            "analyse_canary": self._analyse_canary,
            "promote": self._promote,
        }
        if action not in steps:
            raise _Final(f"unknown next step {action!r}")
        await steps[action](state, policy)

    # --- triggers --------------------------------------------------------------------------------

    async def _trigger(
        self, model: str, policy: LoopPolicy, last: LoopState | None
    ) -> tuple[str, str, dict[str, float], dict[str, str]] | None:
        now = self._clock()
        start = now - dt.timedelta(seconds=policy.feedback_window_seconds)
        if last is not None and last.updated_at is not None:
            if (now - last.updated_at).total_seconds() < policy.cooldown_seconds:
                return None
            start = max(start, last.updated_at)  # evidence from before the last loop ended is spent
        parameters = {"model": model, "start": start, "end": now}
        if policy.feedback_below is not None:
            rated, mean = (
                await self.store.read(
                    lambda c: c.query(FEEDBACK_TRIGGER_SQL, parameters=parameters).result_rows
                )
            )[0]
            if int(rated) >= policy.min_feedback and mean is not None and float(mean) < policy.feedback_below:
                return (
                    "feedback",
                    f"mean feedback of {model} was {float(mean):.3f} over {int(rated)} rated answers since "
                    f"{start:%Y-%m-%d %H:%M:%S} UTC, below the policy's {policy.feedback_below}",
                    {"feedback_mean": float(mean), "rated": float(rated), "threshold": policy.feedback_below},
                    {"query": FEEDBACK_TRIGGER_SQL.strip(), "window_start": start.isoformat(),
                     "window_end": now.isoformat()},
                )  # fmt: skip
        if policy.drift_signals:
            drift_parameters = {**parameters, "signals": list(policy.drift_signals)}
            rows = await self.store.read(
                lambda c: c.query(DRIFT_TRIGGER_SQL, parameters=drift_parameters).result_rows
            )
            if rows:
                signal, statistic, value, threshold, version, arm, report_id, _ = rows[0]
                group = f"{version} ({arm})" if version else model
                return (
                    "drift",
                    f"{signal} of {group} drifted: {statistic} {float(value):.3g} above "
                    f"{float(threshold):.3g} (drift report {report_id or 'unnamed'})",
                    {"value": float(value), "threshold": float(threshold),
                     "drifted_signals": float(len(rows))},
                    {"query": DRIFT_TRIGGER_SQL.strip(), "report_id": str(report_id), "signal": str(signal),
                     "window_start": start.isoformat(), "window_end": now.isoformat()},
                )  # fmt: skip
        return None

    async def _begin(
        self, model: str, policy: LoopPolicy, trigger: str, reason: str,
        values: dict[str, float], evidence: dict[str, str], actor: str = "",
    ) -> LoopState:  # fmt: skip
        loop_id = f"{model}-{self._clock():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
        state = LoopState(loop_id, model, "triggered", trigger=trigger)
        self._states[model] = state
        await self._emit(
            state, "triggered", reason, next_step="build_dataset", trigger=trigger, values=values,
            evidence=evidence, actor=actor,
        )  # fmt: skip
        return state

    # --- the steps -------------------------------------------------------------------------------

    async def _build_dataset(self, state: LoopState, policy: LoopPolicy) -> None:
        """A dataset version from the model's feedback. Feedback reaches labeling on its own time (it
        finds each answer first), so a dataset with too few examples is built again every round for
        ``dataset_wait_seconds`` after the trigger before the loop gives up."""
        queues = policy.dataset_queues()
        waited = (self._clock() - (state.started_at or self._clock())).total_seconds()
        try:
            version = await self.labeling.CreateDatasetVersion(
                labeling_pb2.CreateDatasetVersionRequest(
                    dataset=f"{state.model}-feedback",
                    queues=list(queues),
                    filter={"registered_model": state.model},
                    eval_fraction=policy.eval_fraction,
                    seed=0,
                    description=f"built by the feedback loop {state.loop_id} ({state.trigger})",
                )
            )
        except grpc.aio.AioRpcError as exc:
            # No labeled example at all yet: labeling answers INVALID_ARGUMENT saying so.
            if exc.code() != grpc.StatusCode.INVALID_ARGUMENT or waited > policy.dataset_wait_seconds:
                raise
            log.info("loop %s: no dataset yet (%s); trying again", state.loop_id, exc.details())
            return
        counts = {"train_count": float(version.train_count), "eval_count": float(version.eval_count)}
        if version.train_count < policy.min_examples:
            if waited <= policy.dataset_wait_seconds:
                log.info("loop %s: %d training examples so far, %d needed; trying again", state.loop_id,
                         version.train_count, policy.min_examples)  # fmt: skip
                return
            raise _Final(
                f"too few training examples from feedback: {version.train_count} in dataset version "
                f"{version.version_id[:12]} (queues {', '.join(queues)}) after {waited:.0f} s, the policy "
                f"needs {policy.min_examples}"
            )
        await self._emit(
            state, "dataset_built",
            f"dataset version {version.version_id[:12]}: {version.train_count} training and "
            f"{version.eval_count} evaluation examples from queues {', '.join(queues)}",
            next_step="request_training", dataset_version_id=version.version_id, values=counts,
            evidence={"dataset": version.dataset, "uri": version.uri},
        )  # fmt: skip

    async def _request_training(self, state: LoopState, policy: LoopPolicy) -> None:
        model = await self.registry.GetModel(registry_pb2.GetModelRequest(name=state.model))
        champion = model.aliases.get(CHAMPION)
        labels = {"loop_id": state.loop_id}
        if champion:
            version = await self.registry.GetVersion(
                registry_pb2.GetVersionRequest(model=state.model, version=champion)
            )
            if version.adapter:
                labels["champion_adapter_uri"] = version.artifact_uri
        key = f"{state.loop_id}/train"
        await self._publish(
            TrainingRequested(
                request_key=key,
                base_model=model.base_model,
                dataset_version_id=state.dataset_version_id,
                method=policy.method,
                model_name=state.model,
                hyperparameters=dict(policy.hyperparameters),
                resources=dict(policy.resources),
                reason=f"feedback loop {state.loop_id} ({state.trigger})",
                labels=labels,
            )
        )
        against = f"champion {state.model}/{champion}" if champion else f"the base model {model.base_model}"
        await self._emit(
            state, "training_requested",
            f"{policy.method} of {model.base_model} on dataset {state.dataset_version_id[:12]}; the judge "
            f"compares it with {against}",
            next_step="await_training", training_request_key=key, champion_version=champion or None,
        )  # fmt: skip

    async def _find_job(self, model: str, key: str) -> Any | None:
        token = ""
        while True:
            page = await self.training.ListJobs(
                training_pb2.ListJobsRequest(model_name=model, page_size=100, page_token=token)
            )
            for job in page.jobs:
                if job.idempotency_key == key:
                    return job
            token = page.next_page_token
            if not token:
                return None

    async def _await_training(self, state: LoopState, policy: LoopPolicy) -> None:
        job = await self._find_job(state.model, state.training_request_key)
        waited = (self._clock() - (state.training_requested_at or self._clock())).total_seconds()
        if job is None or job.state in (training_pb2.JOB_STATE_QUEUED, training_pb2.JOB_STATE_RUNNING):
            if waited > policy.training_timeout_seconds:
                raise _Final(f"training did not finish within {policy.training_timeout_seconds:.0f} s")
            return
        if job.state != training_pb2.JOB_STATE_SUCCEEDED:
            raise _Final(
                f"training job {job.job_id} ended {training_pb2.JobState.Name(job.state)}: {job.error}"
            )
        if job.registered_version <= 0:
            return  # the registry registers it from training.completed; the job learns its version
        await self._emit(
            state, "trained",
            f"training job {job.job_id} succeeded; the registry holds it as "
            f"{state.model}/{job.registered_version}",
            next_step="evaluate", training_job_id=job.job_id, challenger_version=job.registered_version,
            values={k: float(v) for k, v in job.metrics.items()},
        )  # fmt: skip

    async def _evaluate(self, state: LoopState, policy: LoopPolicy) -> None:
        version = await self.registry.GetVersion(
            registry_pb2.GetVersionRequest(model=state.model, version=state.challenger_version or 0)
        )
        metrics = {k: float(v) for k, v in version.metrics.items()}
        against = (
            f"champion {state.model}/{state.champion_version}" if state.champion_version else "the base model"
        )
        # The registry judges its own gate (the check Promote makes), before the challenger gets traffic.
        gate = await self.registry.CheckGate(
            registry_pb2.CheckGateRequest(model=state.model, version=version.version)
        )
        if not gate.passed:
            raise _Final(f"{state.model}/{version.version} fails the model's gate: {gate.failures}")
        win_rate = metrics.get("judge_win_rate")
        if policy.min_judge_win_rate is not None:
            if win_rate is None:
                raise _Final(
                    f"{state.model}/{version.version} has no judge_win_rate: the judge did not compare it "
                    f"with {against} (is serving up for training's judge?)"
                )
            if win_rate < policy.min_judge_win_rate:
                raise _Final(
                    f"{state.model}/{version.version} lost to {against}: judge win rate {win_rate:.2f} "
                    f"below the policy's {policy.min_judge_win_rate}"
                )
        judged = f"judge win rate {win_rate:.2f} against {against}" if win_rate is not None else "no judge"
        await self._emit(
            state, "evaluated", f"{state.model}/{version.version} passes the gate; {judged}",
            next_step="set_challenger", values=metrics,
        )  # fmt: skip

    async def _set_challenger(self, state: LoopState, policy: LoopPolicy) -> None:
        await self.registry.SetAlias(
            registry_pb2.SetAliasRequest(
                model=state.model,
                alias=CHALLENGER,
                version=state.challenger_version or 0,
                actor=self.settings.actor,
                reason=f"feedback loop {state.loop_id}",
            )  # fmt: skip
        )
        await self._emit(
            state, "registered", f"{state.model}/{state.challenger_version} is the challenger",
            next_step="start_canary",
        )  # fmt: skip

    async def _set_share(self, state: LoopState, share: float, reason: str) -> Any:
        return await self.registry.SetCanary(
            registry_pb2.SetCanaryRequest(
                model=state.model,
                alias=CHAMPION,
                challenger_alias=CHALLENGER,
                share=share,
                actor=self.settings.actor,
                reason=reason,
            )  # fmt: skip
        )

    async def _start_canary(self, state: LoopState, policy: LoopPolicy) -> None:
        share = policy.canary.steps[0]
        canary = await self._set_share(state, share, f"feedback loop {state.loop_id}: canary starts")
        state.analyses, state.last_analysis = 0, 0.0
        await self._emit(
            state, "canary_started",
            f"{share:.0%} of {state.model}'s traffic goes to the challenger "
            f"{state.model}/{state.challenger_version}",
            next_step="analyse_canary", canary_share=share, champion_version=canary.champion_version or None,
        )  # fmt: skip

    async def _analyse_canary(self, state: LoopState, policy: LoopPolicy) -> None:
        loop = asyncio.get_running_loop()
        if state.last_analysis and loop.time() - state.last_analysis < policy.canary.interval_seconds:
            return
        state.last_analysis = loop.time()
        if state.champion_version is None or state.challenger_version is None:
            raise _Final("the canary has no champion version to compare with")
        share = state.canary_share or policy.canary.steps[0]
        now = self._clock()
        start = state.canary_started_at or now
        if policy.canary.judge is not None:
            if self.judge is None:
                raise _Final(
                    "the policy names a judge (canary.judge), but this controller has no judge client"
                )
            # Scores published now are stored within a batch interval: this analysis counts the
            # ones stored so far, the next one the rest.
            await self.judge.judge(
                state.model,
                [version_name(state.model, v) for v in (state.champion_version, state.challenger_version)],
                start, now, policy.canary.judge, state.loop_id,
            )  # fmt: skip
        verdict: CanaryVerdict = await self.store.read(
            lambda c: analyse_canary(
                c,
                state.model,
                state.champion_version or 0,
                state.challenger_version or 0,
                start,
                now,
                policy.canary,
                share_start=state.share_started_at,
                last_step=share >= policy.canary.steps[-1],
            )  # fmt: skip
        )
        state.analyses += 1
        log.info("canary of %s: %s (%s)", state.model, verdict.action, verdict.reason)
        if verdict.action == "rollback":
            await self._rollback(state, verdict.reason, verdict.values, verdict.evidence)
        elif verdict.action == "promote":
            if "promote" in policy.approval:
                await self._emit(
                    state, "awaiting_approval",
                    f"{verdict.reason}; promotion waits for a person's approval "
                    f"(`llmops loop approve {state.model}`)",
                    next_step="promote", values=verdict.values, evidence=verdict.evidence,
                )  # fmt: skip
            else:
                await self._promote(state, policy, verdict)
        elif verdict.action == "step":
            share = next(s for s in policy.canary.steps if s > share)
            await self._set_share(state, share, f"feedback loop {state.loop_id}: {verdict.reason}")
            await self._emit(
                state, "canary_stepped", f"{verdict.reason}; the challenger now gets {share:.0%}",
                next_step="analyse_canary", canary_share=share, values=verdict.values,
                evidence=verdict.evidence,
            )  # fmt: skip
        elif state.analyses >= policy.canary.max_analyses:
            await self._rollback(
                state, f"no verdict after {state.analyses} analyses: {verdict.reason}", verdict.values,
                verdict.evidence,
            )  # fmt: skip

    async def _promote(
        self, state: LoopState, policy: LoopPolicy, verdict: CanaryVerdict | None = None
    ) -> None:
        reason = verdict.reason if verdict else "approved"
        try:
            await self.registry.EndCanary(
                registry_pb2.EndCanaryRequest(
                    model=state.model,
                    alias=CHAMPION,
                    outcome=registry_pb2.CANARY_OUTCOME_PROMOTE,
                    actor=state.approved_by or self.settings.actor,
                    reason=f"feedback loop {state.loop_id}: {reason}",
                )  # fmt: skip
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.FAILED_PRECONDITION:
                raise
            await self._rollback(state, f"the registry refused the promotion: {exc.details()}")
            return
        await self._emit(
            state, "promoted",
            f"{state.model}/{state.challenger_version} is the champion: {reason}",
            values=verdict.values if verdict else {}, evidence=verdict.evidence if verdict else {},
            canary_share=1.0,
        )  # fmt: skip

    async def _rollback(
        self, state: LoopState, reason: str, values: dict[str, float] | None = None,
        evidence: dict[str, str] | None = None, actor: str = "",
    ) -> None:  # fmt: skip
        await self.registry.EndCanary(
            registry_pb2.EndCanaryRequest(
                model=state.model,
                alias=CHAMPION,
                outcome=registry_pb2.CANARY_OUTCOME_ROLLBACK,
                actor=actor or self.settings.actor,
                reason=f"feedback loop {state.loop_id}: {reason}",
            )  # fmt: skip
        )
        await self._emit(
            state, "rolled_back",
            f"{state.model}/{state.challenger_version} rolled back, the champion keeps all traffic: {reason}",
            values=values or {}, evidence=evidence or {}, canary_share=0.0, actor=actor,
        )  # fmt: skip

    async def _end(self, state: LoopState, step: str, reason: str, actor: str = "") -> None:
        await self._emit(state, step, reason, actor=actor)

    async def _emit(self, state: LoopState, step: str, reason: str, **fields: Any) -> LoopStepped:
        fields.setdefault("next_step", "")
        # Every row carries what the loop refers to so far: one row tells the whole lineage.
        for name in (
            "dataset_version_id", "training_request_key", "training_job_id", "champion_version",
            "challenger_version", "canary_share",
        ):  # fmt: skip
            if fields.get(name) in (None, ""):
                fields[name] = getattr(state, name)
        event = LoopStepped(
            loop_id=state.loop_id, model=state.model, step=step, reason=reason,
            trigger=fields.pop("trigger", state.trigger), **fields,
        )  # fmt: skip
        await self._publish(event)
        state.apply(event)
        log.info("loop %s of %s: %s: %s", state.loop_id, state.model, step, reason)
        return event

    # --- what people call --------------------------------------------------------------------------

    async def start(self, model: str, actor: str, reason: str) -> LoopState:
        """Start a loop now (``StartLoop``), as the policy would on drift or falling feedback."""
        policy = self.policy(model)
        async with self._lock(model):
            state = await self.state(model)
            if state is not None and state.active:
                raise FailedPrecondition(
                    f"loop {state.loop_id} of {model} is running ({state.step}); approve, reject or "
                    "let it end first"
                )
            state = await self._begin(
                model, policy, "manual", reason.strip() or f"started by {actor or 'a person'}", {}, {},
                actor=actor,
            )  # fmt: skip
            await self._run_now(state, policy)
            return state

    async def _run_now(self, state: LoopState, policy: LoopPolicy) -> None:
        """Take the next steps now for a person's call; a service that is away is retried by the tick."""
        try:
            await self._run(state, policy)
        except Exception:  # noqa: BLE001 - the step is recorded; the periodic run goes on from it
            log.warning("loop %s of %s: next step failed; the next round retries it", state.loop_id,
                        state.model, exc_info=True)  # fmt: skip

    async def approve(self, model: str, loop_id: str, actor: str, approve: bool, reason: str) -> LoopState:
        """A person approves (or rejects) the step the loop waits for."""
        policy = self.policy(model)
        if not actor.strip():
            raise InvalidArgument("actor must name who approves")
        async with self._lock(model):
            state = await self.state(model)
            if state is None or state.step != "awaiting_approval":
                where = "has no loop" if state is None else f"is at {state.step}"
                raise FailedPrecondition(f"{model}'s loop waits for no approval: it {where}")
            if loop_id and loop_id != state.loop_id:
                raise FailedPrecondition(f"{model}'s waiting loop is {state.loop_id}, not {loop_id}")
            said = f" ({reason.strip()})" if reason.strip() else ""
            if not approve:
                if state.canary_share:
                    await self._rollback(state, f"rejected by {actor}{said}", actor=actor)
                else:
                    await self._end(state, "stopped", f"{state.next_step} rejected by {actor}{said}", actor)
                return state
            await self._emit(
                state, "approved", f"{state.next_step.replace('_', ' ')} approved by {actor}{said}",
                next_step=state.next_step, actor=actor,
            )  # fmt: skip
            await self._run_now(state, policy)
            return state

    async def recent_steps(self, model: str, n: int) -> list[LoopStepped]:
        rows = await self.store.read(
            lambda c: c.query(RECENT_STEPS_SQL, parameters={"model": model, "n": n}).result_rows
        )
        return [step_from_row(model, row) for row in rows]


# Which approval point holds which action.
_GATED = {"build_dataset": "train", "start_canary": "canary"}
