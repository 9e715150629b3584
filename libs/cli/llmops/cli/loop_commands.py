"""``llmops loop ...``: where a model's feedback loop stands and why; approve or reject the step it
waits for; start one by hand (MonitoringService's loop RPCs)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import grpc
import typer
from rich.table import Table

from llmops.cli import client
from llmops.cli.client import console, err, when

if TYPE_CHECKING:
    from llmops.contracts.rpc.monitoring.v1 import monitoring_pb2

loop_app = typer.Typer(
    help="The feedback loop: drift or falling feedback -> dataset -> training -> canary -> promote or "
    "roll back.",
    no_args_is_help=True,
)


def _stub(channel: grpc.Channel):  # noqa: ANN202
    from llmops.contracts.rpc.monitoring.v1 import monitoring_pb2_grpc

    return monitoring_pb2_grpc.MonitoringServiceStub(channel)


def _figures(values: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in sorted(values.items()))


def status_text(status: monitoring_pb2.LoopStatus) -> list[str]:
    """The lines `llmops loop status` prints above its table of steps."""
    if not status.loop_id:
        return [f"{status.model}: no loop has run yet"]
    state = "running" if status.active else "ended"
    lines = [f"{status.model}: loop {status.loop_id} is {state} at [bold]{status.state}[/]"]
    if status.steps:
        latest = status.steps[0]
        lines.append(f"why: {latest.reason}")
        if latest.next_step and status.active:
            lines.append(f"next: {latest.next_step.replace('_', ' ')}")
    if status.awaiting_approval:
        lines.append(f"waiting for approval: `llmops loop approve {status.model}` (or `--reject`)")
    return lines


def _print(status: monitoring_pb2.LoopStatus, evidence: bool) -> None:
    for line in status_text(status):
        console.print(line, highlight=False)
    if not status.steps:
        return
    table = Table("when (UTC)", "step", "reason", "versions", "share", box=None, show_edge=False)
    for step in reversed(status.steps):
        versions = "/".join(
            str(v) if step.HasField(f) else "-" for f, v in
            (("champion_version", step.champion_version), ("challenger_version", step.challenger_version))
        )  # fmt: skip
        share = f"{step.canary_share:.0%}" if step.HasField("canary_share") else "-"
        table.add_row(when(step.occurred_at), step.step, step.reason, versions, share)
    console.print(table)
    if evidence:
        for step in status.steps:
            console.print(f"[bold]{step.step}[/] ({when(step.occurred_at)})", highlight=False)
            if step.values:
                console.print(f"  values: {_figures(dict(step.values))}", highlight=False)
            for key, text in sorted(step.evidence.items()):
                console.print(f"  {key}: {text}", highlight=False)
            ids = [
                f"{n} {getattr(step, n)}"
                for n in ("dataset_version_id", "training_job_id")
                if getattr(step, n)
            ]
            if ids:
                console.print("  " + ", ".join(ids), highlight=False)


@loop_app.command("status")
def status(
    model: Annotated[str, typer.Argument(help="The registered model's name.")],
    steps: Annotated[int, typer.Option(min=1, max=500, help="How many of the latest steps to show.")] = 20,
    evidence: Annotated[bool, typer.Option(help="Also print each step's figures, queries and ids.")] = False,
) -> None:
    """Where MODEL's loop is and why: its latest steps, newest last."""
    from llmops.contracts.rpc.monitoring.v1 import monitoring_pb2 as pb

    with client.channel("monitoring") as channel:
        try:
            found = _stub(channel).GetLoopStatus(pb.GetLoopStatusRequest(model=model, max_steps=steps))
        except grpc.RpcError as exc:
            client.fail(exc)
    _print(found, evidence)


@loop_app.command("approve")
def approve(
    model: Annotated[str, typer.Argument(help="The registered model's name.")],
    reject: Annotated[
        bool, typer.Option("--reject", help="Reject instead: the loop stops (rolls back).")
    ] = False,
    loop_id: Annotated[str, typer.Option("--loop", help="Only if this loop is the one waiting.")] = "",
    reason: Annotated[str, typer.Option(help="Recorded with the approval.")] = "",
) -> None:
    """Approve (or --reject) the step MODEL's loop waits for."""
    from llmops.contracts.rpc.monitoring.v1 import monitoring_pb2 as pb

    request = pb.ApproveLoopStepRequest(
        model=model, loop_id=loop_id, actor=client.actor(), approve=not reject, reason=reason
    )
    with client.channel("monitoring") as channel:
        try:
            found = _stub(channel).ApproveLoopStep(request, timeout=120)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
                err.print(f"[red]nothing to approve:[/] {exc.details()}", highlight=False)
                raise typer.Exit(1) from None
            client.fail(exc)
    _print(found, evidence=False)


@loop_app.command("start")
def start(
    model: Annotated[str, typer.Argument(help="The registered model's name.")],
    reason: Annotated[str, typer.Option(help="Why, recorded as the loop's trigger.")] = "",
) -> None:
    """Start MODEL's loop now, as its policy would on drift or falling feedback."""
    from llmops.contracts.rpc.monitoring.v1 import monitoring_pb2 as pb

    with client.channel("monitoring") as channel:
        try:
            found = _stub(channel).StartLoop(
                pb.StartLoopRequest(model=model, actor=client.actor(), reason=reason), timeout=120
            )
        except grpc.RpcError as exc:
            client.fail(exc)
    _print(found, evidence=False)
