"""ALTCHA proofs of work (https://altcha.org, PoW v2, the `altcha` library): the challenge a client not yet proven
is asked to solve when guessing concentrates on an invoice, and the check of its solution. The HMAC key is derived
from the service secret (`Settings.secret_bytes()`), so every process of a deployment agrees without a new
setting. Checking each challenge once (no replays) is the limits' business (`Limits.claim`)."""

from __future__ import annotations

import binascii
import hashlib
import hmac
import json
import re
import time
from typing import Any

import altcha

from invoicing.errors import DomainError
from verification.limits import LimitFigures

ALGORITHM = "PBKDF2/SHA-256"  # the widget's bundled worker computes it with WebCrypto; no memory-hard worker to ship
PAYLOAD_MAX_CHARS = 4096  # a real payload is ~600 characters
NOT_A_PAYLOAD = "is not an ALTCHA payload"
_SIGNATURE = re.compile(r"[0-9a-f]{64}")  # HMAC-SHA256, hex


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

    def solution_id(self, payload: str) -> str | None:
        """The id a payload's challenge is claimed by (its signature, as sent), or None when it is no payload."""
        if len(payload) > PAYLOAD_MAX_CHARS:
            return None
        try:
            signature = json.loads(binascii.a2b_base64(payload))["challenge"]["signature"]
        except (ValueError, TypeError, KeyError, binascii.Error):
            return None
        return signature if isinstance(signature, str) and _SIGNATURE.fullmatch(signature) else None

    def check(self, payload: str) -> str:
        """ "" when `payload` solves one of our challenges in time, else why not. CPU: one key derivation
        (`challenge_cost` PBKDF2 iterations) once the signature checks."""
        try:
            result = altcha.verify_solution(payload, self.key)
        except (ValueError, TypeError, KeyError, AttributeError, binascii.Error):  # shapes the library does not expect
            return NOT_A_PAYLOAD
        if result.error:
            return NOT_A_PAYLOAD
        if result.expired:
            return "the challenge has expired: solve the new one"
        if not result.verified:
            return "does not solve a challenge of this service"
        return ""
