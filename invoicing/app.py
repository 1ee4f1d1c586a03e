"""The app factory: settings in, a litestar app out. One error map turns every refusal into
application/problem+json (RFC 9457)."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import redis.asyncio as aioredis
import redis.exceptions
from litestar import Litestar, Request, Response, get
from litestar.datastructures import State
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController

from invoicing import api, db, keys, repository
from invoicing.errors import DomainError, RateLimited, Unavailable, ValidationFailed
from invoicing.queue import Queue
from invoicing.services import Issuing
from invoicing.settings import Settings

log = logging.getLogger("invoiceloop")
PROBLEM = "application/problem+json"
# PostgreSQL or Redis cannot be reached (down, restarting, out of connections, too slow to answer): the
# request was not carried out and may be sent again as it is, so 503 with Retry-After, not a 500.
BACKEND_ERRORS: tuple[type[Exception], ...] = (
    ConnectionError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)
PAGES = ("/verify",)  # answered with an HTML page, errors too


def problem(status: int, title: str, detail: str, slug: str, **extra: Any) -> Response[Any]:
    body = {
        "type": f"https://invoiceloop.dev/problems/{slug}",
        "title": title,
        "status": status,
        "detail": detail,
        **extra,
    }
    headers = {}
    if "retry_after" in extra:
        headers["Retry-After"] = str(extra["retry_after"])
    return Response(body, status_code=status, media_type=PROBLEM, headers=headers)


def on_domain_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    assert isinstance(exc, DomainError)
    extra: dict[str, Any] = {}
    if isinstance(exc, ValidationFailed):
        extra["errors"] = [{"field": e.field, "message": e.message} for e in exc.errors]
    if isinstance(exc, RateLimited | Unavailable):
        extra["retry_after"] = exc.retry_after_s
    if isinstance(exc, Unavailable) and (page := _error_page(request, 503)):
        return page
    return problem(exc.status, exc.title, exc.detail, exc.type_slug, **extra)


def on_http_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    if isinstance(exc, ValidationException):
        extra = exc.extra if isinstance(exc.extra, list) else []
        if extra and all(e.get("source") == "body" for e in extra):  # a JSON body of the wrong shape
            fields = [api.body_field_error(str(e.get("key", "")), str(e.get("message", ""))) for e in extra]
            return problem(
                422,
                "Validation failed",
                "The request has invalid fields.",
                "validation",
                errors=[{"field": f.field, "message": f.message} for f in fields],
            )
        errors = [{"field": str(e.get("key", "")), "message": str(e.get("message", ""))} for e in extra]
        return problem(400, "Bad request", "some parameters are invalid", "bad-parameters", errors=errors)
    titles = {404: "Not found", 405: "Method not allowed", 413: "Request body too large", 401: "Unauthorized"}
    detail = exc.detail if status != 413 else "the request body is larger than this endpoint accepts"
    return problem(status, titles.get(status, "Bad request"), detail, f"http-{status}")


def on_unavailable(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.warning("backend unavailable (%s) on %s %s", type(exc).__name__, request.method, request.url.path)
    return _error_page(request, 503) or problem(
        503,
        "Service unavailable",
        "the database or the cache cannot be reached just now; try again shortly",
        "unavailable",
        retry_after=Unavailable.retry_after_s,
    )


def on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.error("unexpected %s on %s %s", type(exc).__name__, request.method, request.url.path, exc_info=exc)
    return _error_page(request, 500) or problem(
        500, "Internal error", "an unexpected error; it has been logged", "internal"
    )


def _error_page(request: Request[Any, Any, Any], status: int) -> Response[Any] | None:
    """The verification page's own error page (a person reads it, not a program), when it is asked for."""
    web = _optional("verification.web")
    if web is None or request.url.path not in PAGES:
        return None
    page: Response[Any] = web.error_page(status, Unavailable.retry_after_s if status == 503 else None)
    return page


@get("/healthz", tags=["operations"], include_in_schema=True)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz", tags=["operations"])
async def readyz(state: State) -> Response[Any]:
    """PostgreSQL and Redis reachable: 200, else 503 naming what is not."""
    checks: dict[str, str] = {}
    try:
        async with state.pool.acquire(timeout=2) as conn:
            await conn.fetchval("SELECT 1")
        checks["postgresql"] = "ok"
    except Exception as exc:
        checks["postgresql"] = f"unreachable: {type(exc).__name__}"
    if state.redis is None:
        checks["redis"] = "not configured (REDIS_URL)"
    else:
        try:
            await state.redis.ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"unreachable: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return Response({"status": "ready" if ready else "not ready", "checks": checks}, status_code=200 if ready else 503)


async def load_issuing(settings: Settings, pool: Any) -> Issuing:
    """The signer from the key file (created on first run) and the check-code secret; the public
    key is recorded so /.well-known/jwks.json publishes it."""
    signer = keys.load_or_create(settings.key_file)
    async with pool.acquire() as conn:
        await repository.upsert_signing_key(conn, signer.key_id, signer.public_raw)
    return Issuing(settings.secret_bytes(), signer)


def create_app(settings: Settings, *, extra_routes: list[Any] | None = None) -> Litestar:
    """The HTTP service. Routes of `verification` and `delivery` are added by the composition root."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        pool = await db.create_pool(settings.require_database_url(), max_size=settings.db_pool_max)
        app.state.pool = pool
        app.state.redis = aioredis.from_url(settings.redis_url) if settings.redis_url else None  # type: ignore[no-untyped-call]
        app.state.issuing = await load_issuing(settings, pool)
        app.state.queue = Queue(settings.redis_url)
        app.state.sms = make_sms(settings)
        try:
            for hook in startup_hooks():
                await hook(app)
            _freeze_startup_objects()
            yield
        finally:
            await app.state.queue.close()
            if app.state.redis is not None:
                await app.state.redis.aclose()
            await pool.close()

    prometheus = PrometheusConfig(app_name="invoiceloop", group_path=True)
    return Litestar(
        route_handlers=[healthz, readyz, PrometheusController, *api.ROUTES, *(extra_routes or [])],  # type: ignore[list-item]
        lifespan=[lifespan],
        state=State(
            {
                "settings": settings,
                "key_cache": api.KeyCache(settings.key_cache_ttl_s, {}),
                "issuers": {},
                "pdf_cache": api.PdfCache(),
            }
        ),
        exception_handlers={
            DomainError: on_domain_error,
            HTTPException: on_http_error,
            Exception: on_unexpected,
            **dict.fromkeys(BACKEND_ERRORS, on_unavailable),
        },
        middleware=[prometheus.middleware],
        openapi_config=OpenAPIConfig(
            title="invoiceloop",
            version="1.0.0",
            path="/schema",
            description="Issue, verify and deliver invoices. Issuer routes take an issuer key, /v1/postal routes an "
            "operator key, as `Authorization: Bearer <key>`. Errors are application/problem+json.",
            components=Components(security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer")}),
            render_plugins=[ScalarRenderPlugin(), SwaggerRenderPlugin(path="/swagger")],
        ),
        request_max_body_size=api.BATCH_MAX_BYTES,
        debug=False,
    )


def _freeze_startup_objects() -> None:
    """Move what start-up built (modules, the app, tables) out of the cyclic collector's reach. Otherwise every
    full collection walks it all again: under verification load that was 26 full collections in 20 s of up to
    66 ms each (6% of the CPU and as many stalls); frozen, the longest was 1 ms."""
    gc.collect()
    gc.freeze()


def _optional(module: str) -> Any:
    try:
        return __import__(module, fromlist=["_"])
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        return None


def extra_routes() -> list[Any]:
    """The public verification and postal routes, from their packages (the composition root is the
    only place that imports them)."""
    modules = [_optional(m) for m in ("verification.api", "delivery.api")]
    return [route for m in modules if m is not None for route in m.ROUTES]


def startup_hooks() -> list[Any]:
    """`STARTUP` hooks (async callables taking the app) of the verification and delivery APIs."""
    modules = [_optional(m) for m in ("verification.api", "delivery.api")]
    return [hook for m in modules if m is not None for hook in getattr(m, "STARTUP", [])]


def make_sms(settings: Settings) -> Any:
    """The SMS channel of SMS_BACKEND (`console` by default, `twilio`)."""
    sms = _optional("verification.sms")
    if sms is None:
        return None
    return sms.make_sms_channel(
        settings.sms_backend,
        account_sid=settings.twilio_account_sid,
        auth_token=settings.twilio_auth_token,
        from_number=settings.twilio_from_number,
        api_base_url=settings.twilio_api_base_url,
    )


def app_from_env() -> Litestar:
    """The uvicorn factory (`invoiceloop serve`): settings from the environment, every route."""
    return create_app(Settings.from_env(), extra_routes=extra_routes())
