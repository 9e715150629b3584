"""Servicers for APIs whose contract exists but whose behaviour is not built yet.

Every RPC answers UNIMPLEMENTED with a message that says so and where it is planned, never
made-up data.
"""

from __future__ import annotations

import inspect
from typing import Any

import grpc


def planned_servicer(base: type, service: str, plan: str) -> Any:
    """An instance of a subclass of the generated ``base`` servicer whose RPCs all say UNIMPLEMENTED."""

    def make(method: str) -> Any:
        async def rpc(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
            await context.abort(
                grpc.StatusCode.UNIMPLEMENTED, f"{service}.{method} is not implemented yet ({plan})"
            )

        rpc.__name__ = method
        return rpc

    methods = {
        name: make(name)
        for name, _ in inspect.getmembers(base, inspect.isfunction)
        if not name.startswith("_")
    }
    return type(f"Planned{base.__name__}", (base,), methods)()
