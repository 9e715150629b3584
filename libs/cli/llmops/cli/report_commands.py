"""``llmops report``: fetch the report's rows through monitoring's Query RPC and write the HTML page."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any

import grpc
import typer

from llmops.cli import client
from llmops.cli.client import console, err


def report(
    model: Annotated[str, typer.Option(help="Only this registered model (default: every model).")] = "",
    since: Annotated[str, typer.Option(help="How far back: 30m, 12h, 7d, 2w.")] = "7d",
    output: Annotated[Path, typer.Option("-o", "--output", help="The HTML file to write.")] = Path(
        "report.html"
    ),
) -> None:
    """Write one self-contained HTML page of drift, quality, canary arms, alerts and the loop's steps."""
    from llmops.cli.report import render
    from llmops.cli.report_data import fetch, parse_since
    from llmops.contracts.rpc.monitoring.v1 import monitoring_pb2, monitoring_pb2_grpc
    from llmops.core.convert import query_dicts

    try:
        span = parse_since(since)
    except ValueError as exc:
        err.print(f"[red]--since:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    until = dt.datetime.now(dt.UTC)

    with client.channel("monitoring") as channel:
        stub = monitoring_pb2_grpc.MonitoringServiceStub(channel)

        def run_query(sql: str, parameters: dict[str, str]) -> list[dict[str, Any]]:
            reply = stub.Query(
                monitoring_pb2.QueryRequest(sql=sql, parameters=parameters, max_rows=10_000), timeout=60
            )
            if reply.truncated:
                # A chart missing its newest rows would mislead; say so instead of drawing it.
                err.print(
                    "[red]the report's data was truncated[/] (more than 10,000 rows for one section): "
                    "narrow it with --since or --model"
                )
                raise typer.Exit(1)
            return query_dicts(reply)

        try:
            with console.status("querying monitoring"):
                data = fetch(run_query, since=until - span, until=until, model=model)
        except grpc.RpcError as exc:
            client.fail(exc)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(render(data), encoding="utf-8")
    except OSError as exc:
        err.print(f"[red]cannot write {output}:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    console.print(
        f"wrote {output}: {len(data.drift)} drift result(s) ({data.drift_source}), "
        f"{len(data.quality)} hourly quality row(s), {len(data.canaries)} canary(ies), "
        f"{len(data.alerts)} alert(s), {len(data.loop_steps)} loop step(s)"
    )
