"""The one error the ingress answers with, and the one shape of its body."""

from __future__ import annotations

from fastapi.responses import JSONResponse


class RequestRejected(Exception):
    """A request answered with a 4xx/5xx and a JSON error; nothing was stored."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The one shape of every error body: {"error": {"code", "message"}}."""
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )
