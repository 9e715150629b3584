"""``llmops dlq list|show|replay TOPIC``: dead letters with their reasons, and replaying them."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.table import Table

from llmops.cli.client import console, err
from llmops.core.dead_letters import DeadLetter, dead_letter_topic, list_dead_letters, parse_position, replay
from llmops.core.errors import DomainError
from llmops.core.settings import KafkaSettings

dlq_app = typer.Typer(
    help="Dead-lettered messages: list them with their reasons, show one, replay chosen ones after a fix.",
    no_args_is_help=True,
)

TopicArg = Annotated[str, typer.Argument(help="The topic (or its .dlq), e.g. llmops.feedback.submitted.v1.")]


def _run(coro: object) -> object:
    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except DomainError as exc:
        err.print(f"[red]{exc.status}[/]: {exc}", highlight=False)
        raise typer.Exit(1) from None
    except (OSError, ConnectionError) as exc:
        err.print(
            f"[red]cannot reach Kafka[/] at {KafkaSettings().bootstrap_servers}: {exc}", highlight=False
        )
        raise typer.Exit(1) from None


def _letters(topic: str) -> list[DeadLetter]:
    return _run(list_dead_letters(KafkaSettings(), topic))  # type: ignore[return-value]


@dlq_app.command("list")
def list_(topic: TopicArg) -> None:
    """The dead letters of TOPIC, oldest first, with why each failed."""
    letters = _letters(topic)
    if not letters:
        console.print(f"{dead_letter_topic(topic)} is empty")
        return
    table = Table("position", "from", "group", "attempts", "failed at", "error")
    for d in letters:
        failed = d.failed_at.strftime("%Y-%m-%d %H:%M:%S") if d.failed_at else "-"
        source = f"{d.original_partition}:{d.original_offset}"
        first_line = d.error.splitlines()[0] if d.error else d.error_type
        table.add_row(d.position, source, d.consumer_group, str(d.attempts), failed, first_line[:120])
    console.print(table)


@dlq_app.command()
def show(
    topic: TopicArg,
    position: Annotated[str, typer.Argument(help="partition:offset in the DLQ (from `llmops dlq list`).")],
) -> None:
    """One dead letter: where it came from, the whole error, its key and value."""
    wanted = parse_position(position)
    for d in _letters(topic):
        if (d.partition, d.offset) == wanted:
            console.print(f"position      {d.position} in {dead_letter_topic(topic)}", highlight=False)
            console.print(f"from          {d.original_topic} {d.original_partition}:{d.original_offset}")
            console.print(f"group         {d.consumer_group} (after {d.attempts} attempt(s))")
            console.print(f"failed at     {d.failed_at.isoformat() if d.failed_at else '-'}")
            console.print(f"error type    {d.error_type}")
            console.print(f"error         {d.error}", highlight=False)
            console.print(f"key           {d.key!r}", highlight=False)
            value = d.value.decode(errors="replace") if d.value is not None else "(none: a tombstone)"
            console.print(f"value         {value}", highlight=False, markup=False)
            return
    err.print(f"[red]NOT_FOUND[/]: no dead letter at {position} in {dead_letter_topic(topic)}")
    raise typer.Exit(1)


@dlq_app.command("replay")
def replay_(
    topic: TopicArg,
    positions: Annotated[list[str] | None, typer.Argument(help="partition:offset of each to replay.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Replay every dead letter of TOPIC.")] = False,
) -> None:
    """Publish the chosen dead letters back to their topic (after fixing what made them fail)."""
    if not positions and not all_:
        err.print(
            "[red]name the dead letters to replay[/] (partition:offset from `llmops dlq list`), or --all"
        )
        raise typer.Exit(2)
    replayed = _run(replay(KafkaSettings(), topic, None if all_ else positions))
    for d in replayed:  # type: ignore[attr-defined]
        console.print(f"replayed {d.position} to {d.original_topic}")
    console.print(f"{len(replayed)} replayed")  # type: ignore[arg-type]
