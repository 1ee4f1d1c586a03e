"""The HTTP pieces every package's API shares: strict JSON bodies whose refusals name the field, the opaque
list cursor, and bearer-key authentication with its per-process caches. The composition root provides
the `Authenticator` as the dependency `auth`."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, cast

import asyncpg
import msgspec
from cachetools import TTLCache
from litestar import Request
from litestar.di import NamedDependency
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from invoicing import repository
from invoicing.errors import (
    BadParameters,
    FieldError,
    MalformedRequest,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)
from invoicing.repository import Issuer

T = TypeVar("T")
# The OpenAPI security requirement of the routes that take an issuer or operator key; the public routes
# (verification, SMS webhook, published keys, health, metrics) carry none.
BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_DECIMAL_FIELDS = ("quantity", "unit_price", "tax_rate")
BAD_PARAMETERS = "some parameters are invalid"


class Strict(msgspec.Struct, forbid_unknown_fields=True):
    """A request body that refuses unknown fields (API.md: unknown fields are a 422)."""


def body_field_error(path: str, message: str) -> FieldError:
    """A msgspec decoding error (`path` like `lines[0]`, message like "Object contains unknown field
    `x`") as the field path and plain words the API promises (`lines[0].x`: "unknown field")."""
    path = "" if path in ("data", "$") else path.lstrip("$").lstrip(".")
    unknown = re.match(r"Object contains unknown field `([^`]+)`", message)
    if unknown:
        path, message = ".".join(p for p in (path, unknown[1]) if p), "unknown field"
    missing = re.match(r"Object missing required field `([^`]+)`", message)
    if missing:
        path, message = ".".join(p for p in (path, missing[1]) if p), "is required"
    if path.split(".")[-1] in _DECIMAL_FIELDS and "got `" in message:
        message = 'must be a decimal string such as "2.50", not a JSON number'
    return FieldError(path or "(body)", message)


def decode(body: bytes, kind: type[T]) -> T:
    """Decode a JSON body strictly: malformed JSON is a 400; wrong types or unknown fields a 422
    whose `errors` names the field path (`lines[2].quantity`)."""
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        match = _AT.match(str(exc))
        assert match is not None
        raise ValidationFailed(errors=[body_field_error(match["path"] or "", match["msg"])]) from None
    except msgspec.DecodeError as exc:
        raise MalformedRequest(f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise MalformedRequest("the body is nested too deeply") from None


def encode_cursor(seq: int, tag: str = "s") -> str:
    """An opaque list cursor: the last row's sequence number, tagged by list kind."""
    return base64.urlsafe_b64encode(f"{tag}{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, tag: str = "s") -> int | None:
    """The sequence number in a cursor of this list kind; 422 naming `cursor` for anything else."""
    if not cursor:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        digits = text[len(tag) :]
        if text.startswith(tag) and digits.isascii() and digits.isdigit() and len(digits) <= 18:
            return int(digits)
    except (ValueError, UnicodeDecodeError):
        pass
    raise BadParameters(errors=[FieldError("cursor", "is not a cursor this API gave out")], detail=BAD_PARAMETERS)


# The media types a route reads its body as: JSON unless the route says otherwise in its `opt` (the form routes).
# A browser can send text/plain or a form to another site without asking it first (no CORS preflight), but never
# application/json: so a JSON route that reads only JSON cannot be driven by a page on another site.
ACCEPTS = "accepts"
JSON_ONLY = ("application/json",)
FORM = ("application/x-www-form-urlencoded", "multipart/form-data")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def media_type_middleware(app: ASGIApp) -> ASGIApp:
    """The app's media-type rule, as ASGI middleware (after routing: the route is in the scope): a body must be of a
    media type the route reads (`opt["accepts"]`, JSON by default), else 415 saying what was sent and what is
    accepted. A request without a body and without a Content-Type (a manifest's close) passes; the route itself
    says whether it needs a body. Middleware, not a guard: litestar copies the route handler for every guard call
    (about 18 µs), on every request of every route, a GET too (docs/issuing.md)."""

    async def check_media_type(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP and scope["method"] in _BODY_METHODS:
            accepted: tuple[str, ...] = tuple(scope["route_handler"].opt.get(ACCEPTS, JSON_ONLY))
            media_type_refusal(dict(scope["headers"]), accepted)
        await app(scope, receive, send)

    return check_media_type


def media_type_refusal(headers: dict[bytes, bytes], accepted: tuple[str, ...]) -> None:
    """Raise 415 unless the body these (lower-case) request headers announce is of an `accepted` media type, or
    there is none."""
    header = headers.get(b"content-type")
    sent = header.decode("latin-1").split(";", 1)[0].strip().lower() if header is not None else ""
    if sent in accepted:
        return
    has_body = headers.get(b"content-length", b"0") not in (b"", b"0") or b"transfer-encoding" in headers
    if header is None and not has_body:
        return
    raise UnsupportedMediaType(sent or "no Content-Type", accepted)


KeyOwner = tuple[str, str]  # (kind, owner id)
_UNCACHED = object()


@dataclass
class Authenticator:
    """Bearer API keys, checked against the database at most every `key_ttl_s` per key (a revocation takes
    effect within that time; only key hashes are held), and the issuers behind them."""

    pool: asyncpg.Pool
    key_ttl_s: float = 5.0
    issuer_ttl_s: float = 300.0
    clock: Callable[[], float] = time.monotonic
    keys: TTLCache[bytes, KeyOwner | None] = field(init=False)
    issuers: TTLCache[str, Issuer] = field(init=False)

    def __post_init__(self) -> None:
        self.keys = TTLCache(maxsize=10_000, ttl=self.key_ttl_s, timer=self.clock)
        self.issuers = TTLCache(maxsize=10_000, ttl=self.issuer_ttl_s, timer=self.clock)

    async def owner(self, request: Request[Any, Any, Any], kind: str) -> str:
        """The owner id of the request's bearer key of `kind`; 401 otherwise (a key of the other kind too)."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("send the API key as 'Authorization: Bearer <key>'")
        found = await self._lookup(token.strip())
        if found is None or found[0] != kind:
            raise Unauthorized(f"the key is not a valid {kind} key")
        return found[1]

    async def _lookup(self, api_key: str) -> KeyOwner | None:
        digest = repository.key_hash(api_key)
        # One read at one moment (TTLCache.get holds its clock): `in` then `[]` read the clock twice, and an entry
        # expiring in between raised KeyError (a 500 under load). None is a cached answer too: an unknown key.
        cached = self.keys.get(digest, _UNCACHED)
        if cached is not _UNCACHED:
            return cast(KeyOwner | None, cached)
        async with self.pool.acquire() as conn:
            found = await repository.find_key(conn, api_key)
        self.keys[digest] = found
        return found

    async def issuer(self, request: Request[Any, Any, Any]) -> Issuer:
        """The issuer of the request's issuer key; 401 otherwise."""
        issuer_id = await self.owner(request, "issuer")
        issuer = self.issuers.get(issuer_id)
        if issuer is None:
            async with self.pool.acquire() as conn:
                issuer = await repository.get_issuer(conn, issuer_id)
            if issuer is None:
                raise Unauthorized("the key's issuer no longer exists")
            self.issuers[issuer_id] = issuer
        return issuer


class Guarded(Protocol):
    """A side's API object (`issuer_api`, `postal_api`): it carries the Authenticator its routes check keys with.

    The key check depends on the side's object rather than on a dependency of its own, so a route resolves its
    dependencies one after the other: litestar starts a task group for dependencies resolved side by side."""

    @property
    def auth(self) -> Authenticator:
        """The service's one Authenticator."""
        ...


# The sides' objects are typed `Any` for litestar, which would check a Protocol with isinstance on every request.


async def provide_issuer(request: Request[Any, Any, Any], issuer_api: NamedDependency[Any]) -> Issuer:
    """The `issuer` dependency of the issuer routes (`issuer_api` is a `Guarded`)."""
    guarded: Guarded = issuer_api
    return await guarded.auth.issuer(request)


async def provide_operator(request: Request[Any, Any, Any], postal_api: NamedDependency[Any]) -> str:
    """The `operator_id` dependency of the postal routes (`postal_api` is a `Guarded`); 401 for an issuer key or
    none."""
    guarded: Guarded = postal_api
    return await guarded.auth.owner(request, "operator")
