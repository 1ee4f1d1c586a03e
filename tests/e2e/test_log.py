"""The public log end to end: invoices issued over HTTP are sequenced by the real worker, the verification
answer carries an inclusion proof that an outside verifier checks (our RFC 9162 verifier and the signed note,
not the server's code), the tiles and proofs are served as tlog-tiles and RFC 9162 say, and a key rotation
reaches every serve worker without a restart.

Its own deployment: two `serve` worker processes and one `worker`, on a database of its own."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from invoiceloop.settings import Settings
from invoicing import merkle
from invoicing.checkpoint import Checkpoint, open_checkpoint
from invoicing.merkle_verify import verify_consistency, verify_inclusion
from invoicing.note import parse_verifier_key
from invoicing.tiles import decode_bundle
from tests.conftest import ServerProcess, new_issuer
from tests.delivery_fixtures import WorkerProcess, wait_until
from tests.deployment import own_deployment
from tests.integration.test_cli_audit import cli
from tests.samples import invoice_body

deployment = own_deployment("log")


@pytest.fixture(scope="module")
def log_server(deployment: Settings, output_dir: Path) -> Iterator[ServerProcess]:
    """Two uvicorn worker processes: requests land on either."""
    server = ServerProcess(deployment, output_dir / "log-server.log", workers=2)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def log_worker(deployment: Settings, output_dir: Path) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(deployment, output_dir / "log-worker.log")
    yield worker
    worker.stop()


@pytest.fixture
async def client(log_server: ServerProcess, log_worker: WorkerProcess, deployment: Settings) -> AsyncIterator[Any]:
    from invoicing import db

    pool = await db.create_pool(deployment.require_database_url(), max_size=2)
    _, key = await new_issuer(pool)
    await pool.close()
    async with httpx.AsyncClient(
        base_url=log_server.base_url, timeout=30, headers={"Authorization": f"Bearer {key}"}
    ) as http:
        yield http


async def issue(client: httpx.AsyncClient, count: int) -> list[dict[str, Any]]:
    answer = await client.post("/v1/invoices/batch", json={"invoices": [invoice_body() for _ in range(count)]})
    assert answer.status_code == 201, answer.text
    return list(answer.json()["invoices"])


async def logged(client: httpx.AsyncClient, invoices: list[dict[str, Any]]) -> dict[str, int]:
    """Wait until the worker has put every invoice in the log; their leaf indexes."""
    found: dict[str, int] = {}

    async def all_in() -> bool:
        for inv in invoices:
            if inv["record_hash"] not in found:
                answer = await client.get(f"/v1/log/leaves/{inv['record_hash']}")
                if answer.status_code == 200:
                    found[inv["record_hash"]] = answer.json()["leaf_index"]
        return len(found) == len(invoices)

    await wait_until(all_in, timeout_s=60, every_s=0.2)
    return found


async def checkpoint(client: httpx.AsyncClient, at_least: int = 0) -> Checkpoint:
    """The served checkpoint, opened with the served verifier key, once it covers `at_least` entries."""
    key = parse_verifier_key((await client.get("/v1/log/key")).text.strip())
    for _ in range(100):
        answer = await client.get("/v1/log/checkpoint")
        assert answer.headers["content-type"].startswith("text/plain")
        opened = open_checkpoint(answer.text, key)
        if opened.size >= at_least:
            return opened
        await asyncio.sleep(0.1)
    raise AssertionError(f"no checkpoint of {at_least} entries")


async def test_a_verification_carries_a_proof_an_outsider_can_check(client: httpx.AsyncClient) -> None:
    invoices = await issue(client, 5)
    leaves = await logged(client, invoices)
    inv = invoices[2]
    cp = await checkpoint(client, max(leaves.values()) + 1)
    query = {k: inv[k] for k in ("invoice_code", "invoice_number", "issue_date")}
    answer = (await client.post("/v1/verifications", json={**query, "check_code_last6": inv["check_code"][-6:]})).json()
    assert answer["result"] == "valid"
    log = answer["log"]
    assert log["leaf_index"] == leaves[inv["record_hash"]]
    carried = open_checkpoint(log["checkpoint"], parse_verifier_key((await client.get("/v1/log/key")).text.strip()))
    assert carried.size == log["tree_size"] >= cp.size
    proof = [base64.b64decode(h) for h in log["inclusion_proof"]]
    leaf = merkle.leaf_hash(bytes.fromhex(inv["record_hash"]))
    assert verify_inclusion(leaf, log["leaf_index"], log["tree_size"], proof, carried.root)
    assert not verify_inclusion(leaf, log["leaf_index"] ^ 1, log["tree_size"], proof, carried.root)
    page = await client.get(inv["verify_url"].replace("http://127.0.0.1:8000", str(client.base_url)))
    assert 'id="log-entry"' in page.text and f"索引 {log['leaf_index']}（" in page.text


async def test_tiles_and_proofs_as_the_specifications_say(client: httpx.AsyncClient) -> None:
    first = await issue(client, 3)
    await logged(client, first)
    old = await checkpoint(client)
    later = await issue(client, 4)
    leaves = await logged(client, later)
    new = await checkpoint(client, max(leaves.values()) + 1)
    consistency = (await client.get("/v1/log/proof/consistency", params={"first": old.size, "second": new.size})).json()
    assert verify_consistency(
        old.size, new.size, old.root, new.root, [base64.b64decode(h) for h in consistency["hashes"]]
    )
    index = leaves[later[0]["record_hash"]]
    inclusion = await client.get("/v1/log/proof/inclusion", params={"leaf_index": index, "tree_size": new.size})
    assert inclusion.headers["cache-control"] == "public, max-age=31536000, immutable"
    hashes = [base64.b64decode(h) for h in inclusion.json()["hashes"]]
    assert verify_inclusion(merkle.leaf_hash(bytes.fromhex(later[0]["record_hash"])), index, new.size, hashes, new.root)
    width = new.size % 256 or 256
    suffix = "" if width == 256 else f".p/{width}"
    tile = await client.get(f"/v1/log/tile/0/000{suffix}")
    bundle = await client.get(f"/v1/log/tile/entries/000{suffix}")
    assert tile.status_code == bundle.status_code == 200 and tile.headers["content-type"] == "application/octet-stream"
    entries = decode_bundle(bundle.content)
    assert len(entries) == width and len(tile.content) == 32 * width
    assert [tile.content[i * 32 : i * 32 + 32] for i in range(width)] == [merkle.leaf_hash(e) for e in entries]
    assert entries[index] == bytes.fromhex(later[0]["record_hash"])


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/v1/log/tile/0/1234", None, 400),  # not three digits
        ("/v1/log/tile/0/000.p/0", None, 400),
        ("/v1/log/tile/0/x999/999", None, 404),  # well formed, not in the log
        ("/v1/log/proof/inclusion", {"leaf_index": 5, "tree_size": 5}, 400),
        ("/v1/log/proof/inclusion", {"leaf_index": 0, "tree_size": 10**12}, 400),
        ("/v1/log/proof/inclusion", {"leaf_index": -1, "tree_size": 1}, 400),
        ("/v1/log/proof/consistency", {"first": 3, "second": 2}, 400),
        ("/v1/log/leaves/" + "0" * 64, None, 404),
        ("/v1/log/leaves/XYZ", None, 400),
    ],
)
async def test_bad_log_requests_are_4xx_problems(
    client: httpx.AsyncClient, path: str, params: dict[str, int] | None, status: int
) -> None:
    await logged(client, await issue(client, 6))
    answer = await client.get(path, params=params)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")


async def test_a_rotation_reaches_every_server_process_without_a_restart(
    client: httpx.AsyncClient, deployment: Settings
) -> None:
    before = await issue(client, 4)
    old_key = before[0]["key_id"]
    out = cli(deployment, "keys", "rotate")
    assert out.returncode == 0, out.stderr
    match = re.search(r"new signing key ([0-9a-f]{16})", out.stdout)
    assert match is not None and match[1] != old_key, out.stdout
    new_key = match[1]

    async def every_process_signs_with_the_new_key() -> bool:
        return all(inv["key_id"] == new_key for inv in await issue(client, 10))

    await wait_until(every_process_signs_with_the_new_key, timeout_s=15, every_s=0.5)
    for _ in range(5):  # requests land on both processes: every one signs with the new key, and agrees
        assert {inv["key_id"] for inv in await issue(client, 10)} == {new_key}
    published = {k["kid"] for k in (await client.get("/.well-known/jwks.json")).json()["keys"]}
    assert {old_key, new_key} <= published
    for inv in (before[0], (await issue(client, 1))[0]):
        query = {k: inv[k] for k in ("invoice_code", "invoice_number", "issue_date")}
        answer = await client.post("/v1/verifications", json={**query, "check_code_last6": inv["check_code"][-6:]})
        assert answer.json()["result"] == "valid"
