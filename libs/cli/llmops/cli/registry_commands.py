"""``llmops registry ...``: registered models, versions, gates, aliases, lineage, canaries and prompt
templates (RegistryService)."""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import grpc
import typer
from rich.table import Table

from llmops.cli import client
from llmops.cli.client import console, err, number, when
from llmops.contracts.vocabulary import CHALLENGER_ALIAS, DEFAULT_ALIAS

if TYPE_CHECKING:
    from llmops.contracts.rpc.registry.v1 import registry_pb2, registry_pb2_grpc

registry_app = typer.Typer(
    help="Registered models: versions, promotion gates, aliases (promote, roll back), lineage, canaries "
    "and prompt templates.",
    no_args_is_help=True,
)
canary_app = typer.Typer(
    help="Canaries: split an alias's traffic between its version and a challenger's, then promote or "
    "roll back.",
    no_args_is_help=True,
)
template_app = typer.Typer(
    help="Prompt templates: numbered versions (Jinja2 text with declared variables) and aliases.",
    no_args_is_help=True,
)
registry_app.add_typer(canary_app, name="canary")
registry_app.add_typer(template_app, name="template")

# Metric names as the registry accepts them (see llmops.registry.domain.gates).
METRIC_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:/-]*")
# Two-character operators first, so ">=" is not read as ">" followed by "=0.8".
_RULE = re.compile(r"^\s*(?P<metric>[^<>=\s]+)\s*(?P<op>>=|<=|==|>|<)\s*(?P<threshold>[^<>=\s]+)\s*$")
_SYMBOLS = {">=": "GTE", "<=": "LTE", ">": "GT", "<": "LT"}
GATE_HELP = 'A rule METRIC OP VALUE, OP one of >=, <=, >, <, == (repeat), e.g. "exact_match>=0.8".'


class GateRuleError(ValueError):
    """A gate rule that is not ``METRIC OP VALUE``; the message names the rule."""


# --- pure parts (no I/O) ------------------------------------------------------------------------


def parse_gate_rule(text: str) -> list[registry_pb2.GateRule]:
    """The proto rules of ``"metric>=0.8"`` (also ``<=``, ``>``, ``<``; spaces allowed).

    The registry has no equality comparator, so ``"metric==v"`` becomes the range ``>= v`` and ``<= v``.

    Raises:
        GateRuleError: not of that form, a bad metric name, or a threshold that is not a finite number.
    """
    from llmops.contracts.rpc.registry.v1 import registry_pb2 as pb

    match = _RULE.match(text)
    if match is None:
        raise GateRuleError(
            f"gate rule {text!r} is not METRIC OP VALUE with OP one of >=, <=, >, <, == "
            "(e.g. exact_match>=0.8)"
        )
    metric, op, raw = match["metric"], match["op"], match["threshold"]
    if not METRIC_NAME.fullmatch(metric):
        raise GateRuleError(
            f"gate rule {text!r}: {metric!r} is not a metric name (letters, digits and _ . : / - only)"
        )
    try:
        threshold = float(raw)
    except ValueError:
        raise GateRuleError(f"gate rule {text!r}: {raw!r} is not a number") from None
    if not math.isfinite(threshold):
        raise GateRuleError(f"gate rule {text!r}: the threshold must be a finite number")
    ops = [">=", "<="] if op == "==" else [op]
    return [
        pb.GateRule(
            metric=metric, comparator=pb.Comparator.Value(f"COMPARATOR_{_SYMBOLS[o]}"), threshold=threshold
        )
        for o in ops
    ]


def parse_gate(texts: Iterable[str]) -> list[registry_pb2.GateRule]:
    """The proto rules of several ``--gate`` texts, in order (see :func:`parse_gate_rule`)."""
    return [rule for text in texts for rule in parse_gate_rule(text)]


def rule_text(rule: registry_pb2.GateRule) -> str:
    """``exact_match >= 0.8``."""
    from llmops.contracts.rpc.registry.v1 import registry_pb2 as pb

    name = pb.Comparator.Name(rule.comparator).removeprefix("COMPARATOR_") if rule.comparator else "?"
    symbol = {v: k for k, v in _SYMBOLS.items()}.get(name, name)
    return f"{rule.metric} {symbol} {repr(rule.threshold).removesuffix('.0')}"


def gate_text(rules: Sequence[registry_pb2.GateRule]) -> str:
    return ", ".join(rule_text(r) for r in rules) or "none"


def version_selector(text: str) -> dict[str, int | str]:
    """GetVersionRequest fields for VERSION: a number, or else an alias such as ``champion``."""
    return {"version": int(text)} if text.isdigit() else {"alias": text}


def change_text(change: registry_pb2.AliasChange) -> str:
    """``bot@champion: 1 -> 2 (promote by alice: better eval loss)``."""
    before = str(change.from_version) if change.from_version else "none"
    after = str(change.to_version) if change.to_version else "none"
    why = f": {change.reason}" if change.reason else ""
    return f"{change.model}@{change.alias}: {before} -> {after} ({change.operation} by {change.actor}{why})"


def kind_name(kind: int) -> str:
    """``LINEAGE_NODE_KIND_TRAINING_JOB`` -> ``training_job``."""
    from llmops.contracts.rpc.registry.v1 import registry_pb2 as pb

    if kind not in pb.LineageNodeKind.values():
        return str(kind)
    return pb.LineageNodeKind.Name(kind).removeprefix("LINEAGE_NODE_KIND_").lower()


def lineage_rows(
    lineage: registry_pb2.Lineage,
) -> tuple[list[tuple[str, str, str, str]], list[tuple[str, str, str]]]:
    """Rows for the lineage tables: nodes (kind, id, created, details), upstream first; edges
    (from, relation, to)."""
    nodes = []
    for node in lineage.nodes:
        details = [node.uri] if node.uri else []
        details.extend(f"{k}={_attribute(k, v)}" for k, v in sorted(node.attributes.items()))
        nodes.append((kind_name(node.kind), node.id, when(node.created_at), " ".join(details)))
    edges = [(e.from_id, e.relation, e.to_id) for e in lineage.edges]
    return nodes, edges


def _attribute(key: str, value: str) -> str:
    # Metrics travel as full-precision strings; four digits are what a reader compares.
    if key.startswith("metric."):
        try:
            return number(float(value))
        except ValueError:
            return value
    return value


def version_row(v: registry_pb2.ModelVersion) -> tuple[str, ...]:
    """One line of ``llmops registry versions``."""
    metrics = " ".join(f"{k}={number(val)}" for k, val in sorted(v.metrics.items()))
    return (
        str(v.version),
        status_name(v.status),
        ", ".join(v.aliases) or "-",
        metrics or "-",
        v.training_job_id or "-",
        v.dataset_version_id or "-",
        when(v.created_at),
    )


def canary_text(canary: registry_pb2.Canary) -> str:
    """``bot@champion: 10% to challenger (version 3), 90% to champion (version 2)``, or how it ended."""
    from llmops.contracts.rpc.registry.v1 import registry_pb2 as pb

    if not canary.active:
        outcome = pb.CanaryOutcome.Name(canary.outcome).removeprefix("CANARY_OUTCOME_").lower()
        return (
            f"{canary.model}@{canary.alias}: canary against {canary.challenger_alias} ended ({outcome}); "
            f"{canary.alias} holds version {canary.champion_version or 'none'}"
        )
    return (
        f"{canary.model}@{canary.alias}: {_percent(canary.share)} to {canary.challenger_alias} (version "
        f"{canary.challenger_version or 'none'}), {_percent(1 - canary.share)} to {canary.alias} (version "
        f"{canary.champion_version or 'none'})"
    )


def _percent(share: float) -> str:
    # Four significant digits: a 0.1% canary must not read as 0%.
    return f"{share * 100:.4g}%"


def template_row(t: registry_pb2.PromptTemplate) -> tuple[str, ...]:
    """One line of ``llmops registry template list``."""
    return (
        t.name,
        str(t.version),
        ", ".join(t.aliases) or "-",
        ", ".join(t.variables) or "-",
        t.created_by or "-",
        when(t.created_at),
        t.description or "-",
    )


def template_selector(version: int | None, alias: str) -> dict[str, int | str]:
    """GetPromptTemplateRequest fields for --version or --alias (neither: the latest version)."""
    if version is not None:
        return {"version": version}
    return {"alias": alias} if alias else {}


def status_name(status: int) -> str:
    from llmops.contracts.rpc.registry.v1 import registry_pb2 as pb

    if status not in pb.VersionStatus.values():
        return str(status)
    return pb.VersionStatus.Name(status).removeprefix("VERSION_STATUS_")


# --- commands -----------------------------------------------------------------------------------


def _stub(channel: grpc.Channel) -> registry_pb2_grpc.RegistryServiceStub:
    from llmops.contracts.rpc.registry.v1 import registry_pb2_grpc

    return registry_pb2_grpc.RegistryServiceStub(channel)


def _gate_or_exit(texts: Iterable[str]) -> list[registry_pb2.GateRule]:
    try:
        return parse_gate(texts)
    except GateRuleError as exc:
        err.print(f"[red]bad --gate:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None


def _print_model(model: registry_pb2.Model) -> None:
    aliases = ", ".join(f"{a}={v}" for a, v in sorted(model.aliases.items())) or "none"
    console.print(
        f"model {model.name}: base {model.base_model or '-'}, latest version {model.latest_version or '-'}, "
        f"aliases {aliases}",
        highlight=False,
    )
    console.print(f"gate: {gate_text(model.gate)}", highlight=False)


@registry_app.command("models")
def models(limit: Annotated[int, typer.Option(min=1, help="Models to show at most.")] = 100) -> None:
    """List registered models with their aliases and gates."""
    from llmops.contracts.rpc.registry.v1 import registry_pb2 as pb

    with client.channel("registry") as channel:
        stub = _stub(channel)
        try:
            found, more = client.collect_pages(
                lambda size, token: stub.ListModels(pb.ListModelsRequest(page_size=size, page_token=token)),
                "models",
                limit,
            )
        except grpc.RpcError as exc:
            client.fail(exc)
    table = Table("model", "base model", "latest", "aliases", "gate", "updated")
    for m in found[:limit]:
        aliases = ", ".join(f"{a}={v}" for a, v in sorted(m.aliases.items())) or "-"
        table.add_row(
            m.name,
            m.base_model or "-",
            str(m.latest_version or "-"),
            aliases,
            gate_text(m.gate),
            when(m.updated_at),
        )
    console.print(table)
    console.print(f"{len(found[:limit])} model(s){' (more: raise --limit)' if more else ''}")


@registry_app.command("create-model")
def create_model(
    name: Annotated[str, typer.Argument(help="The model's name (training's --model).")],
    base_model: Annotated[str, typer.Option(help="The base model its adapters apply to.")],
    gate: Annotated[list[str] | None, typer.Option("--gate", help=GATE_HELP)] = None,
    description: Annotated[str, typer.Option()] = "",
) -> None:
    """Register a model, with the gate its versions must pass to be promoted."""
    from llmops.contracts.rpc.registry.v1 import registry_pb2 as pb

    rules = _gate_or_exit(gate or [])
    with client.channel("registry") as channel:
        try:
            model = _stub(channel).CreateModel(
                pb.CreateModelRequest(name=name, base_model=base_model, description=description, gate=rules),
            )
        except grpc.RpcError as exc:
            client.fail(exc)
    _print_model(model)


@registry_app.command("set-gate")
def set_gate(
    name: Annotated[str, typer.Argument(help="The model's name.")],
    gate: Annotated[list[str] | None, typer.Option("--gate", help=GATE_HELP)] = None,
    clear: Annotated[
        bool, typer.Option(help="Remove the gate: every READY version can be promoted.")
    ] = False,
) -> None:
    """Replace the promotion gate of a model (all --gate rules must pass)."""
    from llmops.contracts.rpc.registry.v1 import registry_pb2 as pb

    if not gate and not clear:
        err.print("[red]give at least one --gate rule[/], or --clear to remove the gate")
        raise typer.Exit(2)
    if gate and clear:
        err.print("[red]--gate and --clear exclude each other[/]")
        raise typer.Exit(2)
    rules = _gate_or_exit(gate or [])
    with client.channel("registry") as channel:
        try:
            model = _stub(channel).SetGate(
                pb.SetGateRequest(model=name, gate=rules, actor=client.actor()),
            )
        except grpc.RpcError as exc:
            client.fail(exc)
    _print_model(model)


@registry_app.command("versions")
def versions(
    name: Annotated[str, typer.Argument(help="The model's name.")],
    limit: Annotated[int, typer.Option(min=1, help="Versions to show at most, newest first.")] = 20,
) -> None:
    """List the versions of a model, newest first, with status, aliases and metrics."""
    from llmops.contracts.rpc.registry.v1 import registry_pb2 as pb

    with client.channel("registry") as channel:
        stub = _stub(channel)
        try:
            found, more = client.collect_pages(
                lambda size, token: stub.ListVersions(
                    pb.ListVersionsRequest(model=name, page_size=size, page_token=token)
                ),
                "versions",
                limit,
            )
        except grpc.RpcError as exc:
            client.fail(exc)
    table = Table("version", "status", "aliases", "metrics", "training job", "dataset version", "created")
    for v in found[:limit]:
        table.add_row(*version_row(v))
    console.print(table)
    console.print(f"{len(found[:limit])} version(s) of {name}{' (more: raise --limit)' if more else ''}")


@registry_app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="The model's name.")],
    version: Annotated[str, typer.Argument(help="A version number, or an alias such as champion.")],
) -> None:
    """Show one version: artifact, status, aliases, metrics and training parameters."""
    from llmops.contracts.rpc.registry.v1 import registry_pb2 as pb

    with client.channel("registry") as channel:
        try:
            v = _stub(channel).GetVersion(
                pb.GetVersionRequest(model=name, **version_selector(version)),  # type: ignore[arg-type]
            )
        except grpc.RpcError as exc:
            client.fail(exc)
    table = Table("field", "value", show_header=False)
    kind = (v.adapter_kind or "adapter") if v.adapter else "full weights"
    for field_name, value in (
        ("model", v.model),
        ("version", str(v.version)),
        ("status", status_name(v.status)),
        ("aliases", ", ".join(v.aliases) or "-"),
        ("artifact", v.artifact_uri),
        ("kind", kind),
        ("base model", v.base_model or "-"),
        ("training job", v.training_job_id or "-"),
        ("dataset version", v.dataset_version_id or "-"),
        ("created", when(v.created_at)),
        ("description", v.description or "-"),
    ):
        table.add_row(field_name, value)
    console.print(table)
    metrics = Table("metric", "value")
    for key, value in sorted(v.metrics.items()):
        metrics.add_row(key, number(value))
    if v.metrics:
        console.print(metrics)
    params = Table("parameter", "value")
    for key, text in sorted(v.params.items()):
        params.add_row(key, text)
    if v.params:
        console.print(params)


@registry_app.command("promote")
def promote(
    name: Annotated[str, typer.Argument(help="The model's name.")],
    version: Annotated[int, typer.Argument(min=1, help="The version to promote.")],
    alias: Annotated[str, typer.Option(help="The alias to move.")] = DEFAULT_ALIAS,
    reason: Annotated[str, typer.Option(help="Recorded in the alias history.")] = "",
) -> None:
    """Point ALIAS at VERSION if the version passes the model's gate."""
    from llmops.contracts.rpc.registry.v1 import registry_pb2 as pb

    request = pb.PromoteRequest(model=name, version=version, alias=alias, actor=client.actor(), reason=reason)
    with client.channel("registry") as channel:
        try:
            change = _stub(channel).Promote(request)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
                # The server's message names each failed metric with its value and threshold.
                err.print(f"[red]not promoted:[/] {exc.details()}", highlight=False)
                raise typer.Exit(1) from None
            client.fail(exc)
    console.print(f"promoted {change_text(change)}", highlight=False)


@registry_app.command("set-alias")
def set_alias(
    name: Annotated[str, typer.Argument(help="The model's name.")],
    version: Annotated[int, typer.Argument(min=1, help="The version the alias points at.")],
    alias: Annotated[str, typer.Option(help="The alias to move.")] = DEFAULT_ALIAS,
    reason: Annotated[str, typer.Option(help="Recorded in the alias history.")] = "",
) -> None:
    """Point ALIAS at VERSION without checking the gate (an operator's override; it is audited)."""
    from llmops.contracts.rpc.registry.v1 import registry_pb2 as pb

    request = pb.SetAliasRequest(
        model=name, version=version, alias=alias, actor=client.actor(), reason=reason
    )
    with client.channel("registry") as channel:
        try:
            change = _stub(channel).SetAlias(request)
        except grpc.RpcError as exc:
            client.fail(exc)
    console.print(f"set {change_text(change)}", highlight=False)


@registry_app.command("rollback")
def rollback(
    name: Annotated[str, typer.Argument(help="The model's name.")],
    alias: Annotated[str, typer.Option(help="The alias to move back.")] = DEFAULT_ALIAS,
    reason: Annotated[str, typer.Option(help="Recorded in the alias history.")] = "",
) -> None:
    """Move ALIAS back to the version it pointed at before (an undo; repeat to go further back)."""
    from llmops.contracts.rpc.registry.v1 import registry_pb2 as pb

    request = pb.RollbackRequest(model=name, alias=alias, actor=client.actor(), reason=reason)
    with client.channel("registry") as channel:
        try:
            change = _stub(channel).Rollback(request)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
                err.print(f"[red]not rolled back:[/] {exc.details()}", highlight=False)
                err.print(
                    f"to point {alias} at a version of your choice: llmops registry set-alias {name} VERSION"
                )
                raise typer.Exit(1) from None
            client.fail(exc)
    console.print(f"rolled back {change_text(change)}", highlight=False)


@registry_app.command("history")
def history(
    name: Annotated[str, typer.Argument(help="The model's name.")],
    alias: Annotated[str, typer.Option(help="Only this alias (default: every alias).")] = "",
    limit: Annotated[int, typer.Option(min=1, help="Changes to show at most, newest first.")] = 50,
) -> None:
    """List the alias changes of a model, newest first."""
    from llmops.contracts.rpc.registry.v1 import registry_pb2 as pb

    with client.channel("registry") as channel:
        stub = _stub(channel)
        try:
            changes, more = client.collect_pages(
                lambda size, token: stub.ListAliasHistory(
                    pb.ListAliasHistoryRequest(model=name, alias=alias, page_size=size, page_token=token)
                ),
                "changes",
                limit,
            )
        except grpc.RpcError as exc:
            client.fail(exc)
    table = Table("when", "alias", "operation", "from", "to", "actor", "reason")
    for c in changes[:limit]:
        table.add_row(
            when(c.changed_at),
            c.alias,
            c.operation,
            str(c.from_version or "-"),
            str(c.to_version or "-"),
            c.actor,
            c.reason,
        )
    console.print(table)
    console.print(f"{len(changes[:limit])} change(s){' (more: raise --limit)' if more else ''}")


@registry_app.command("lineage")
def lineage(
    name: Annotated[str, typer.Argument(help="The model's name.")],
    version: Annotated[int, typer.Argument(min=1, help="The version.")],
) -> None:
    """Show where a version came from: ingestion batches, dataset version, training job, deployments."""
    from llmops.contracts.rpc.registry.v1 import registry_pb2 as pb

    with client.channel("registry") as channel:
        try:
            graph = _stub(channel).GetLineage(pb.GetLineageRequest(model=name, version=version), timeout=30)
        except grpc.RpcError as exc:
            client.fail(exc)
    nodes, edges = lineage_rows(graph)
    table = Table("kind", "id", "created", "details", title=f"lineage of {name} version {version}")
    for row in nodes:
        table.add_row(*row)
    console.print(table)
    links = Table("from", "relation", "to")
    for row in edges:
        links.add_row(*row)
    console.print(links)


# --- canaries -----------------------------------------------------------------------------------


@canary_app.command("set")
def canary_set(
    name: Annotated[str, typer.Argument(help="The model's name.")],
    share: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of the alias's traffic the challenger gets (0-1).")
    ],
    alias: Annotated[str, typer.Option(help="The alias requests name; its version is the champion.")] = (
        DEFAULT_ALIAS
    ),
    challenger: Annotated[str, typer.Option(help="The alias whose version is the challenger.")] = (
        CHALLENGER_ALIAS
    ),
    reason: Annotated[str, typer.Option(help="Recorded with the canary.")] = "",
) -> None:
    """Start a canary on ALIAS (or change its share): SHARE of its requests go to the challenger."""
    from llmops.contracts.rpc.registry.v1 import registry_pb2 as pb

    request = pb.SetCanaryRequest(
        model=name, alias=alias, challenger_alias=challenger, share=share, actor=client.actor(), reason=reason
    )
    with client.channel("registry") as channel:
        try:
            canary = _stub(channel).SetCanary(request)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
                err.print(f"[red]canary not set:[/] {exc.details()}", highlight=False)
                raise typer.Exit(1) from None
            client.fail(exc)
    console.print(canary_text(canary), highlight=False)


@canary_app.command("get")
def canary_get(
    name: Annotated[str, typer.Argument(help="The model's name.")],
    alias: Annotated[str, typer.Option(help="The alias the canary runs on.")] = DEFAULT_ALIAS,
) -> None:
    """Show the canary on ALIAS: the share, both versions, who set it and why."""
    from llmops.contracts.rpc.registry.v1 import registry_pb2 as pb

    with client.channel("registry") as channel:
        try:
            canary = _stub(channel).GetCanary(pb.GetCanaryRequest(model=name, alias=alias))
        except grpc.RpcError as exc:
            client.fail(exc)
    console.print(canary_text(canary), highlight=False)
    why = f": {canary.reason}" if canary.reason else ""
    console.print(f"set {when(canary.updated_at)} by {canary.actor or '-'}{why}", highlight=False)


@canary_app.command("end")
def canary_end(
    name: Annotated[str, typer.Argument(help="The model's name.")],
    promote: Annotated[
        bool, typer.Option("--promote", help="Move ALIAS to the challenger's version (gated).")
    ] = False,
    rollback: Annotated[bool, typer.Option("--rollback", help="Keep ALIAS where it is.")] = False,
    alias: Annotated[str, typer.Option(help="The alias the canary runs on.")] = DEFAULT_ALIAS,
    reason: Annotated[str, typer.Option(help="Recorded in the alias history.")] = "",
) -> None:
    """End the canary on ALIAS: --promote or --rollback; either way the challenger alias is removed."""
    from llmops.contracts.rpc.registry.v1 import registry_pb2 as pb

    if promote == rollback:
        err.print("[red]give exactly one of --promote and --rollback[/]")
        raise typer.Exit(2)
    outcome = pb.CANARY_OUTCOME_PROMOTE if promote else pb.CANARY_OUTCOME_ROLLBACK
    request = pb.EndCanaryRequest(
        model=name, alias=alias, outcome=outcome, actor=client.actor(), reason=reason
    )
    with client.channel("registry") as channel:
        try:
            ended = _stub(channel).EndCanary(request)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
                # A failed gate names each metric; the canary runs on unchanged.
                err.print(f"[red]not ended:[/] {exc.details()}", highlight=False)
                err.print(
                    f"the canary still runs; to end it keeping {alias} where it is: "
                    f"llmops registry canary end {name} --rollback"
                )
                raise typer.Exit(1) from None
            client.fail(exc)
    console.print(canary_text(ended), highlight=False)


# --- prompt templates ---------------------------------------------------------------------------


def _print_template(t: registry_pb2.PromptTemplate) -> None:
    aliases = ", ".join(t.aliases) or "none"
    console.print(
        f"template {t.name} version {t.version}: variables {', '.join(t.variables) or 'none'}, "
        f"aliases {aliases}",
        highlight=False,
    )


@template_app.command("create")
def template_create(
    name: Annotated[str, typer.Argument(help="The template's name.")],
    file: Annotated[Path, typer.Option("--file", help="The Jinja2 text of the user turn ('-': stdin).")],
    system: Annotated[str, typer.Option(help="The system turn (Jinja2 text too).")] = "",
    var: Annotated[
        list[str] | None,
        typer.Option("--var", help="A variable the text uses (repeat); `documents` is filled by serving."),
    ] = None,
    description: Annotated[str, typer.Option()] = "",
) -> None:
    """Register the next version of template NAME from a file; every variable it uses must be a --var."""
    from llmops.contracts.rpc.registry.v1 import registry_pb2 as pb

    try:
        text = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        err.print(f"[red]cannot read --file {file}:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    request = pb.CreatePromptTemplateRequest(
        name=name,
        template=text,
        system=system,
        variables=var or [],
        description=description,
        actor=client.actor(),
    )
    with client.channel("registry") as channel:
        try:
            created = _stub(channel).CreatePromptTemplate(request)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                err.print(f"[red]template refused:[/] {exc.details()}", highlight=False)
                raise typer.Exit(1) from None
            client.fail(exc)
    _print_template(created)


@template_app.command("get")
def template_get(
    name: Annotated[str, typer.Argument(help="The template's name.")],
    version: Annotated[int | None, typer.Option(min=1, help="This version (default: the latest).")] = None,
    alias: Annotated[str, typer.Option(help="The version this alias points at.")] = "",
) -> None:
    """Show one version of a template (the latest, or --version N, or --alias A) with its text."""
    from llmops.contracts.rpc.registry.v1 import registry_pb2 as pb

    if version is not None and alias:
        err.print("[red]--version and --alias exclude each other[/]")
        raise typer.Exit(2)
    selector = template_selector(version, alias)
    with client.channel("registry") as channel:
        try:
            t = _stub(channel).GetPromptTemplate(
                pb.GetPromptTemplateRequest(name=name, **selector)  # type: ignore[arg-type]
            )
        except grpc.RpcError as exc:
            client.fail(exc)
    _print_template(t)
    console.print(
        f"created {when(t.created_at)} by {t.created_by or '-'}"
        + (f"; {t.description}" if t.description else ""),
        highlight=False,
    )
    if t.system:
        console.print("--- system ---", highlight=False)
        console.print(t.system, markup=False, highlight=False)
    console.print("--- template ---", highlight=False)
    console.print(t.template, markup=False, highlight=False)


@template_app.command("list")
def template_list(
    name: Annotated[
        str, typer.Argument(help="Only this template's versions (default: every template).")
    ] = "",
    limit: Annotated[int, typer.Option(min=1, help="Rows to show at most.")] = 50,
) -> None:
    """List the latest version of every template, or the versions of NAME, newest first."""
    from llmops.contracts.rpc.registry.v1 import registry_pb2 as pb

    with client.channel("registry") as channel:
        stub = _stub(channel)
        try:
            found, more = client.collect_pages(
                lambda size, token: stub.ListPromptTemplates(
                    pb.ListPromptTemplatesRequest(name=name, page_size=size, page_token=token)
                ),
                "templates",
                limit,
            )
        except grpc.RpcError as exc:
            client.fail(exc)
    table = Table("template", "version", "aliases", "variables", "created by", "created", "description")
    for t in found[:limit]:
        table.add_row(*template_row(t))
    console.print(table)
    what = f"version(s) of {name}" if name else "template(s)"
    console.print(f"{len(found[:limit])} {what}{' (more: raise --limit)' if more else ''}")


@template_app.command("alias")
def template_alias(
    name: Annotated[str, typer.Argument(help="The template's name.")],
    alias: Annotated[str, typer.Argument(help="The alias to point, e.g. production.")],
    version: Annotated[int, typer.Argument(min=1, help="The version it points at.")],
) -> None:
    """Point ALIAS of template NAME at VERSION."""
    from llmops.contracts.rpc.registry.v1 import registry_pb2 as pb

    request = pb.SetPromptTemplateAliasRequest(name=name, alias=alias, version=version, actor=client.actor())
    with client.channel("registry") as channel:
        try:
            t = _stub(channel).SetPromptTemplateAlias(request)
        except grpc.RpcError as exc:
            client.fail(exc)
    console.print(f"{t.name}@{alias} -> version {t.version}", highlight=False)
