"""One error tree for the whole service; `app.py` maps it to problem+json in one place.

Pure: no I/O imports, so the model and the formats may raise these.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FieldError:
    """One thing wrong with one field of a request (`field` is a path like `lines[2].quantity`)."""

    field: str
    message: str


class DomainError(Exception):
    """Base of every refusal the service gives on purpose. `status` is the HTTP status it maps to."""

    status = 400
    title = "Bad request"
    type_slug = "bad-request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass
class ValidationFailed(DomainError):
    """The request is well-formed JSON but some fields are wrong; every wrong field is listed."""

    errors: list[FieldError] = field(default_factory=list)
    detail: str = "The request has invalid fields."

    status = 422
    title = "Validation failed"
    type_slug = "validation"

    def __post_init__(self) -> None:
        Exception.__init__(self, self.detail)


class NotFound(DomainError):
    status = 404
    title = "Not found"
    type_slug = "not-found"


class Conflict(DomainError):
    """The request is valid but the object's state forbids it (void a dispatched invoice, ...)."""

    status = 409
    title = "Conflict"
    type_slug = "conflict"


class IdempotencyMismatch(DomainError):
    status = 422
    title = "Idempotency-Key reused with another body"
    type_slug = "idempotency-mismatch"


class Unauthorized(DomainError):
    status = 401
    title = "Unauthorized"
    type_slug = "unauthorized"


class RateLimited(DomainError):
    status = 429
    title = "Too many requests"
    type_slug = "rate-limited"

    def __init__(self, detail: str, retry_after_s: int) -> None:
        super().__init__(detail)
        self.retry_after_s = max(1, int(retry_after_s))


class Unavailable(DomainError):
    """Something the request needs cannot be reached just now (PostgreSQL, Redis): nothing was carried out
    and the same request may be sent again after `retry_after_s`."""

    status = 503
    title = "Service unavailable"
    type_slug = "unavailable"
    retry_after_s = 5


class SmsSendFailed(Exception):
    """A text could not be sent (the SMS channel or the network refused); `reason` is short and never carries
    credentials. The outbox job retries on it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ConfigError(Exception):
    """The service is set up wrongly (missing key file, bad URL): a message for the operator, not a 4xx."""


class FieldErrors:
    """Collects field errors while validating; `raise_if_any()` raises one `ValidationFailed` for all."""

    def __init__(self) -> None:
        self.items: list[FieldError] = []

    def add(self, field_path: str, message: str) -> None:
        self.items.append(FieldError(field_path, message))

    def raise_if_any(self) -> None:
        if self.items:
            raise ValidationFailed(errors=list(self.items))
