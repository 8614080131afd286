"""Errors as HTTP answers: one JSON shape, a status per error kind, a message that says how to
fix it. `{"error": {"code": ..., "message": ..., <details>}}`."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from agentqueue.audit import error_code
from agentqueue.errors import AgentQueueError

STATUS_OF: dict[str, int] = {
    "job_not_found": 404,
    "token_not_found": 404,
    "cron_job_not_found": 404,
    "not_found": 404,
    "invalid_argument": 422,
    "payload_invalid": 422,
    "dependency_invalid": 422,
    "config_error": 422,
    "invalid_transition": 409,
    "token_not_pending": 409,
    "duplicate_handler": 409,
    "lease_lost": 409,
    "unauthorized": 401,
    "forbidden": 403,
    "payload_too_large": 413,
    "backend_unavailable": 503,
    "store_full": 503,
    "schema_mismatch": 503,
    "missing_extra": 503,
}
"""HTTP status by error code; 400 for any other."""


class ErrorDetail(BaseModel):
    """What went wrong: a stable `code`, a message that says how to fix it, and details."""

    model_config = ConfigDict(extra="allow")

    code: str
    message: str


class ErrorBody(BaseModel):
    """The body of every error answer."""

    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (
        (400, "The request body cannot be parsed (not UTF-8 JSON)"),
        (401, "No API key, or an unknown or revoked one"),
        (403, "The key's scope is too low"),
        (404, "No such job, token, schedule or route"),
        (409, "The change does not apply in the current state"),
        (413, "The request body is too large"),
        (422, "Invalid input: the fields and how to fix them"),
        (503, "The store is unreachable"),
    )
}
"""The error answers every route may give, for the OpenAPI document."""


class HttpError(AgentQueueError):
    """An error only a door raises (auth, size), with its own code."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message, **details)
        self.http_code = code

    def to_dict(self) -> dict[str, Any]:
        """The error as JSON data."""
        return {"code": self.http_code, "message": self.message, **self.details}


def code_of(error: AgentQueueError) -> str:
    """The stable code of an error (a door's own, or the core's)."""
    return error_code(error)


def error_response(error: AgentQueueError, headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON answer to an error."""
    return JSONResponse(
        {"error": _jsonable(error.to_dict())},
        status_code=STATUS_OF.get(code_of(error), 400),
        headers=headers,
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}  # pyright: ignore[reportUnknownVariableType]
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]  # pyright: ignore[reportUnknownVariableType]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def install(app: FastAPI) -> None:
    """Register the handlers that give every error the one shape."""

    @app.exception_handler(AgentQueueError)
    async def core_error(request: Request, error: AgentQueueError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if code_of(error) == "unauthorized" else None
        return error_response(error, headers)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = [
            {
                "loc": ".".join(str(part) for part in item.get("loc", ()) if part != "body"),
                "msg": item.get("msg", ""),
                "type": item.get("type", ""),
            }
            for item in error.errors()
        ]
        message = "; ".join(f"{p['loc'] or '(body)'}: {p['msg']}" for p in problems)
        body = {"code": "invalid_argument", "message": f"invalid request: {message}"}
        return JSONResponse({"error": {**body, "errors": problems}}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        message = str(error.detail) if error.detail else "error"
        if error.status_code == 404:
            message = f"no route {request.method} {request.url.path} (see /docs)"
        return JSONResponse(
            {"error": {"code": code, "message": message}},
            status_code=error.status_code,
            headers=getattr(error, "headers", None),
        )
