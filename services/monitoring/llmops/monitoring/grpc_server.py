"""MonitoringService over gRPC: read-only SQL for analysts and tools."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Literal

import grpc
from google.protobuf import struct_pb2

from llmops.contracts.rpc.monitoring.v1 import monitoring_pb2, monitoring_pb2_grpc
from llmops.core.convert import datetime_of, message
from llmops.core.errors import InvalidArgument, Unimplemented
from llmops.monitoring.drift import ALL_SIGNALS
from llmops.monitoring.drift_job import DriftReporter
from llmops.monitoring.loop.controller import LoopController
from llmops.monitoring.loop.rpc import loop_status
from llmops.monitoring.settings import Settings
from llmops.monitoring.store.analytics import AnalyticsStore

_EXACT_INT = 2**53


def to_value(value: object) -> struct_pb2.Value:
    """One cell as a protobuf Value; integers a double cannot hold exactly travel as strings."""
    if value is None:
        return struct_pb2.Value(null_value=struct_pb2.NULL_VALUE)
    if isinstance(value, bool):
        return struct_pb2.Value(bool_value=value)
    if isinstance(value, int):
        if abs(value) > _EXACT_INT:
            return struct_pb2.Value(string_value=str(value))
        return struct_pb2.Value(number_value=value)
    if isinstance(value, float):
        return struct_pb2.Value(number_value=value)
    if isinstance(value, (list, tuple)):
        return struct_pb2.Value(list_value=struct_pb2.ListValue(values=[to_value(v) for v in value]))
    if isinstance(value, dict):
        return struct_pb2.Value(
            struct_value=struct_pb2.Struct(fields={str(k): to_value(v) for k, v in value.items()})
        )
    return struct_pb2.Value(string_value=str(value))


def _window(request: monitoring_pb2.DriftReportRequest, prefix: str) -> tuple[dt.datetime, dt.datetime]:
    """``<prefix>_start`` and ``<prefix>_end`` of a DriftReportRequest, both set and in order."""
    start, end = datetime_of(request, f"{prefix}_start"), datetime_of(request, f"{prefix}_end")
    for name, value in ((f"{prefix}_start", start), (f"{prefix}_end", end)):
        if value is None:
            raise InvalidArgument(f"{name} is required (a timestamp)")
    assert start is not None and end is not None
    if start >= end:
        raise InvalidArgument(
            f"{prefix}_start ({start.isoformat()}) must be before {prefix}_end ({end.isoformat()})"
        )
    return start, end


def _signals(signals: Sequence[str]) -> tuple[str, ...]:
    unknown = sorted(set(signals) - set(ALL_SIGNALS))
    if unknown:
        raise InvalidArgument(
            f"signals: unknown signal(s) {', '.join(unknown)}; known: {', '.join(ALL_SIGNALS)}"
        )
    return tuple(signals)


def _reference_scope(scope: str) -> Literal["model", "group"]:
    if scope in ("", "model"):
        return "model"
    if scope == "group":
        return "group"
    raise InvalidArgument(f"reference_scope must be 'model' (the default) or 'group', got {scope!r}")


def _numeric_method(method: str) -> Literal["exact", "histograms"] | None:
    """The request's method; None ("") is the service's (LLMOPS_MONITORING_DRIFT_NUMERIC_METHOD)."""
    if method == "":
        return None
    if method in ("exact", "histograms"):
        return method  # type: ignore[return-value]
    raise InvalidArgument(
        f"numeric_method must be 'histograms', 'exact' or empty (the service's setting), got {method!r}"
    )


class MonitoringServicer(monitoring_pb2_grpc.MonitoringServiceServicer):
    def __init__(
        self,
        settings: Settings,
        store: AnalyticsStore,
        *,
        drift: DriftReporter | None = None,
        loop: LoopController | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._drift = drift
        self._loop = loop

    def _controller(self) -> LoopController:
        if self._loop is None:
            raise Unimplemented("this monitoring server runs no loop controller")
        return self._loop

    async def Query(
        self, request: monitoring_pb2.QueryRequest, context: grpc.aio.ServicerContext
    ) -> monitoring_pb2.QueryResponse:
        if not request.sql.strip():
            raise InvalidArgument("sql is empty")
        max_rows = request.max_rows or self._settings.default_max_rows
        if max_rows > self._settings.max_rows_limit:
            raise InvalidArgument(f"max_rows must be at most {self._settings.max_rows_limit}, got {max_rows}")
        result = await self._store.query(request.sql, dict(request.parameters), max_rows)
        return monitoring_pb2.QueryResponse(
            columns=[monitoring_pb2.Column(name=n, type=t) for n, t in result.columns],
            rows=[monitoring_pb2.Row(values=[to_value(v) for v in row]) for row in result.rows],
            truncated=result.truncated,
            elapsed_ms=result.elapsed_ms,
        )

    async def DriftReport(
        self, request: monitoring_pb2.DriftReportRequest, context: grpc.aio.ServicerContext
    ) -> monitoring_pb2.DriftReportResponse:
        """Every result is written to drift_results (source "rpc"); baseline_count and window_count
        are the largest reference and current counts among the results."""
        if self._drift is None:
            raise Unimplemented("MonitoringService.DriftReport needs the service's drift reporter")
        if not request.model:
            raise InvalidArgument("model is required: the model whose traffic to compare")
        drift_request = self._drift.request(
            request.model,
            _window(request, "baseline"),
            _window(request, "window"),
            _signals(request.signals),
            _reference_scope(request.reference_scope),
            _numeric_method(request.numeric_method),
        )
        report_id, report = await self._drift.report(drift_request, source="rpc", publish=request.publish)
        results = report.results
        return monitoring_pb2.DriftReportResponse(
            model=drift_request.model,
            signals=[
                message(monitoring_pb2.DriftSignal, r, name=r.signal, drifted=bool(r.drifted))
                for r in results
            ],
            drifted=any(r.drifted for r in results),
            baseline_count=max((r.reference_count for r in results), default=0),
            window_count=max((r.current_count for r in results), default=0),
            report_id=report_id,
        )

    async def GetLoopStatus(
        self, request: monitoring_pb2.GetLoopStatusRequest, context: grpc.aio.ServicerContext
    ) -> monitoring_pb2.LoopStatus:
        return await loop_status(self._controller(), request.model, request.max_steps)

    async def ApproveLoopStep(
        self, request: monitoring_pb2.ApproveLoopStepRequest, context: grpc.aio.ServicerContext
    ) -> monitoring_pb2.LoopStatus:
        controller = self._controller()
        if not request.model:
            raise InvalidArgument("model must name the model whose loop waits")
        await controller.approve(
            request.model, request.loop_id, request.actor, request.approve, request.reason
        )
        return await loop_status(controller, request.model)

    async def StartLoop(
        self, request: monitoring_pb2.StartLoopRequest, context: grpc.aio.ServicerContext
    ) -> monitoring_pb2.LoopStatus:
        controller = self._controller()
        if not request.model:
            raise InvalidArgument("model must name the model whose loop to start")
        await controller.start(request.model, request.actor, request.reason)
        return await loop_status(controller, request.model)
