"""The API-key cache of `invoicing.http.Authenticator`, on a real pool: an answer cached near the end of its time is
read once, at one moment."""

from __future__ import annotations

from typing import Any, cast

import asyncpg
from litestar import Request
from litestar.types import HTTPScope

from invoicing.http import Authenticator
from invoicing.repository import Issuer


class Ticking:
    """A clock that moves on by `step` seconds each time it is read."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def bearer(key: str) -> Request[Any, Any, Any]:
    scope = {"type": "http", "method": "GET", "path": "/", "headers": [(b"authorization", f"Bearer {key}".encode())]}
    return Request(cast(HTTPScope, scope))


async def test_a_key_cached_as_it_expires_answers_and_is_not_a_500(
    pool: asyncpg.Pool, issuer: tuple[Issuer, str]
) -> None:
    """Each read of the clock moves it on by 0.6 s against a 1 s lifetime: a cache that asks whether the key is there
    (0.6 s after it was stored: yes) and then reads it (1.2 s after: expired) raised KeyError, a 500 under load."""
    owner, api_key = issuer
    clock = Ticking(0.6)
    auth = Authenticator(pool, key_ttl_s=1.0, clock=clock)
    assert await auth.owner(bearer(api_key), "issuer") == owner.id  # from the database, then cached
    assert await auth.owner(bearer(api_key), "issuer") == owner.id  # cached, read as it expires
    for _ in range(3):  # expired by now: looked up again, and still the same owner
        assert await auth.owner(bearer(api_key), "issuer") == owner.id
