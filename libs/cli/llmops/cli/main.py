"""``llmops``: run the platform locally and talk to its services."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import grpc
import typer
from rich.table import Table

from llmops.cli import (
    client,
    dlq_commands,
    loop_commands,
    registry_commands,
    report_commands,
    training_commands,
)
from llmops.cli.client import console, err
from llmops.cli.local import SERVICES, LocalPlatform, PlatformError
from llmops.core.settings import PlatformSettings

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)
models_app = typer.Typer(help="Packaged models.", no_args_is_help=True)
app.add_typer(models_app, name="models")


def _platform() -> LocalPlatform:
    settings = PlatformSettings()
    return LocalPlatform.at(settings.run_dir, settings.data_dir, settings.models_dir)


@app.command()
def up(
    only: Annotated[str, typer.Option(help="Comma-separated services to start (default: all).")] = "",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each service to be SERVING.")] = 300,
) -> None:
    """Start the local broker and the services on 127.0.0.1; wait until all are SERVING."""
    names = [n.strip() for n in only.split(",") if n.strip()] or list(SERVICES)
    unknown = sorted(set(names) - set(SERVICES))
    if unknown:
        err.print(f"[red]unknown service(s):[/] {', '.join(unknown)}; known: {', '.join(SERVICES)}")
        raise typer.Exit(2)
    platform = _platform()
    try:
        with console.status("starting the Kafka broker"):
            platform.start_broker()
        with console.status(f"starting {', '.join(names)} (the first start of serving loads vLLM: ~1 min)"):
            platform.start_services(names, timeout)
    except PlatformError as exc:
        err.print(f"[red]start-up failed:[/] {exc}")
        err.print("stopping what did start; logs are in", platform.log_dir)
        platform.down()
        raise typer.Exit(1) from None
    _print_status(platform)
    console.print(f"API key: {platform.run_dir / 'api-key'}   logs: {platform.log_dir}   stop: make down")


@app.command()
def down() -> None:
    """Stop the local services and broker by process id."""
    stopped = _platform().down()
    console.print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@app.command()
def status() -> None:
    """Show each local process and its health."""
    _print_status(_platform())


def _print_status(platform: LocalPlatform) -> None:
    table = Table("process", "pid", "health", "address")
    for name, (pid, health) in platform.status().items():
        colour = "green" if health in ("SERVING", "UP") else "red"
        address = platform.bootstrap_servers if name == "kafka" else platform.address(name)
        table.add_row(name, str(pid or "-"), f"[{colour}]{health}[/]", address)
    console.print(table)


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="One read-only statement (SELECT, WITH, SHOW, DESCRIBE...).")],
    max_rows: Annotated[int, typer.Option(help="Rows to fetch at most.")] = 100,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="name=value for {name:Type}.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines instead of a table.")] = False,
) -> None:
    """Run read-only SQL on the analytics store (through monitoring's Query) and print the result."""
    from llmops.contracts.rpc.monitoring.v1 import monitoring_pb2, monitoring_pb2_grpc
    from llmops.core.convert import query_rows

    parameters = {}
    for item in param or []:
        name, sep, value = item.partition("=")
        if not sep:
            err.print(f"[red]--param {item!r}[/] is not name=value")
            raise typer.Exit(2)
        parameters[name] = value
    with client.channel("monitoring") as channel:
        try:
            reply = monitoring_pb2_grpc.MonitoringServiceStub(channel).Query(
                monitoring_pb2.QueryRequest(sql=query, parameters=parameters, max_rows=max_rows),
                timeout=60,
            )
        except grpc.RpcError as exc:
            client.fail(exc)
    names = [c.name for c in reply.columns]
    rows = query_rows(reply)
    if as_json:
        for row in rows:
            sys.stdout.write(json.dumps(dict(zip(names, row, strict=True)), default=str) + "\n")
        return
    # Numbers travel as doubles; show integer columns as integers again.
    integral = [c.type.removeprefix("Nullable(").startswith(("Int", "UInt")) for c in reply.columns]
    table = Table(*names)
    for row in rows:
        table.add_row(*(_cell(v, is_int) for v, is_int in zip(row, integral, strict=True)))
    console.print(table)
    more = " (truncated: raise --max-rows)" if reply.truncated else ""
    console.print(f"{len(rows)} row(s) in {reply.elapsed_ms:.1f} ms{more}")


def _cell(value: object, is_int: bool) -> str:
    if value is None:
        return "NULL"
    if is_int and isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="The user's message (empty with --template).")] = "",
    model: Annotated[str, typer.Option(help="Model name or alias (default: the served default).")] = "",
    max_tokens: Annotated[int, typer.Option(help="0 = server default.")] = 0,
    temperature: Annotated[float | None, typer.Option(help="0 = greedy.")] = None,
    stream: Annotated[bool, typer.Option(help="Print tokens as they come.")] = True,
    collection: Annotated[str, typer.Option(help="Answer from this retrieval collection (RAG).")] = "",
    top_k: Annotated[int, typer.Option(help="Chunks to retrieve (0 = retrieval's default).")] = 0,
    template: Annotated[str, typer.Option(help="A registry prompt template: name, name@alias, name/N.")] = "",
    var: Annotated[list[str] | None, typer.Option(help="A template variable, NAME=VALUE (repeat).")] = None,
    user: Annotated[str, typer.Option(help="The end user (canary stickiness, the log).")] = "",
) -> None:
    """Generate an answer through serving (and log it to monitoring)."""
    from llmops.contracts.rpc.serving.v1 import serving_pb2, serving_pb2_grpc

    variables = {}
    for item in var or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            err.print(f"[red]--var[/] takes NAME=VALUE, got {item!r}")
            raise typer.Exit(2)
        variables[name] = value
    request = serving_pb2.GenerateRequest(
        model=model, prompt=prompt, max_tokens=max_tokens, template=template, variables=variables, user=user
    )
    if collection:
        request.retrieval.CopyFrom(serving_pb2.RetrievalOptions(collection=collection, top_k=top_k))
    if temperature is not None:
        request.temperature = temperature
    with client.channel("serving") as channel:
        stub = serving_pb2_grpc.ServingServiceStub(channel)
        try:
            if stream:
                last = first_with_citations = None
                for chunk in stub.GenerateStream(request, timeout=600):
                    if chunk.citations:
                        first_with_citations = chunk
                    sys.stdout.write(chunk.delta)
                    sys.stdout.flush()
                    last = chunk
                sys.stdout.write("\n")
                if first_with_citations is not None:
                    _print_citations(first_with_citations)
                if last is not None:
                    _print_usage(last)
            else:
                reply = stub.Generate(request, timeout=600)
                console.print(reply.text)
                _print_citations(reply)
                _print_usage(reply)
        except grpc.RpcError as exc:
            client.fail(exc)


def _print_usage(reply: object) -> None:
    r: Any = reply  # GenerateResponse or the last GenerateStreamResponse
    err.print(
        f"request_id={r.request_id} model={r.model} version={r.model_version} arm={r.arm or '-'} "
        f"finish={r.finish_reason} tokens={r.usage.prompt_tokens}+{r.usage.completion_tokens} "
        f"ttft={r.timing.time_to_first_token_ms:.0f}ms total={r.timing.total_ms:.0f}ms"
    )


def _print_citations(reply: object) -> None:
    r: Any = reply
    for c in r.citations:
        err.print(
            f"[{c.index}] {c.document_id} ({c.source or c.collection}) score={c.score:.3f} chunk={c.chunk_id}"
        )


@app.command()
def feedback(
    request_id: Annotated[str, typer.Argument(help="The request_id of the answer.")],
    score: Annotated[float | None, typer.Option(help="0..1")] = None,
    thumb: Annotated[str | None, typer.Option(help="up or down")] = None,
    comment: Annotated[str, typer.Option()] = "",
) -> None:
    """Submit feedback on an answer (through FeedbackService.Submit)."""
    from llmops.contracts.rpc.feedback.v1 import feedback_pb2, feedback_pb2_grpc

    request = feedback_pb2.SubmitFeedbackRequest(request_id=request_id, comment=comment)
    if score is not None:
        request.score = score
    if thumb is not None:
        if thumb not in ("up", "down"):
            err.print("[red]--thumb[/] must be up or down")
            raise typer.Exit(2)
        request.thumb = feedback_pb2.THUMB_UP if thumb == "up" else feedback_pb2.THUMB_DOWN
    with client.channel("feedback") as channel:
        try:
            reply = feedback_pb2_grpc.FeedbackServiceStub(channel).Submit(request)
        except grpc.RpcError as exc:
            client.fail(exc)
    console.print(f"accepted: feedback_id={reply.feedback_id} score={reply.score}")


@app.command()
def ingest(
    path: Annotated[
        Path, typer.Argument(help="A .jsonl, .csv or .parquet file, or a folder of .txt/.md/.html.")
    ],
    dataset: Annotated[str, typer.Option(help="The dataset the documents belong to.")],
    fmt: Annotated[str, typer.Option("--format", help="auto, jsonl, csv, parquet or text_folder.")] = "auto",
    text_field: Annotated[str, typer.Option(help="Field/column with the text.")] = "text",
    id_field: Annotated[str, typer.Option(help="Field/column with the document id.")] = "id",
) -> None:
    """Ingest documents (clean, redact PII, dedup) through the ingestion service, as one batch."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from llmops.contracts.rpc.ingestion.v1 import ingestion_pb2, ingestion_pb2_grpc
    from llmops.core.documents import ReadError, UnreadableSource, count_items, read_documents

    mime = {
        "text/html": ingestion_pb2.MIME_TYPE_TEXT_HTML,
        "text/markdown": ingestion_pb2.MIME_TYPE_TEXT_MARKDOWN,
    }
    try:
        total = count_items(path, fmt) if path.exists() else None
        items = read_documents(path, fmt, text_field, id_field)
        first = next(items, None)
    except UnreadableSource as exc:
        err.print(f"[red]cannot read {path}:[/] {exc}")
        raise typer.Exit(2) from None

    progress = Progress(
        TextColumn("ingesting"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err
    )

    def requests():  # noqa: ANN202 - a generator of IngestRequest
        yield ingestion_pb2.IngestRequest(
            header=ingestion_pb2.IngestHeader(dataset=dataset, source_description=str(path))
        )
        task = progress.add_task("read", total=total)
        stream = items if first is None else _chain(first, items)
        for item in stream:
            if isinstance(item, ReadError):
                error = ingestion_pb2.ItemError(
                    position=item.position, source=item.source, reason=item.reason
                )
                yield ingestion_pb2.IngestRequest(read_error=error)
            else:
                yield ingestion_pb2.IngestRequest(
                    document=ingestion_pb2.Document(
                        id=item.doc_id,
                        text=item.text,
                        source_uri=item.source,
                        mime_type=mime.get(item.mime_type, ingestion_pb2.MIME_TYPE_TEXT_PLAIN),
                        metadata=item.metadata,
                        position=item.position,
                    )
                )
            progress.advance(task)

    with client.channel("ingestion") as channel:
        stub = ingestion_pb2_grpc.IngestionServiceStub(channel)
        try:
            with progress:
                reply = stub.Ingest(requests(), timeout=3600)
            info = stub.GetBatch(ingestion_pb2.GetBatchRequest(batch_id=reply.batch_id))
        except grpc.RpcError as exc:
            client.fail(exc)
    state = ingestion_pb2.BatchState.Name(info.state).removeprefix("BATCH_STATE_")
    console.print(f"batch {info.batch_id}: {state}, snapshot {info.snapshot_id or '-'}")
    counts = Table("step", "count")
    for field_name in (
        "received",
        "normalised",
        "html_stripped",
        "dropped_quality",
        "pii_redacted",
        "dropped_exact_dup",
        "dropped_near_dup",
        "kept",
        "errors",
    ):
        counts.add_row(field_name, str(getattr(info.counts, field_name)))
    for pii_type, n in sorted(info.counts.pii_redacted_by_type.items()):
        counts.add_row(f"  pii {pii_type}", str(n))
    console.print(counts)
    for error in info.errors[:20]:
        err.print(f"[yellow]item {error.position}[/] ({error.source}): {error.reason}")
    if len(info.errors) > 20:
        err.print(f"... and {len(info.errors) - 20} more (GetBatch lists them)")
    if info.state != ingestion_pb2.BATCH_STATE_SUCCEEDED:
        raise typer.Exit(1)


def _chain(first, rest):  # noqa: ANN001, ANN202
    yield first
    yield from rest


@models_app.command("prepare")
def models_prepare() -> None:
    """Make the packaged models ready (converts SmolLM2 to safetensors once)."""
    from llmops.core.model_assets import ModelAssetError, prepare_all

    try:
        with console.status("preparing packaged models (first time: about a minute)"):
            paths = prepare_all(PlatformSettings().models_dir)
    except ModelAssetError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None
    for name, path in paths.items():
        console.print(f"{name}: {path}")


@app.command()
def asyncapi(
    output: Annotated[Path | None, typer.Option("-o", help="Write here instead of stdout.")] = None,
    check: Annotated[bool, typer.Option(help="Fail if OUTPUT differs from the models.")] = False,
) -> None:
    """Write the AsyncAPI document of every event topic."""
    from llmops.cli.asyncapi import render

    text = render()
    if check:
        if output is None or not output.exists() or output.read_text() != text:
            err.print(f"[red]{output} is stale:[/] run `make asyncapi` and commit it")
            raise typer.Exit(1)
        console.print(f"{output} is up to date")
    elif output is None:
        sys.stdout.write(text)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
        console.print(f"wrote {output}")


# Model work (datasets -> training -> registry) lives in its own modules; listed after the above.
app.add_typer(training_commands.datasets_app, name="datasets")
app.command()(training_commands.train)
app.add_typer(training_commands.jobs_app, name="jobs")
app.add_typer(registry_commands.registry_app, name="registry")
app.add_typer(dlq_commands.dlq_app, name="dlq")
app.add_typer(loop_commands.loop_app, name="loop")
app.command()(report_commands.report)


def main() -> None:
    app()
