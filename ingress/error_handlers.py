"""The ingress's exception handlers: the one catch-all of the process boundary.

A RequestRejected is logged (address masked), counted as that request's outcome (and under
its tenants') when the POST pipeline had started timing it, and answered with its status,
code and headers; the admin guard's refusal is a 401 with WWW-Authenticate; anything else
is logged with its type and answered 500 without detail.
"""

from __future__ import annotations

import time

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from ingress.admin import AdminUnauthorized
from ingress.client_ip import IpAddress, mask_address
from ingress.metrics import IngressMetrics
from ingress.rejection import RequestRejected, error_response
from ingress.tenant_gates import UNKNOWN

log = structlog.get_logger("ingress")


def install_error_handlers(app: FastAPI, metrics: IngressMetrics) -> None:
    """Map RequestRejected, AdminUnauthorized and any other exception to JSON errors."""

    @app.exception_handler(RequestRejected)
    async def rejected(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestRejected)
        source: IpAddress | None = getattr(request.state, "client", None)
        log.info(
            "webhook_rejected",
            code=exc.code,
            status=exc.status,
            path=request.url.path,
            source=mask_address(source),
        )
        started = getattr(request.state, "started", None)
        if started is not None:
            metrics.observe_request(exc.code, time.perf_counter() - started)
            # The receiver names the request's tenants once it knows them (ingress/receiver.py).
            metrics.count_tenant_rejection(getattr(request.state, "tenants", UNKNOWN), exc.code)
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(AdminUnauthorized)
    async def admin_unauthorized(request: Request, exc: Exception) -> JSONResponse:
        log.info("admin_unauthorized", path=request.url.path)
        headers = {"WWW-Authenticate": "Bearer"}
        return error_response(401, "unauthorized", "a valid bearer token is required", headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled_error", path=request.url.path, error_type=type(exc).__name__)
        return error_response(500, "internal_error", "internal error")
