"""ALTCHA proofs of work (https://altcha.org, PoW v2, the `altcha` library): the challenge a client not yet proven
is asked to solve when guessing concentrates on an invoice, and the check of its solution. The HMAC key is derived
from the service secret (`Settings.secret_bytes()`), so every process of a deployment agrees without a new
setting. Redeeming a solution once (no replays) is the limits' business (`Limits.redeem`)."""

from __future__ import annotations

import binascii
import hashlib
import hmac
import json
import time
from typing import Any

import altcha

from invoicing.errors import DomainError
from verification.limits import LimitFigures

ALGORITHM = "PBKDF2/SHA-256"  # the widget's bundled worker computes it with WebCrypto; no memory-hard worker to ship
PAYLOAD_MAX_CHARS = 4096  # a real payload is ~600 characters


class ChallengeRequired(DomainError):
    """Answer 428 with a fresh `challenge`; `reason` says what was wrong with a proof that was sent (field `altcha`)."""

    def __init__(self, challenge: dict[str, Any], reason: str | None = None) -> None:
        super().__init__(
            "guessing concentrates on this invoice: solve the proof of work in `challenge` and send the request "
            'again with "altcha": "<base64 payload>"'
        )
        self.challenge = challenge
        self.reason = reason


class Challenger:
    """Makes and checks challenges with an HMAC key derived from the service secret."""

    def __init__(self, secret: bytes, figures: LimitFigures) -> None:
        self.key = hmac.new(secret, b"altcha-hmac-key|v2", hashlib.sha256).hexdigest()
        self.figures = figures

    def issue(self) -> dict[str, Any]:
        """A new signed challenge, as the JSON object the widget and `altcha.solve_challenge` take."""
        f = self.figures
        made = altcha.create_challenge(
            ALGORITHM,
            f.challenge_cost,
            key_prefix="0" * f.challenge_zeros,
            expires_at=int(time.time()) + f.challenge_ttl_s,
            hmac_secret=self.key,
        )
        return dict(made.to_dict())

    def required(self, reason: str | None = None) -> ChallengeRequired:
        """The refusal carrying a fresh challenge."""
        return ChallengeRequired(self.issue(), reason)

    def check(self, payload: str) -> tuple[str | None, str]:
        """(the solution's id, "") when `payload` solves one of our challenges in time, else (None, why). The id
        (the challenge's signature) is what `Limits.redeem` records so that a solution proves only once."""
        if len(payload) > PAYLOAD_MAX_CHARS:
            return None, "is not an ALTCHA payload"
        try:
            result = altcha.verify_solution(payload, self.key)
        except (ValueError, TypeError, KeyError, AttributeError, binascii.Error):  # shapes the library does not expect
            return None, "is not an ALTCHA payload"
        if result.error:
            return None, "is not an ALTCHA payload"
        if result.expired:
            return None, "the challenge has expired: solve the new one"
        if not result.verified:
            return None, "does not solve a challenge of this service"
        return str(json.loads(binascii.a2b_base64(payload))["challenge"]["signature"]), ""
