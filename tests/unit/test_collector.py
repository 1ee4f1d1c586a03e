"""The serve workers' cyclic collector (`invoiceloop.app.tune_collector`): a whole batch of the largest size, made
into records, sealed and answered as the batch endpoint does, sets off no collection of its own; at Python's
default threshold the same batch sets off dozens (docs/issuing.md, "The collector and the batch")."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from invoiceloop.app import GC_YOUNG_THRESHOLD, tune_collector
from invoicing import numbering, schemas, validation
from invoicing.api import MAX_BATCH
from invoicing.numbering import FixedSigner, Issuing
from invoicing.repository import Issuer
from tests.samples import invoice_body
from tests.unit.example_record import SECRET, example_signer

RATES = (Decimal("0"), Decimal("0.06"), Decimal("0.09"), Decimal("0.13"))
ISSUER = Issuer(
    "00000000-0000-4000-8000-0000000000aa",
    "广州示例科技有限公司",
    "91440101MA5CXKYQ1K",
    "4401",
    "广州市天河区天河路 1 号",
    None,
)


def _batch(raw: bytes) -> list[Any]:
    """What the batch endpoint keeps alive from its request to its answer: the decoded request, the drafts, the
    records made and sealed, and the answer's invoices."""
    issuing = Issuing(SECRET, FixedSigner(example_signer()))
    signer = issuing.signers.current()
    data = msgspec.json.decode(raw, type=schemas.BatchIn)
    drafts = [numbering.draft_of(validation.invoice_request(msgspec.to_builtins(i), RATES)) for i in data.invoices]
    now = datetime.now(UTC)
    made = [numbering.unplaced(draft, ISSUER, now) for draft in drafts]
    sealed = [numbering.placed(one, "440126000001", n, "0" * 64, issuing, signer) for n, one in enumerate(made, 1)]
    answer = [schemas.invoice_json(inv, "https://invoiceloop.example", content) for inv, content, _ in sealed]
    return [data, drafts, made, sealed, answer]


def _collections_during(work: Callable[[], object]) -> list[int]:
    """The generation of each collection the collector ran while `work` ran, starting from an empty young one."""
    ran: list[int] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            ran.append(info["generation"])

    gc.collect()
    gc.callbacks.append(seen)
    try:
        work()
    finally:
        gc.callbacks.remove(seen)
    return ran


@pytest.fixture
def collector() -> Iterator[None]:
    """The collector as a serve worker leaves it after start-up; this test process's own afterwards."""
    before = gc.get_threshold()
    tune_collector()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


@pytest.mark.usefixtures("collector")
def test_a_whole_batch_sets_off_no_collection_in_a_serve_worker() -> None:
    raw = msgspec.json.encode({"invoices": [invoice_body(series="batch") for _ in range(MAX_BATCH)]})
    assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD
    assert _collections_during(lambda: _batch(raw)) == []
    # The control: at Python's default the same batch sets off dozens, each walking the batch's live objects.
    gc.set_threshold(700, 10, 10)
    assert len(_collections_during(lambda: _batch(raw))) > 20
