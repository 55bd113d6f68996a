"""The one error shape every caller sees: {"ok": false, "error": {"code", "message", "details"}}.

Codes are stable; messages are for people. Details carry ids and paths, never key material.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ButlerError(Exception):
    """Base for every failure a caller can see. Subclasses fix the `code`."""

    code: ClassVar[str] = "internal"
    exit_code: ClassVar[int] = 1

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_payload(self) -> dict[str, Any]:
        return {"ok": False, "error": {"code": self.code, "message": self.message, "details": self.details}}


class InvalidInput(ButlerError):
    code = "invalid_input"
    exit_code = 2


class NoCapacity(ButlerError):
    code = "no_capacity"


class UnknownKey(ButlerError):
    code = "unknown_key"


class UnknownSession(ButlerError):
    code = "unknown_session"


class UnknownTask(ButlerError):
    # Not in DESIGN's first list; a task id that names nothing is its own stable case.
    code = "unknown_task"


class NotFound(ButlerError):
    # A file, directory, git revision or record the caller named that is not there (or cannot be read):
    # the input had the right shape, the world did not match it, so this is not invalid_input.
    code = "not_found"
    exit_code = 2  # like grep: the caller named something that is not there


class ProviderError(ButlerError):
    code = "provider_error"


class PolicyDenied(ButlerError):
    code = "policy_denied"


class ApprovalRequired(ButlerError):
    code = "approval_required"


class ConfigError(ButlerError):
    code = "config_error"


class StorageError(ButlerError):
    # Not in DESIGN's first list: the state database (or another file Butler keeps) cannot be used as it is
    # (corrupt, truncated, locked past the busy timeout, disk full, a directory in its place). The message
    # names the file, the cause and a fix; details carry `file` and `cause`.
    code = "storage_error"


class Conflict(ButlerError):
    # Same idempotency key (request id, intent key) with a different body: Stripe's rule.
    code = "conflict"


class InternalError(ButlerError):
    code = "internal"


ERROR_CODES: tuple[str, ...] = tuple(
    sorted(
        {
            c.code
            for c in (
                InvalidInput, NoCapacity, UnknownKey, UnknownSession, UnknownTask, NotFound, ProviderError,
                PolicyDenied, ApprovalRequired, ConfigError, StorageError, Conflict, InternalError,
            )
        }
    )
)
