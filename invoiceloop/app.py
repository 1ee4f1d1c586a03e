"""The app factory: settings in, a litestar app out, with every route of the three packages wired in plain
sight. What the routes use is built at start-up into `Services` and handed to them as dependencies."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import hmac
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import asyncpg
import msgspec
import redis.asyncio as aioredis
from litestar import Litestar, Response, get
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.prometheus import PrometheusConfig
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler

from delivery.api import PostalApi, PostalController, invoice_delivery
from invoiceloop import contract, problems
from invoiceloop.loopwatch import watch_loop
from invoiceloop.metrics import metrics, process_ended
from invoiceloop.settings import Settings
from invoicing import db, keyring
from invoicing.api import BATCH_MAX_BYTES, InvoiceController, IssuerApi, issuer_stats
from invoicing.buyer_texts import BuyerTexts, link_key
from invoicing.errors import DomainError
from invoicing.http import Authenticator, media_type_middleware
from invoicing.keyring import ActiveSigner, KeyringWatcher
from invoicing.note import parse_verifier_key
from invoicing.numbering import Issuing
from invoicing.queue import Queue, redis_client
from invoicing.replicas import Reads
from invoicing.transparency import LogReader, LogSigner
from invoicing.webhook_api import WebhookApi, WebhookController
from invoicing.webhook_sender import Nudge
from verification.api import create_verification, create_verification_batch, jwks
from verification.download import download
from verification.inbound import sms_inbound
from verification.limits import LimitFigures, Limits
from verification.log_api import (
    log_checkpoint,
    log_consistency,
    log_inclusion,
    log_key,
    log_leaf,
    log_tile,
)
from verification.lottery_api import create_lottery_entry, lottery_draw, lottery_entries
from verification.lottery_page import lottery_page_router
from verification.lottery_services import Lottery
from verification.scan import Scanner
from verification.scan_api import scan_verification
from verification.services import Verifier
from verification.sms import make_sms_channel
from verification.stats_page import PublicStats, public_stats_json, public_stats_page
from verification.views import PublicApi
from verification.web import page_router, verify_static

T = TypeVar("T")
# The API reference UI (Swagger UI from npm's swagger-ui-dist, static/swagger_ui/VENDORED.md), served from the
# package so that `/schema` loads nothing from a CDN.
SWAGGER_UI = "/static/api-reference"
SWAGGER_UI_VERSION = "5.35.0"
api_reference_static = create_static_files_router(
    SWAGGER_UI, directories=[Path(__file__).parent / "static" / "swagger_ui"], name="api-reference-static"
)
API_REFERENCE = SwaggerRenderPlugin(
    version=SWAGGER_UI_VERSION,
    js_url=f"{SWAGGER_UI}/swagger-ui-bundle.js",
    css_url=f"{SWAGGER_UI}/swagger-ui.css",
    standalone_preset_js_url=f"{SWAGGER_UI}/swagger-ui-standalone-preset.js",
    favicon=f"<link rel='icon' type='image/png' href='{SWAGGER_UI}/favicon-32x32.png'>",
    path=["/", "/swagger"],
)

READY_REDIS_TIMEOUT_S = 1.5


@dataclass(frozen=True)
class Services:
    """What the running app holds, built at start-up and closed at shutdown; each route gets its part."""

    pool: asyncpg.Pool
    reads: Reads
    redis: aioredis.Redis | None
    queue: Queue
    auth: Authenticator
    issuer_api: IssuerApi
    public_api: PublicApi
    postal_api: PostalApi
    webhook_api: WebhookApi
    public_stats: PublicStats


@get("/healthz", tags=["operations"])
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


class Readiness(msgspec.Struct):
    """`/readyz`'s answer, 200 and 503 alike (a probe's, not a problem+json)."""

    status: Literal["ready", "not ready"]
    checks: dict[str, str]  # postgresql, redis: "ok" or why not


@get(
    "/readyz",
    tags=["operations"],
    responses={
        200: ResponseSpec(Readiness, description="PostgreSQL and Redis answer."),
        503: ResponseSpec(Readiness, description="Not ready: `checks` names what does not answer."),
    },
)
async def readyz(services: NamedDependency[Services]) -> Response[Any]:
    """PostgreSQL and Redis reachable: 200, else 503 naming what is not."""
    checks: dict[str, str] = {}
    try:
        async with services.pool.acquire(timeout=2) as conn:
            await conn.fetchval("SELECT 1")
        checks["postgresql"] = "ok"
    except Exception as exc:
        checks["postgresql"] = f"unreachable: {type(exc).__name__}"
    if services.redis is None:
        checks["redis"] = "not configured (REDIS_URL)"
    else:
        try:
            async with asyncio.timeout(READY_REDIS_TIMEOUT_S):  # the client's own timeouts, and a bound over them
                await services.redis.ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"unreachable: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    answer = Readiness("ready" if ready else "not ready", checks)
    return Response(answer, status_code=200 if ready else 503)


def open_keyring(settings: Settings) -> KeyringWatcher:
    """The keyring of INVOICELOOP_KEYRING, watched for changes. Without that setting, the data folder's keyring,
    made from the signing key on first use (a deployment sets the variable and deploys the folder: a keyring it
    names must exist)."""
    if settings.keyring_dir is None and not settings.keyring.exists():
        keyring.bootstrap(settings.keyring, settings.key_file)
    return KeyringWatcher(settings.keyring)


def log_signer(settings: Settings) -> LogSigner:
    """The transparency log's key (LOG_KEY_FILE, created on first use) under its origin (LOG_ORIGIN)."""
    return LogSigner.load(settings.origin, settings.log_key)


def log_verifier_key(settings: Settings) -> str:
    """The log's verifier key the public side publishes: LOG_VERIFIER_KEY, else derived from LOG_KEY_FILE."""
    if settings.log_verifier_key:
        parse_verifier_key(settings.log_verifier_key)  # a typo would otherwise be published
        return settings.log_verifier_key
    return log_signer(settings).verifier_key


async def replica_pool(settings: Settings) -> asyncpg.Pool | None:
    """A pool on DATABASE_REPLICA_URL, if set. It connects lazily: a replica that is down at start-up is only a
    replica that is down (reads go to the primary until it answers)."""
    if not settings.database_replica_url:
        return None
    return await db.create_pool(settings.database_replica_url, min_size=0, max_size=settings.db_pool_max)


def load_issuing(settings: Settings, ring: KeyringWatcher | None = None) -> Issuing:
    """The check-code secret and the signer: the keyring's active key, its private half from SIGNING_KEY_FILE,
    following `keys rotate` without a restart."""
    signers = ActiveSigner(ring or open_keyring(settings), settings.key_file)
    texts = BuyerTexts(
        link_key(settings.secret_bytes()),
        settings.public_base_url,
        settings.download_link_ttl_days,
        settings.sms_allowed_countries,
    )
    return Issuing(settings.secret_bytes(), signers, settings.max_series_per_year, texts=texts)


async def start_services(settings: Settings) -> Services:
    """Connect to PostgreSQL and Redis and build what every route uses."""
    pool = await db.create_pool(settings.require_database_url(), max_size=settings.db_pool_max)
    reads = Reads(pool, await replica_pool(settings))
    redis = redis_client(settings.redis) if settings.redis else None
    queue = Queue(settings.redis)
    ring = open_keyring(settings)
    issuing = load_issuing(settings, ring)
    limits = Limits(redis, LimitFigures.from_extra(settings.extra), receipt_budget=settings.sms_daily_budget)
    hooks = Nudge(pool, queue)
    verifier = Verifier(
        pool,
        limits,
        settings.secret_bytes(),
        ring,
        queue,
        LogReader(reads),
        signatures_kept=settings.signatures_kept,
        reads=reads,
        sms_countries=settings.sms_allowed_countries,
        hooks=hooks,
        scanner=Scanner(settings.scan_slots, settings.scan_timeout_s),
    )
    base = settings.public_base_url
    auth = Authenticator(pool, key_ttl_s=settings.key_cache_ttl_s)
    return Services(
        pool=pool,
        reads=reads,
        redis=redis,
        queue=queue,
        auth=auth,
        issuer_api=IssuerApi(
            pool,
            issuing,
            queue,
            base,
            settings.tax_rates,
            auth,
            reads,
            max_batch_lines=settings.max_batch_lines,
            hooks=hooks,
        ),
        public_api=PublicApi(
            verifier,
            base,
            settings.twilio_auth_token,
            log_verifier_key(settings),
            inbound_slots=asyncio.Semaphore(max(1, settings.db_pool_max // 2)),
            lottery=Lottery(verifier, settings.lottery_min_total, settings.lottery_prizes),
        ),
        postal_api=PostalApi(pool, queue, base, auth, reads, hooks),
        webhook_api=WebhookApi(pool, settings.webhook_allow_private, hooks),
        public_stats=PublicStats(reads, ttl_s=settings.public_stats_ttl_s),
    )


async def stop_services(services: Services) -> None:
    """Close what `start_services` opened."""
    await services.queue.close()
    if services.redis is not None:
        await services.redis.aclose()
    await services.reads.close()
    await services.pool.close()


def make_sms(settings: Settings) -> Any:
    """The SMS channel of SMS_BACKEND (`console` by default, `twilio`)."""
    return make_sms_channel(
        settings.sms_backend,
        account_sid=settings.twilio_account_sid,
        auth_token=settings.twilio_auth_token,
        from_number=settings.twilio_from_number,
        api_base_url=settings.twilio_api_base_url,
    )


ROUTES: list[ControllerRouterHandler] = [
    healthz,
    readyz,
    metrics,
    # issuers
    InvoiceController,
    issuer_stats,
    WebhookController,
    # the public side
    create_verification,
    create_verification_batch,
    scan_verification,
    download,  # the buyer's texted download link
    verify_static,
    api_reference_static,
    sms_inbound,  # the page (GET and POST /verify) is `page_router`, added by `create_app` with its CSRF secret
    jwks,
    # the invoice lottery (the page, GET and POST /lottery, is `lottery_page_router`)
    create_lottery_entry,
    lottery_draw,
    lottery_entries,
    # the public transparency log
    log_checkpoint,
    log_key,
    log_tile,
    log_inclusion,
    log_consistency,
    log_leaf,
    # the closed loop in public: the page and its JSON
    public_stats_page,
    public_stats_json,
    # the postal side, and the issuer's view of a delivery
    PostalController,
    invoice_delivery,
]


def csrf_secret(settings: Settings) -> str:
    """The page's CSRF signing secret, derived from CHECK_CODE_SECRET (which every process of a deployment shares,
    so a token from one process checks in another); it is never the check-code secret itself."""
    return hmac.new(settings.secret_bytes(), b"invoiceloop verify-page csrf", hashlib.sha256).hexdigest()


def create_app(
    settings: Settings,
    *,
    routes: list[ControllerRouterHandler] | None = None,
    extra_routes: list[ControllerRouterHandler] | None = None,
) -> Litestar:
    """The HTTP service: every route (`routes` replaces them, `extra_routes` adds to them: tests and the bench),
    the one error map, and the services built at start-up."""
    started: list[Services] = []

    def part(pick: Callable[[Services], T]) -> Provide:
        return Provide(lambda: pick(started[0]), sync_to_thread=False, use_cache=True)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        started.append(await start_services(settings))
        watch = asyncio.create_task(watch_loop())
        try:
            tune_collector()
            yield
        finally:
            watch.cancel()
            await stop_services(started.pop())
            process_ended()

    prometheus = PrometheusConfig(app_name="invoiceloop", group_path=True)
    app = Litestar(
        route_handlers=[
            *(
                [
                    *ROUTES,
                    page_router(csrf_secret(settings), settings.public_base_url),
                    lottery_page_router(csrf_secret(settings), settings.public_base_url),
                ]
                if routes is None
                else routes
            ),
            *(extra_routes or []),
        ],
        lifespan=[lifespan],
        dependencies={
            "services": part(lambda s: s),
            "metrics_token": Provide(lambda: settings.metrics_token, sync_to_thread=False, use_cache=True),
            "issuer_api": part(lambda s: s.issuer_api),
            "public_api": part(lambda s: s.public_api),
            "postal_api": part(lambda s: s.postal_api),
            "webhook_api": part(lambda s: s.webhook_api),
            "public_stats": part(lambda s: s.public_stats),
        },
        exception_handlers={
            DomainError: problems.on_domain_error,
            HTTPException: problems.on_http_error,
            RecursionError: problems.on_recursion,
            Exception: problems.on_unexpected,
            **dict.fromkeys(problems.BACKEND_ERRORS, problems.on_unavailable),
        },
        middleware=[prometheus.middleware, media_type_middleware],
        openapi_config=OpenAPIConfig(
            title="invoiceloop",
            version="1.0.0",
            path="/schema",
            description="Issue, verify and deliver invoices. Issuer routes take an issuer key, /v1/postal routes an "
            "operator key, as `Authorization: Bearer <key>`. Errors are application/problem+json (the `Problem` "
            "schema), documented on each operation where they can occur.",
            components=Components(security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer")}),
            render_plugins=[API_REFERENCE],
        ),
        request_max_body_size=BATCH_MAX_BYTES,
        debug=False,
    )
    return contract.attach(app)  # every error documented where it can occur, as problem+json


# The cyclic collector's young generation: a collection runs once this many more containers (dicts, lists,
# objects) are alive than at the last one. A 1000-invoice batch keeps about 30,000 alive from its decoded request
# to its answer; at Python's default of 700 it set off some 40 young collections, each promoting the batch's own
# live objects into older ones that were then walked again: 8 % of a serve worker's CPU under the batch load
# (docs/issuing.md, "The collector and the batch"). Above a whole batch, one batch sets off none.
GC_YOUNG_THRESHOLD = 50_000


def tune_collector() -> None:
    """Move what start-up built (modules, the app, tables) out of the cyclic collector's reach, so full
    collections do not walk it all again under load (docs/decisions.md, "Start-up objects frozen"), and let the
    young generation hold a whole batch (`GC_YOUNG_THRESHOLD`); the older generations keep Python's thresholds."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def app_from_env() -> Litestar:
    """The uvicorn factory (`invoiceloop serve`): settings from the environment."""
    return create_app(Settings.from_env())
