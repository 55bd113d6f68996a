"""What the treasury's configuration and its reports need from Circle and OpenRouter without their HTTP clients:
API roots, the network a Circle key is for, the entity secret's shape, and a wallet's token balance.

Split from adapters/circle.py and adapters/openrouter.py so a treasury read that calls nobody (no wallet key set,
or `refresh: false`) loads neither httpx nor cryptography nor the clients (FIELD_NOTES §4 has the facts). The
clients import these from here: one definition each.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict

from butler_skill.errors import ConfigError

CIRCLE_BASE_URL = "https://api.circle.com"
OPENROUTER_BASE_URL = "https://openrouter.ai/api/v1"

Network = Literal["testnet", "mainnet", "unknown"]


def network_of(api_key: str | None) -> Network:
    """A `TEST_API_KEY:` key is testnet, `LIVE_API_KEY:` mainnet."""
    if not api_key:
        return "unknown"
    if api_key.startswith("TEST_API_KEY:"):
        return "testnet"
    if api_key.startswith("LIVE_API_KEY:"):
        return "mainnet"
    return "unknown"


def entity_secret_bytes(entity_secret: str) -> bytes:
    """The 32-byte entity secret from its 64 hex characters (never echoed in the error)."""
    text = entity_secret.strip()
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(text) != 64 or len(raw) != 32:
        raise ConfigError("CIRCLE_ENTITY_SECRET must be 64 hexadecimal characters (a 32-byte secret)")
    return raw


class TokenBalance(BaseModel):
    """One token of a Circle wallet's balances (`data.tokenBalances[]`); the amount is a decimal string there."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    blockchain: str | None = None
    token_id: str | None = None
    token_address: str | None = None
    is_native: bool = False
    amount: Decimal
    update_date: str | None = None
