"""A fake of OpenRouter's key and credit endpoints, on loopback.

- `GET /api/v1/key` with any known API key (or the management key) -> `{"data": {label, limit,
  limit_remaining, limit_reset, usage, usage_daily, usage_weekly, usage_monthly, is_free_tier}}`.
- `GET /api/v1/credits` with the management key -> `{"data": {"total_credits", "total_usage"}}`; any other
  key is a 403. Numbers are JSON numbers, as OpenRouter sends them.
- Errors are `{"error": {"code", "message"}}`. Faults are queued with `add_fault`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tests.servers._loopback import FakeServer, Recorded, Reply


def _err(status: int, message: str) -> Reply:
    return Reply(status, {"error": {"code": status, "message": message}})


class FakeOpenRouter(FakeServer):
    def __init__(self, *, management_key: str, api_keys: dict[str, dict[str, Any]] | None = None,
                 total_credits: Decimal = Decimal("100"), total_usage: Decimal = Decimal("25.5")) -> None:
        self.management_key = management_key
        self.api_keys = dict(api_keys or {})
        self.total_credits = total_credits
        self.total_usage = total_usage
        super().__init__()
        self.base_url = f"{self.root}/api/v1"

    def route(self, rec: Recorded) -> Reply:
        auth = rec.headers.get("authorization", "")
        key = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
        if key is None or (key != self.management_key and key not in self.api_keys):
            return _err(401, "No auth credentials found")
        if rec.method == "GET" and rec.path == "/api/v1/credits":
            if key != self.management_key:
                return _err(403, "Only management keys can fetch credits")
            with self.lock:
                return Reply(200, {"data": {"total_credits": float(self.total_credits),
                                            "total_usage": float(self.total_usage)}})
        if rec.method == "GET" and rec.path == "/api/v1/key":
            info = self.api_keys.get(key) or {"label": "management", "limit": None}
            limit = info.get("limit")
            usage = info.get("usage", 0)
            data = {
                "label": info.get("label", "sk-or-v1-abc...xyz"),
                "limit": limit,
                "limit_remaining": (limit - usage) if limit is not None else None,
                "limit_reset": info.get("limit_reset"),
                "usage": usage, "usage_daily": info.get("usage_daily", usage),
                "usage_weekly": info.get("usage_weekly", usage), "usage_monthly": info.get("usage_monthly", usage),
                "byok_usage": 0, "is_free_tier": False,
            }
            return Reply(200, {"data": data})
        return _err(404, "Not found")


def start_fake_openrouter(**kw: Any) -> FakeOpenRouter:
    return FakeOpenRouter(**kw)
