"""MonitoringService over gRPC: read-only SQL for analysts and tools."""

from __future__ import annotations

import grpc
from google.protobuf import struct_pb2

from llmops.contracts.rpc.monitoring.v1 import monitoring_pb2, monitoring_pb2_grpc
from llmops.core.errors import InvalidArgument, Unimplemented
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


class MonitoringServicer(monitoring_pb2_grpc.MonitoringServiceServicer):
    def __init__(self, settings: Settings, store: AnalyticsStore) -> None:
        self._settings = settings
        self._store = store

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
        raise Unimplemented(
            "MonitoringService.DriftReport is not implemented yet (planned with drift analysis)"
        )

    async def GetLoopStatus(
        self, request: monitoring_pb2.GetLoopStatusRequest, context: grpc.aio.ServicerContext
    ) -> monitoring_pb2.LoopStatus:
        raise Unimplemented("MonitoringService.GetLoopStatus is not implemented yet (planned with the loop)")

    async def ApproveLoopStep(
        self, request: monitoring_pb2.ApproveLoopStepRequest, context: grpc.aio.ServicerContext
    ) -> monitoring_pb2.LoopStatus:
        raise Unimplemented(
            "MonitoringService.ApproveLoopStep is not implemented yet (planned with the loop)"
        )

    async def StartLoop(
        self, request: monitoring_pb2.StartLoopRequest, context: grpc.aio.ServicerContext
    ) -> monitoring_pb2.LoopStatus:
        raise Unimplemented("MonitoringService.StartLoop is not implemented yet (planned with the loop)")
