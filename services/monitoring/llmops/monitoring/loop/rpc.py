"""The loop RPCs' messages: a model's loop status from the controller and loop_steps."""

from __future__ import annotations

from llmops.contracts.events import LoopStepped
from llmops.contracts.rpc.monitoring.v1 import monitoring_pb2
from llmops.core.errors import InvalidArgument
from llmops.monitoring.loop.controller import LoopController

DEFAULT_STEPS = 20
MAX_STEPS = 500


def step_message(event: LoopStepped) -> monitoring_pb2.LoopStep:
    message = monitoring_pb2.LoopStep(
        loop_id=event.loop_id, step=event.step, reason=event.reason, next_step=event.next_step,
        actor=event.actor, values=dict(event.values), evidence=dict(event.evidence),
        dataset_version_id=event.dataset_version_id, training_job_id=event.training_job_id,
    )  # fmt: skip
    message.occurred_at.FromDatetime(event.occurred_at)
    for name in ("champion_version", "challenger_version", "canary_share"):
        if getattr(event, name) is not None:
            setattr(message, name, getattr(event, name))
    return message


async def loop_status(
    controller: LoopController, model: str, max_steps: int = 0
) -> monitoring_pb2.LoopStatus:
    """Where ``model``'s loop stands: the controller's state, the latest stored steps and the policy."""
    if not model:
        raise InvalidArgument("model must name a registered model")
    if max_steps > MAX_STEPS:
        raise InvalidArgument(f"max_steps must be at most {MAX_STEPS}, got {max_steps}")
    policy = controller.settings.policies.get(model)
    state = await controller.state(model)
    steps = await controller.recent_steps(model, max_steps or DEFAULT_STEPS)
    status = monitoring_pb2.LoopStatus(
        model=model,
        steps=[step_message(s) for s in steps],
        policy_json=policy.model_dump_json() if policy else "",
    )
    if state is not None:
        status.loop_id, status.state, status.active = state.loop_id, state.step, state.active
        status.awaiting_approval = state.step == "awaiting_approval"
        # A step just published may not be stored yet: the controller's state is the newer.
        if steps and steps[0].loop_id == state.loop_id and steps[0].step != state.step:
            status.state = state.step
    return status
