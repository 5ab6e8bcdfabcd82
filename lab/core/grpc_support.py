"""The gRPC side of the lab's plumbing: request log, fault injection, error codes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc

from lab.core.context import LabContext
from lab.core.errors import ApiError, error_for_status


def guarded(
    ctx: LabContext, api: str, method: str, handler: Callable[[Any, grpc.ServicerContext], Any]
) -> Callable[[Any, grpc.ServicerContext], Any]:
    """Wrap a unary handler: log it, apply faults, and turn ApiError into a gRPC status."""

    def wrapper(request: Any, context: grpc.ServicerContext) -> Any:
        path = _request_path(request)
        rule = ctx.faults.match(api, method, path)
        if rule is not None and rule.latency_s:
            time.sleep(rule.latency_s)
        if rule is not None and rule.status is not None:
            error = error_for_status(rule.status, f"injected fault {rule.id}", rule.reason)
            ctx.requests.record(api, method, path, rule.status, injected=True)
            context.abort(error.grpc_code, error.message)
        try:
            response = handler(request, context)
        except ApiError as error:
            ctx.requests.record(api, method, path, error.code, rule is not None)
            context.abort(error.grpc_code, error.message)
        ctx.requests.record(api, method, path, 200, rule is not None)
        return response

    return wrapper


def _request_path(request: Any) -> str:
    """A REST-like path for the log, built from the request's project/instance fields."""
    parts = []
    for field in ("project", "instance", "operation", "id"):
        value = getattr(request, field, None)
        if value:
            parts.append(f"{field}/{value}")
    return "/".join(parts)
