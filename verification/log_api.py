"""The public transparency log over HTTP (API.md "Transparency log"): the checkpoint, the log's verifier key,
tiles (tlog-tiles), inclusion and consistency proofs (RFC 9162), and a record's leaf index. No key needed.
Tiles of a given width never change, so they are cacheable for good; the checkpoint moves every second."""

from __future__ import annotations

import functools
import re
from typing import Annotated, Any

from litestar import Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter

from invoicing import log_repository, merkle
from invoicing.errors import BadParameters, FieldError, NotFound
from invoicing.tiles import LogError, TileStoreError, parse_tile_path
from verification.views import PublicApi

IMMUTABLE = {"Cache-Control": "public, max-age=31536000, immutable"}
FRESH = {"Cache-Control": "public, max-age=1"}
_HASH = re.compile(r"[0-9a-f]{64}")
Size = Annotated[int, QueryParameter(ge=0, le=2**63 - 1)]


def _refuse(field: str, exc: Exception) -> BadParameters:
    return BadParameters(errors=[FieldError(field, str(exc))], detail="some parameters are invalid")


async def _tree_size(public_api: PublicApi) -> int:
    reader = public_api.verifier.log
    head = await reader.head() if reader else None
    if head is None:
        raise NotFound("the log has no checkpoint yet")
    return head.size


@get("/v1/log/checkpoint", tags=["transparency log"], media_type="text/plain")
async def log_checkpoint(public_api: NamedDependency[PublicApi]) -> Response[str]:
    """The latest checkpoint: a C2SP signed note of the origin, the tree size and the root hash."""
    reader = public_api.verifier.log
    head = await reader.head() if reader else None
    if head is None:
        raise NotFound("the log has no checkpoint yet")
    return Response(head.checkpoint, media_type="text/plain", headers=FRESH)


@get("/v1/log/key", tags=["transparency log"], media_type="text/plain")
async def log_key(public_api: NamedDependency[PublicApi]) -> Response[str]:
    """The log's verifier key (signed-note format) that witnesses and monitors pin."""
    if public_api.log_verifier_key is None:
        raise NotFound("this server does not publish the log key")
    return Response(public_api.log_verifier_key + "\n", media_type="text/plain", headers=IMMUTABLE)


@get("/v1/log/tile/{path:path}", tags=["transparency log"], media_type="application/octet-stream")
async def log_tile(public_api: NamedDependency[PublicApi], path: FromPath[str]) -> Response[bytes]:
    """A hash tile `tile/{L}/{N}[.p/{W}]` or an entry bundle `tile/entries/{N}[.p/{W}]` (tlog-tiles)."""
    try:
        key = parse_tile_path("tile/" + path.lstrip("/"))
    except LogError as exc:
        raise _refuse("path", exc) from None
    reader = public_api.verifier.log
    try:
        data = (await reader.read([key]))[key] if reader else None
    except TileStoreError:
        data = None
    if data is None:
        raise NotFound(f"{key.path()} is not in the log (yet)")
    return Response(data, media_type="application/octet-stream", headers=IMMUTABLE)


@get("/v1/log/proof/inclusion", tags=["transparency log"])
async def log_inclusion(
    public_api: NamedDependency[PublicApi], leaf_index: Size, tree_size: Size
) -> Response[dict[str, Any]]:
    """The RFC 9162 inclusion proof of leaf `leaf_index` in the tree of `tree_size` entries."""
    if tree_size > await _tree_size(public_api):
        raise _refuse("tree_size", ValueError("is larger than the latest checkpoint's tree"))
    reader = public_api.verifier.log
    assert reader is not None
    try:
        hashes = merkle.inclusion_proof(
            leaf_index, tree_size, await reader.read(merkle.tiles_for_inclusion(leaf_index, tree_size)), reader.rows
        )
    except LogError as exc:
        raise _refuse("leaf_index", exc) from None
    body = {"leaf_index": leaf_index, "tree_size": tree_size, "hashes": [merkle.format_hash(h) for h in hashes]}
    return Response(body, headers=IMMUTABLE)


@get("/v1/log/proof/consistency", tags=["transparency log"])
async def log_consistency(
    public_api: NamedDependency[PublicApi], first: Size, second: Size
) -> Response[dict[str, Any]]:
    """The RFC 9162 consistency proof between the trees of `first` and `second` entries."""
    if second > await _tree_size(public_api):
        raise _refuse("second", ValueError("is larger than the latest checkpoint's tree"))
    reader = public_api.verifier.log
    assert reader is not None
    try:
        hashes = await reader.consistency(first, second)
    except LogError as exc:
        raise _refuse("first", exc) from None
    body = {"first": first, "second": second, "hashes": [merkle.format_hash(h) for h in hashes]}
    return Response(body, headers=IMMUTABLE)


@get("/v1/log/leaves/{record_hash:str}", tags=["transparency log"])
async def log_leaf(public_api: NamedDependency[PublicApi], record_hash: FromPath[str]) -> dict[str, int]:
    """The leaf index of a record (by its record hash) once it is in the log; 404 before."""
    if not _HASH.fullmatch(record_hash):
        raise _refuse("record_hash", ValueError("must be 64 lowercase hex digits"))
    reads = public_api.verifier.reads
    assert reads is not None
    read = functools.partial(log_repository.leaf_of, record_hash=record_hash)
    index = await reads.found(read)  # sequenced a moment ago: the replica may not have it yet
    if index is None:
        raise NotFound("the record is not in the log (yet)")
    return {"leaf_index": index}
