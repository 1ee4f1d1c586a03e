"""One error tree for the whole service. Pure: no I/O, no HTTP; the model and the formats may raise these.
The composition root (`invoiceloop.problems`) maps each kind of refusal to its HTTP status and
problem+json type in one table."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FieldError:
    """One thing wrong with one field of a request (`field` is a path like `lines[2].quantity`)."""

    field: str
    message: str


class DomainError(Exception):
    """Base of every refusal the service gives on purpose; `detail` says why, in words for the caller."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass
class ValidationFailed(DomainError):
    """The request is well-formed but some fields are wrong; every wrong field is listed."""

    errors: list[FieldError] = field(default_factory=list)
    detail: str = "The request has invalid fields."

    def __post_init__(self) -> None:
        Exception.__init__(self, self.detail)


class BadParameters(ValidationFailed):
    """Query or path parameters that are wrong (a 400, where a body's wrong fields are a 422); every one listed."""


class MalformedRequest(DomainError):
    """The body cannot be read at all (not JSON, not a form)."""


class UnsupportedMediaType(DomainError):
    """The body was sent as a media type the route does not read (`sent`); `accepted` lists the ones it does."""

    def __init__(self, sent: str, accepted: tuple[str, ...]) -> None:
        super().__init__(f"this endpoint accepts {' or '.join(accepted)}; the request was sent as {sent}")
        self.sent = sent
        self.accepted = accepted


class NotFound(DomainError):
    """No such object for this caller (another tenant's object is not found either)."""


class Gone(DomainError):
    """It was here and is no more, for good (an expired download link)."""


class Conflict(DomainError):
    """The request is valid but the object's state forbids it (void a dispatched invoice, ...)."""


class IdempotencyMismatch(DomainError):
    """An Idempotency-Key was used before with another request body."""


class Unauthorized(DomainError):
    """No key, or not a valid key of the kind this route takes."""


class Forbidden(DomainError):
    """The caller proved who it is, and that is not enough (a webhook's signature does not check)."""


class RateLimited(DomainError):
    """Over a rate limit; the same request may be sent again after `retry_after_s`."""

    def __init__(self, detail: str, retry_after_s: int) -> None:
        super().__init__(detail)
        self.retry_after_s = max(1, int(retry_after_s))


class Unavailable(DomainError):
    """Something the request needs cannot be reached just now (PostgreSQL, Redis): nothing was carried out
    and the same request may be sent again after `retry_after_s`."""

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
        """Note that `field_path` is wrong, and why."""
        self.items.append(FieldError(field_path, message))

    def raise_if_any(self) -> None:
        """Raise one `ValidationFailed` naming every field noted, if any."""
        if self.items:
            raise ValidationFailed(errors=list(self.items))
