"""What the gateway answers when it does not forward an answer: errors in each provider's own shape.

OpenAI: ``{"error": {"message", "type", "param", "code"}}``. Anthropic: ``{"type": "error", "error": {"type",
"message"}}`` with its fixed set of types. A spent budget is HTTP 429 with code ``butler_budget_exhausted``
(OpenAI) / ``rate_limit_error`` (Anthropic) and a message that says what to do; it is never a 401/402/403, so
a host does not take its (Butler) key for a broken or unpaid one.
"""

from __future__ import annotations

import json
from typing import Literal

from starlette.responses import Response

from butler_skill.adapters.providers.base import ProviderFailure

Format = Literal["openai", "anthropic"]

_ANTHROPIC_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
    413: "request_too_large", 429: "rate_limit_error", 500: "api_error", 502: "api_error", 504: "api_error",
    529: "overloaded_error",
}
_OPENAI_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
    429: "rate_limit_error", 500: "server_error", 502: "server_error", 504: "server_error",
}


def error(fmt: Format, status: int, message: str, *, code: str | None = None,
          retry_after_s: float | None = None) -> Response:
    if fmt == "anthropic":
        body: dict[str, object] = {"type": "error",
                                   "error": {"type": _ANTHROPIC_TYPES.get(status, "api_error"), "message": message}}
    else:
        body = {"error": {"message": message, "type": _OPENAI_TYPES.get(status, "server_error"), "param": None,
                          "code": code}}
    headers = {"x-butler-error": code or "error"}
    if retry_after_s is not None:
        headers["retry-after"] = str(max(1, int(-(-retry_after_s // 1))))
    return Response(json.dumps(body), status_code=status, media_type="application/json", headers=headers)


def budget_error(fmt: Format, message: str) -> Response:
    return error(fmt, 429, message, code="butler_budget_exhausted")


def upstream_error(fmt: Format, failure: ProviderFailure) -> Response:
    """A provider failure Butler could not route around, in the client's format. Its message was redacted
    when the adapter built it (the key, and anything shaped like a credential, never reach the client)."""
    kind = failure.kind
    if kind in ("rate_limit", "quota_exhausted"):
        status = 429
    elif kind == "timeout":
        status = 504
    elif kind == "bad_response" and failure.status is not None and 400 <= failure.status < 500:
        status = failure.status  # the provider refused the request itself: the client's to fix
    else:
        status = 502  # server errors, and a key the provider refused (not the client's token)
    return error(fmt, status, f"Butler: the provider failed and no other key could take the call: {failure.message}",
                 code=f"upstream_{kind}", retry_after_s=failure.retry_after_s if status == 429 else None)
