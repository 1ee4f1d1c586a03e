"""The one error map: every refusal of the service as application/problem+json (RFC 9457), with the HTTP
status of each kind of domain error in one table. A backend that cannot be reached is a 503 with
Retry-After; anything else unexpected is a logged 500 that says nothing of its cause."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import asyncpg
import redis.exceptions
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import Empty
from litestar.utils.scope.state import ScopeState

from invoicing.buyer_texts import redact_links
from invoicing.errors import (
    BadParameters,
    Conflict,
    DomainError,
    Forbidden,
    Gone,
    IdempotencyMismatch,
    MalformedRequest,
    NotFound,
    RateLimited,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
    ValidationFailed,
)
from invoicing.http import body_field_error
from verification import web
from verification.challenge import ChallengeRequired

log = logging.getLogger("invoiceloop")
PROBLEM = "application/problem+json"
PAGES = ("/verify", "/verify/scan", "/lottery")  # answered with an HTML page, errors too
# PostgreSQL or Redis cannot be reached (down, restarting, out of connections, too slow to answer), or PostgreSQL
# rolled the request's transaction back to break a deadlock or a serialization conflict: the request was not carried
# out and may be sent again as it is, so 503 with Retry-After, not a 500.
BACKEND_ERRORS: tuple[type[Exception], ...] = (
    ConnectionError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.TransactionRollbackError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)


@dataclass(frozen=True)
class Problem:
    """How one kind of refusal is answered: HTTP status, title and the last part of its `type` URI."""

    status: int
    title: str
    slug: str


PROBLEMS: dict[type[DomainError], Problem] = {
    BadParameters: Problem(400, "Bad request", "bad-parameters"),
    ValidationFailed: Problem(422, "Validation failed", "validation"),
    MalformedRequest: Problem(400, "Malformed JSON", "malformed-json"),
    NotFound: Problem(404, "Not found", "not-found"),
    Conflict: Problem(409, "Conflict", "conflict"),
    Gone: Problem(410, "Gone", "gone"),
    IdempotencyMismatch: Problem(422, "Idempotency-Key reused with another body", "idempotency-mismatch"),
    Unauthorized: Problem(401, "Unauthorized", "unauthorized"),
    Forbidden: Problem(403, "Forbidden", "forbidden"),
    UnsupportedMediaType: Problem(415, "Unsupported media type", "unsupported-media-type"),
    RateLimited: Problem(429, "Too many requests", "rate-limited"),
    Unavailable: Problem(503, "Service unavailable", "unavailable"),
    ChallengeRequired: Problem(428, "Proof of work required", "challenge-required"),
    DomainError: Problem(400, "Bad request", "bad-request"),
}


def _logged(request: Request[Any, Any, Any]) -> str:
    """The path as it may be logged: a download link's token is a key to a buyer's invoice, and never logged."""
    return redact_links(request.url.path)


def problem_of(exc: DomainError) -> Problem:
    """The table's entry for the error's class or its nearest base class."""
    return next(PROBLEMS[cls] for cls in type(exc).__mro__ if cls in PROBLEMS)


def problem(status: int, title: str, detail: str, slug: str, **extra: Any) -> Response[Any]:
    """A problem+json answer; `retry_after` (seconds) also sets the Retry-After header."""
    body = {"type": f"https://invoiceloop.dev/problems/{slug}", "title": title, "status": status, "detail": detail}
    headers = {"Retry-After": str(extra["retry_after"])} if "retry_after" in extra else {}
    return Response({**body, **extra}, status_code=status, media_type=PROBLEM, headers=headers)


def on_domain_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """A refusal given on purpose."""
    assert isinstance(exc, DomainError)
    extra: dict[str, Any] = {}
    if isinstance(exc, ValidationFailed):
        extra["errors"] = [{"field": e.field, "message": e.message} for e in exc.errors]
    if isinstance(exc, RateLimited | Unavailable):
        extra["retry_after"] = exc.retry_after_s
    if isinstance(exc, UnsupportedMediaType):
        extra.update(sent=exc.sent, accepted=list(exc.accepted))
    if isinstance(exc, ChallengeRequired):
        extra["challenge"] = exc.challenge
        if exc.reason:
            extra["errors"] = [{"field": "altcha", "message": exc.reason}]
    kind = problem_of(exc)
    if isinstance(exc, Unavailable | Forbidden) and (page := _error_page(request, kind.status)):
        return page
    return problem(kind.status, kind.title, exc.detail, kind.slug, **extra)


# What litestar raises (as a 500) when the client disconnects before its body is read.
CLIENT_GONE = "client disconnected prematurely"


def on_http_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """What litestar itself refuses: bad parameters, wrong shapes of body, unknown routes, oversized bodies."""
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    if exc.detail == CLIENT_GONE:  # the client hung up while sending its body: no one to answer, nothing to log
        return problem(400, "Bad request", "the request body was cut off", "bad-request")
    if status >= 500:  # litestar's own 500 (a misconfigured route, say) is a bug like any other
        return on_unexpected(request, exc)
    if isinstance(exc, ValidationException):
        extra = exc.extra if isinstance(exc.extra, list) else []
        if extra and all(e.get("source") == "body" for e in extra):  # a JSON body of the wrong shape
            fields = [body_field_error(str(e.get("key", "")), str(e.get("message", ""))) for e in extra]
            errors = [{"field": f.field, "message": f.message} for f in fields]
            return problem(422, "Validation failed", "The request has invalid fields.", "validation", errors=errors)
        errors = [{"field": str(e.get("key", "")), "message": str(e.get("message", ""))} for e in extra]
        return problem(400, "Bad request", "some parameters are invalid", "bad-parameters", errors=errors)
    if status == 403 and (page := _error_page(request, 403)):  # the page's CSRF check (litestar's middleware)
        return page
    titles = {404: "Not found", 405: "Method not allowed", 413: "Request body too large", 401: "Unauthorized"}
    detail = exc.detail if status != 413 else "the request body is larger than this endpoint accepts"
    return problem(status, titles.get(status, "Bad request"), detail, f"http-{status}")


def on_unavailable(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """PostgreSQL or Redis could not be reached: 503, try again shortly."""
    log.warning("backend unavailable (%s) on %s %s", type(exc).__name__, request.method, _logged(request))
    return _error_page(request, 503) or problem(
        503,
        "Service unavailable",
        "the database or the cache cannot be reached just now; try again shortly",
        "unavailable",
        retry_after=Unavailable.retry_after_s,
    )


def on_recursion(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """A JSON body nested deeper than the decoder's recursion limit is the caller's doing (a 400); any other
    RecursionError is a bug."""
    state = ScopeState.from_scope(request.scope)
    if request.method in ("POST", "PUT", "PATCH") and state.json is Empty and state.body is not Empty:
        return problem(400, "Malformed JSON", "the body is nested too deeply", "malformed-json")
    return on_unexpected(request, exc)


def on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """A bug: logged with its traceback, answered with nothing of its cause."""
    log.error("unexpected %s on %s %s", type(exc).__name__, request.method, _logged(request), exc_info=exc)
    return _error_page(request, 500) or problem(
        500, "Internal error", "an unexpected error; it has been logged", "internal"
    )


def _error_page(request: Request[Any, Any, Any], status: int) -> Response[Any] | None:
    """The verification page's own error page (a person reads it, not a program), when it is asked for."""
    if request.url.path not in PAGES:
        return None
    return web.error_page(status, Unavailable.retry_after_s if status == 503 else None, csrf=web.csrf_token(request))
