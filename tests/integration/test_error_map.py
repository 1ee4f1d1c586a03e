"""The app's one error map, in process on real PostgreSQL and Redis: an unreachable backend (or a transaction
PostgreSQL rolled back to break a deadlock) is a 503 with Retry-After and a bug a 500, each as problem+json for programs and as the HTML page on `/verify`. Stand-in
routes raise what a dropped connection or a bug raises, since neither can be caused on demand."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
import pytest
import redis.exceptions
from litestar import get, post
from litestar.exceptions import InternalServerException
from litestar.testing import AsyncTestClient

from invoiceloop.app import create_app
from invoiceloop.problems import CLIENT_GONE
from invoiceloop.settings import Settings


def raising(route: Any, path: str, error: Exception) -> Any:
    """A stand-in route at `path` that raises `error`."""

    async def handler() -> None:
        raise error

    name = f"raise_{route.__name__}_{path.strip('/').replace('/', '_')}"
    handler.__name__ = handler.__qualname__ = name
    return route(path, operation_id=name)(handler)


page_outage = raising(get, "/verify", asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"))
page_bug = raising(post, "/verify", RuntimeError("a bug"))
api_outage = raising(get, "/v1/outage", redis.exceptions.ConnectionError("Error 111 connecting. Connection refused."))
api_bug = raising(get, "/v1/bug", RuntimeError("a bug"))
deadlock = raising(post, "/v1/deadlock", asyncpg.exceptions.DeadlockDetectedError("deadlock detected"))


async def test_outages_are_503_and_bugs_500_in_the_callers_format(settings: Settings) -> None:
    app = create_app(settings, routes=[page_outage, page_bug, api_outage, api_bug, deadlock])
    async with AsyncTestClient(app) as client:
        outage: Any = await client.get("/v1/outage")
        assert outage.status_code == 503 and outage.headers["content-type"].startswith("application/problem+json")
        assert (
            outage.headers["retry-after"] == str(outage.json()["retry_after"])
            and "Connection refused" not in outage.text
        )
        rolled_back: Any = await client.post("/v1/deadlock")  # PostgreSQL broke a deadlock: nothing was written
        assert rolled_back.status_code == 503 and rolled_back.headers["retry-after"]
        bug = await client.get("/v1/bug")
        assert bug.status_code == 500 and bug.headers["content-type"].startswith("application/problem+json")
        assert "a bug" not in bug.text
        page = await client.get("/verify")
        assert page.status_code == 503 and page.headers["content-type"].startswith("text/html")
        assert 'id="failure"' in page.text and "暂时不可用" in page.text and page.headers["retry-after"]
        broken = await client.post("/verify")
        assert broken.status_code == 500 and broken.headers["content-type"].startswith("text/html")
        assert "查验出错" in broken.text and "retry-after" not in broken.headers and "a bug" not in broken.text


cut_off = raising(post, "/v1/cut-off", InternalServerException(CLIENT_GONE))
framework_bug = raising(get, "/v1/framework-bug", InternalServerException("a misconfigured route"))


async def test_a_client_that_hangs_up_is_no_bug_and_litestars_own_500_is(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings, routes=[cut_off, framework_bug])
    logger = logging.getLogger("invoiceloop")  # it does not propagate to the root, where caplog listens
    logger.addHandler(caplog.handler)
    try:
        async with AsyncTestClient(app) as client:
            gone: Any = await client.post("/v1/cut-off", json={})
            assert gone.status_code == 400 and not [r for r in caplog.records if r.levelno >= logging.ERROR]
            bug: Any = await client.get("/v1/framework-bug")
            assert bug.status_code == 500 and [r for r in caplog.records if r.levelno >= logging.ERROR]
    finally:
        logger.removeHandler(caplog.handler)
