"""What the public routes (the JSON endpoint, the page, the SMS webhook) share: the dependency the composition
root gives them, and who asks."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from litestar import Request

from verification.lottery_services import Lottery
from verification.services import Verifier


@dataclass(frozen=True)
class PublicApi:
    """What the public routes use, provided as `public_api`: the verifier of this process (with the keyring and
    the log's reader), the public URL the Twilio webhook is signed for, the Twilio auth token that signs it
    (None: the webhook refuses all) and the log's verifier key."""

    verifier: Verifier
    public_base_url: str
    twilio_auth_token: str | None = None
    log_verifier_key: str | None = None  # the transparency log's verifier key, published at /v1/log/key
    # Inbound texts answered at once in this process; each holds a pooled connection while it verifies (which
    # takes another), so this stays well below the pool's size (`start_services` uses half of it).
    inbound_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(4))
    lottery: Lottery | None = None  # the invoice lottery (`verification.lottery_services`)


def client_address(request: Request[Any, Any, Any]) -> str:
    """The client's address (uvicorn applies X-Forwarded-For only from trusted proxies)."""
    return request.client.host if request.client else "unknown"
