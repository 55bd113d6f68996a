"""OpenRouter's key and credit endpoints: how much prepaid credit an account has left.

- `GET /api/v1/key` (any API key): that key's `limit`, `limit_remaining`, `limit_reset` and usage
  (`usage`, `usage_daily`, `usage_weekly`, `usage_monthly`, UTC windows).
- `GET /api/v1/credits` (a management key): the account's `total_credits` and `total_usage`.

Numbers arrive as JSON numbers: parsed straight to `Decimal`, never through float. No policy here, and no
key in any log line or error.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict

from butler_skill.adapters.wallet_facts import OPENROUTER_BASE_URL
from butler_skill.errors import ConfigError, ProviderError

log = logging.getLogger("butler.adapters.openrouter")

DEFAULT_BASE_URL = OPENROUTER_BASE_URL
MAX_RETRY_AFTER_S = 30.0


class OpenRouterKeyInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    label: str | None = None
    limit: Decimal | None = None  # None: the key has no spending limit
    limit_remaining: Decimal | None = None
    limit_reset: str | None = None
    usage: Decimal | None = None
    usage_daily: Decimal | None = None
    usage_weekly: Decimal | None = None
    usage_monthly: Decimal | None = None
    is_free_tier: bool | None = None


class OpenRouterCredits(BaseModel):
    model_config = ConfigDict(frozen=True)

    total_credits: Decimal
    total_usage: Decimal

    @property
    def remaining(self) -> Decimal:
        return self.total_credits - self.total_usage


class OpenRouterClient:
    def __init__(self, http: httpx.Client, *, base_url: str = DEFAULT_BASE_URL,
                 sleep: Callable[[float], None] = time.sleep, attempts: int = 3) -> None:
        self._http = http
        self.base_url = base_url.rstrip("/")
        self._sleep = sleep
        self._attempts = max(1, attempts)

    def __repr__(self) -> str:
        return f"OpenRouterClient(base_url={self.base_url!r})"

    def key_info(self, api_key: str) -> OpenRouterKeyInfo:
        data = self._get("/key", api_key)
        return OpenRouterKeyInfo(
            label=data.get("label"), limit=_dec(data.get("limit")), limit_remaining=_dec(data.get("limit_remaining")),
            limit_reset=data.get("limit_reset"), usage=_dec(data.get("usage")),
            usage_daily=_dec(data.get("usage_daily")), usage_weekly=_dec(data.get("usage_weekly")),
            usage_monthly=_dec(data.get("usage_monthly")), is_free_tier=data.get("is_free_tier"),
        )

    def credits(self, management_key: str) -> OpenRouterCredits:
        data = self._get("/credits", management_key)
        total, used = _dec(data.get("total_credits")), _dec(data.get("total_usage"))
        if total is None or used is None:
            raise ProviderError("OpenRouter's credits answer lacks total_credits or total_usage",
                                provider="openrouter")
        return OpenRouterCredits(total_credits=total, total_usage=used)

    def _get(self, path: str, key: str) -> dict[str, Any]:
        if not key:
            raise ConfigError(f"an OpenRouter key is needed for {path}")
        url = self.base_url + path
        headers = {"Authorization": f"Bearer {key}", "Accept": "application/json"}
        for attempt in range(self._attempts):
            last_try = attempt + 1 >= self._attempts
            try:
                resp = self._http.get(url, headers=headers)
            except httpx.TransportError as exc:
                if last_try:
                    raise ProviderError(f"OpenRouter unreachable on GET {path} ({type(exc).__name__})",
                                        provider="openrouter") from None
                self._pause(attempt, None)
                continue
            if resp.status_code == 429 or resp.status_code >= 500:
                if last_try:
                    raise ProviderError(f"OpenRouter answered {resp.status_code} on GET {path}",
                                        provider="openrouter", status=resp.status_code)
                log.info("retrying GET %s after %s", path, resp.status_code)
                self._pause(attempt, _retry_after(resp))
                continue
            if resp.status_code >= 400:
                raise ProviderError(f"OpenRouter answered {resp.status_code} on GET {path}: {_message(resp)}",
                                    provider="openrouter", status=resp.status_code)
            try:
                payload = json.loads(resp.content, parse_float=Decimal)
            except (ValueError, UnicodeDecodeError):
                raise ProviderError(f"OpenRouter sent a non-JSON answer on GET {path}",
                                    provider="openrouter") from None
            data = payload.get("data") if isinstance(payload, dict) else None
            if not isinstance(data, dict):
                raise ProviderError(f"OpenRouter's answer on GET {path} has no data object", provider="openrouter")
            return data
        raise AssertionError("unreachable")

    def _pause(self, attempt: int, retry_after: float | None) -> None:
        delay = retry_after if retry_after is not None else min(4.0, 0.25 * (2 ** attempt))
        self._sleep(min(max(delay, 0.0), MAX_RETRY_AFTER_S))


def _dec(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ProviderError("OpenRouter sent a non-numeric amount", provider="openrouter") from None


def _retry_after(resp: httpx.Response) -> float | None:
    try:
        return max(0.0, float(resp.headers["retry-after"]))
    except (KeyError, ValueError):
        return None


def _message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.reason_phrase or "error"
    err = body.get("error") if isinstance(body, dict) else None
    message = err.get("message") if isinstance(err, dict) else None
    return str(message or resp.reason_phrase or "error")[:200]
