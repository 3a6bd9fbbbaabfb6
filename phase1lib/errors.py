"""Errors that carry every problem of a bad input at once, each naming its field and rule."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from .text import safe_display


@dataclass(frozen=True)
class FieldError:
    """One problem with one field: ``field`` names it, ``message`` states the rule and the value."""

    field: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def unknown_fields(data: Mapping[str, Any], known: Iterable[str], where: str = "") -> list[FieldError]:
    """A FieldError for each key of ``data`` not in ``known`` (shown safely, under ``where`` when given), listing
    the known ones: the one "unknown field" rule of request bodies and portfolio files."""
    allowed = tuple(known)
    return [FieldError(f"{where}.{name}" if where else name, f"unknown field; known: {', '.join(allowed)}")
            for name in (safe_display(str(k))[:64] for k in data if k not in allowed)]


class Phase1Error(Exception):
    """Base of the library's expected errors: shown to users as a message, never as a traceback."""

    #: HTTP status the server maps this error to.
    status = 400
    #: Short machine name of the error kind.
    kind = "bad_request"

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.kind, "message": str(self)}

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as message plus attributes (subclasses' constructors differ), so that an error raised in an
        engine process or a Dask worker arrives as itself."""
        return _rebuild_error, (type(self), self.args, dict(self.__dict__))


def _rebuild_error(cls: type[Phase1Error], args: tuple[Any, ...], state: dict[str, Any]) -> Phase1Error:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class InputError(Phase1Error):
    """Invalid input: a list of field errors, all of them, not only the first."""

    kind = "invalid_input"

    def __init__(self, errors: list[FieldError], what: str = "input"):
        self.errors = list(errors)
        self.what = what
        detail = "; ".join(f"{e.field}: {e.message}" for e in self.errors)
        super().__init__(f"invalid {what}: {detail}")

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["errors"] = [e.to_dict() for e in self.errors]
        return out


class GuardrailError(Phase1Error):
    """A grid larger than the permutation guardrail (HTTP 413)."""

    status = 413
    kind = "guardrail"

    def __init__(self, cardinality: int, limit: int):
        self.cardinality = cardinality
        self.limit = limit
        super().__init__(
            f"{cardinality:,} permutations exceed the guardrail of {limit:,}; narrow the ranges "
            f"or ask for a sample of at most {limit:,}"
        )

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out.update(cardinality=self.cardinality, max_permutations=self.limit)
        return out


class ValueLimitError(GuardrailError):
    """Range keys with more values than one key may hold (HTTP 413): refused before any value is built.

    ``errors`` name each key with its count and the limit (the guardrail: a key with more values than the
    whole grid may hold could never be evaluated in full).
    """

    def __init__(self, errors: list[FieldError], limit: int):
        self.errors = list(errors)
        self.limit = limit
        self.cardinality = None
        detail = "; ".join(f"{e.field}: {e.message}" for e in self.errors)
        Phase1Error.__init__(self, f"too many values: {detail}")

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.kind, "message": str(self), "errors": [e.to_dict() for e in self.errors],
                "max_values_per_key": self.limit}


class NotFoundError(Phase1Error):
    """A run, rank, preset or job that does not exist (HTTP 404)."""

    status = 404
    kind = "not_found"


class DisabledError(Phase1Error):
    """A capability switched off by a feature flag (HTTP 503)."""

    status = 503
    kind = "disabled"


class AuthError(Phase1Error):
    """Missing, wrong or expired credentials (HTTP 401); the message never says which part was wrong."""

    status = 401
    kind = "unauthorized"


class ForbiddenError(Phase1Error):
    """Authenticated but not allowed, e.g. a pending session before its MFA step (HTTP 403)."""

    status = 403
    kind = "forbidden"


class ConflictError(Phase1Error):
    """A stale version or a state that forbids the change (HTTP 409); ``details`` say what is current."""

    status = 409
    kind = "conflict"

    def __init__(self, message: str, **details: Any):
        self.details = details
        super().__init__(message)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out.update(self.details)
        return out


class LockedError(Phase1Error):
    """Too many failed attempts: locked until ``retry_after_s`` seconds from now (HTTP 429)."""

    status = 429
    kind = "locked"

    def __init__(self, retry_after_s: float):
        self.retry_after_s = max(1, int(retry_after_s + 0.999))
        minutes = max(1, round(self.retry_after_s / 60))
        super().__init__(f"too many failed attempts; try again in about {minutes} minute(s)")

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["retry_after_s"] = self.retry_after_s
        return out


class ConfigError(Phase1Error):
    """The process configuration (environment) is unusable, e.g. prod without an ops token (HTTP 500)."""

    status = 500
    kind = "config"


class HTTPProblem(Phase1Error):
    """An HTTP-level refusal with its own status and kind (unknown route, method not allowed, body too large)."""

    def __init__(self, status: int, kind: str, message: str):
        self.status = status
        self.kind = kind
        super().__init__(message)


class BusyError(Phase1Error):
    """Too many runs in flight (HTTP 429): retry after a few seconds."""

    status = 429
    kind = "busy"

    def __init__(self, message: str, retry_after_s: int = 2):
        self.retry_after_s = retry_after_s
        super().__init__(message)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["retry_after_s"] = self.retry_after_s
        return out
