"""The shared vocabulary: keys as configured, key state as the ledger sees it, sessions, alerts, events.

Tool input and output models live beside their handlers (butler_skill/handlers/*); they are built
from these.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, SecretStr, model_validator

ProviderName = str
RotationReason = Literal["threshold", "rate_limit", "quota_exhausted", "auth", "manual"]
KEY_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class KeyLimits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tokens_per_day: int = Field(gt=0, description="Daily token budget for this key (UTC day).")


class KeyConfig(BaseModel):
    """One API key as written in the keys file. The secret is never serialised back out."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=KEY_ID_PATTERN)
    provider: ProviderName = Field(min_length=1)
    key: SecretStr | None = Field(default=None, description="The secret inline (discouraged).")
    key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    scope: str | None = Field(default=None, description="Account whose rate limit this key shares.")
    model: str | None = None
    base_url: str | None = None
    limits: KeyLimits
    price_in_per_m: float | None = Field(default=None, ge=0)
    price_out_per_m: float | None = Field(default=None, ge=0)
    # Optional overrides of the price table (USD per million tokens; numbers or decimal strings).
    price_cache_read_per_m: Decimal | None = Field(default=None, ge=0, description="Cache reads.")
    price_cache_write_per_m: Decimal | None = Field(default=None, ge=0, description="5-minute cache writes.")
    price_cache_write_1h_per_m: Decimal | None = Field(default=None, ge=0, description="1-hour cache writes.")
    web_search_per_request: Decimal | None = Field(default=None, ge=0, description="USD per server-side search.")
    max_output_tokens: int | None = Field(default=None, ge=1, description="The model's output cap.")
    token_param: Literal["max_tokens", "max_completion_tokens"] | None = Field(
        default=None, description="Which request field carries the output limit (OpenAI: max_completion_tokens).")
    enabled: bool = True

    @model_validator(mode="after")
    def _one_secret_source(self) -> KeyConfig:
        if self.key is not None and self.key_env is not None:
            raise ValueError("give either 'key' or 'key_env', not both")
        return self


class ResolvedKey(BaseModel):
    """A key with every default filled in from the provider registry. Carries no secret."""

    model_config = ConfigDict(frozen=True)

    id: str
    provider: str
    scope: str
    model: str
    base_url: str
    wire_format: Literal["openai", "anthropic"]
    tokens_per_day: int
    price_in_per_m: float
    price_out_per_m: float
    enabled: bool = True
    # Exact prices (USD per million tokens) for settling; None falls back to the input price.
    price_in_exact: Decimal | None = None
    price_out_exact: Decimal | None = None
    price_cache_read_per_m: Decimal | None = None
    price_cache_write_per_m: Decimal | None = None
    price_cache_write_1h_per_m: Decimal | None = None
    web_search_per_request: Decimal = Decimal(0)
    max_output_tokens: int | None = None
    token_param: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    price_source: Literal["keys_file", "table", "registry"] = "registry"


class KeyState(BaseModel):
    """A key's standing today, as the ledger sees it."""

    key_id: str
    provider: str
    scope: str
    model: str
    tokens_per_day: int
    used: int
    reserved: int
    remaining: int
    cost_today: float
    cooldown_until: AwareDatetime | None = None
    cooldown_reason: str | None = None


class SessionInfo(BaseModel):
    session_id: str
    label: str | None = None
    task_id: str | None = None
    key_id: str
    allocated: int
    used: int
    held: int = Field(description="Tokens still reserved for this session on its current key.")
    rotation_threshold: int
    cost: float
    state: Literal["open", "closed", "expired"]
    created_at: AwareDatetime


class Alert(BaseModel):
    alert_id: str
    kind: str
    session_id: str | None = None
    key_id: str | None = None
    message: str
    created_at: AwareDatetime


class Event(BaseModel):
    seq: int
    at: AwareDatetime
    kind: str
    session_id: str | None = None
    key_id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class RotationRecord(BaseModel):
    session_id: str
    from_key_id: str
    to_key_id: str
    reason: RotationReason
    at: datetime
    cooldown_until: AwareDatetime | None = None
