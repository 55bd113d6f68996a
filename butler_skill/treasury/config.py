"""Treasury settings: the policy file plus the environment.

The policy file (`BUTLER_TREASURY_POLICY`, default `treasury-policy.yaml` next to the state database) holds
caps, the reserve, destinations and the wallet's token; YAML or JSON, numbers read as exact decimals.
The original Butler's variables (`AUTO_BUY_ENABLED`, `AUTO_BUY_THRESHOLD`, `AUTO_BUY_AMOUNT`) override the
file when set. Secrets come from the environment only and are held as `SecretStr`; no error quotes one.
Caps are checked at load: per-transaction <= daily <= monthly.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from butler_skill.adapters import wallet_facts
from butler_skill.core.treasury import TreasuryPolicy, decimal_str
from butler_skill.errors import ConfigError

POLICY_FILE_NAME = "treasury-policy.yaml"

# Every variable the treasury reads, all optional (SKILL.md declares each; same shape as config.ENV_VARS).
ENV_VARS: dict[str, str] = {
    "CIRCLE_API_KEY": "Circle API key (TEST_API_KEY:... is testnet, LIVE_API_KEY:... mainnet); needed for the "
                      "wallet balance and top-ups.",
    "CIRCLE_ENTITY_SECRET": "Circle entity secret, 64 hex characters; needed only to send a top-up.",
    "CIRCLE_WALLET_ID": "The Circle developer-controlled wallet that pays top-ups.",
    "AUTO_BUY_ENABLED": "Turn automatic top-ups on (true/false); overrides the policy file. Default off.",
    "AUTO_BUY_THRESHOLD": "Propose a top-up when a provider's credit falls below this many USD (default 50).",
    "AUTO_BUY_AMOUNT": "USDC sent per top-up (default 200).",
    "OPENROUTER_MANAGEMENT_KEY": "OpenRouter management key, to read the account's remaining credit.",
    "BUTLER_TREASURY_POLICY": "Path of the treasury policy file (YAML or JSON; default treasury-policy.yaml next "
                              "to the state database).",
    "BUTLER_CIRCLE_BASE_URL": "Override Circle's API host (default https://api.circle.com).",
    "BUTLER_OPENROUTER_BASE_URL": "Override OpenRouter's API root (default https://openrouter.ai/api/v1).",
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class CircleToken(BaseModel):
    """Which token the wallet pays in: Circle's `tokenId`, or `blockchain` + `token_address`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    token_id: str | None = None
    blockchain: str | None = None
    token_address: str | None = None
    fee_level: str = Field(default="MEDIUM", pattern=r"^(LOW|MEDIUM|HIGH)$")


class TreasuryConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    policy: TreasuryPolicy
    token: CircleToken = Field(default_factory=CircleToken)
    policy_path: Path | None = None
    policy_file_found: bool = False
    circle_api_key: SecretStr | None = None
    circle_entity_secret: SecretStr | None = None
    circle_wallet_id: str | None = None
    circle_base_url: str = wallet_facts.CIRCLE_BASE_URL
    openrouter_base_url: str = wallet_facts.OPENROUTER_BASE_URL
    openrouter_management_key: SecretStr | None = None

    @property
    def network(self) -> wallet_facts.Network:
        return wallet_facts.network_of(self.circle_api_key.get_secret_value() if self.circle_api_key else None)


@functools.cache
def _decimal_loader() -> type:
    """A YAML loader that reads floats as exact decimals (`12.10` stays 12.10, not 12.0999...). Built on first use:
    PyYAML loads only when a YAML policy file is there to read."""
    import yaml

    class DecimalLoader(yaml.SafeLoader):
        pass

    def decimal_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Decimal:
        return Decimal(str(loader.construct_scalar(node)).replace("_", ""))

    DecimalLoader.add_constructor("tag:yaml.org,2002:float", decimal_float)
    return DecimalLoader


def policy_path_from(env: Mapping[str, str], state_path: Path | None) -> tuple[Path | None, bool]:
    """Where the policy file is, and whether it was named explicitly (then it must exist)."""
    raw = env.get("BUTLER_TREASURY_POLICY")
    if raw:
        return Path(raw).expanduser(), True
    if state_path is None:
        return None, False
    return Path(state_path).expanduser().with_name(POLICY_FILE_NAME), False


def read_policy_file(path: Path) -> dict[str, Any]:
    from butler_skill.safe_read import read_text

    text = read_text(path, "policy", label="treasury policy")
    import yaml

    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text, parse_float=Decimal)
        else:
            data = yaml.load(text, Loader=_decimal_loader())
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        line = getattr(exc, "lineno", None) or getattr(getattr(exc, "problem_mark", None), "line", None)
        raise ConfigError(f"{path}: not valid JSON/YAML (near line {line})", file=str(path), line=line) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the treasury policy must be a mapping", file=str(path))
    return data


def parse_policy(data: Mapping[str, Any], env: Mapping[str, str], source: str) -> tuple[TreasuryPolicy, CircleToken]:
    fields = dict(data)
    token_data = fields.pop("circle", None) or {}
    for name, key in (("AUTO_BUY_THRESHOLD", "threshold"), ("AUTO_BUY_AMOUNT", "amount")):
        raw = env.get(name)
        if raw is not None and raw.strip():
            fields[key] = _env_decimal(name, raw)
    enabled = env.get("AUTO_BUY_ENABLED")
    if enabled is not None and enabled.strip():
        flag = enabled.strip().lower()
        if flag not in _TRUE | _FALSE:
            raise ConfigError("AUTO_BUY_ENABLED must be true or false", variable="AUTO_BUY_ENABLED")
        fields["enabled"] = flag in _TRUE
    try:
        policy = TreasuryPolicy.model_validate(fields)
        token = CircleToken.model_validate(token_data)
    except ValidationError as exc:
        err = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise ConfigError(f"{source}: {where}: {err['msg']}", file=source, field=where) from None
    return policy, token


def _env_decimal(name: str, raw: str) -> Decimal:
    try:
        value = Decimal(raw.strip())
    except InvalidOperation:
        raise ConfigError(f"{name} must be a decimal number", variable=name) from None
    if not value.is_finite():
        raise ConfigError(f"{name} must be a finite number", variable=name)
    return value


def load_treasury_config(env: Mapping[str, str], state_path: Path | None) -> TreasuryConfig:
    path, explicit = policy_path_from(env, state_path)
    data: dict[str, Any] = {}
    found = False
    if path is not None and path.exists():
        data, found = read_policy_file(path), True
    elif explicit:
        raise ConfigError(f"BUTLER_TREASURY_POLICY names {path}, which does not exist", file=str(path))
    policy, token = parse_policy(data, env, str(path) if found else "treasury policy")

    def secret(name: str) -> SecretStr | None:
        value = (env.get(name) or "").strip()
        return SecretStr(value) if value else None

    entity = secret("CIRCLE_ENTITY_SECRET")
    if entity is not None:
        wallet_facts.entity_secret_bytes(entity.get_secret_value())  # the shape is checked at load
    return TreasuryConfig(
        policy=policy, token=token, policy_path=path, policy_file_found=found,
        circle_api_key=secret("CIRCLE_API_KEY"), circle_entity_secret=entity,
        circle_wallet_id=(env.get("CIRCLE_WALLET_ID") or "").strip() or None,
        circle_base_url=(env.get("BUTLER_CIRCLE_BASE_URL") or "").strip() or wallet_facts.CIRCLE_BASE_URL,
        openrouter_base_url=(env.get("BUTLER_OPENROUTER_BASE_URL") or "").strip() or wallet_facts.OPENROUTER_BASE_URL,
        openrouter_management_key=secret("OPENROUTER_MANAGEMENT_KEY"),
    )


class CapsView(BaseModel):
    per_transaction: str
    daily: str
    monthly: str


class ProviderPolicyView(BaseModel):
    destinations: list[str] = Field(description="Allowlisted top-up addresses; proposals pay the first.")
    threshold: str = Field(description="Top up when credit (USD) falls below this.")
    amount: str = Field(description="USDC per top-up.")
    opening_credit: str | None = Field(default=None, description="Credit held before Butler recorded any.")


class PolicyView(BaseModel):
    """The effective policy, amounts as decimal strings."""

    source: str = Field(description="The policy file read, or 'defaults (no policy file)'.")
    enabled: bool
    threshold: str
    amount: str
    caps: CapsView
    min_wallet_reserve: str
    auto_approve_max: str = Field(description="Top-ups up to this amount need no person; 0: every one does.")
    max_consecutive_failures: int
    credit_tolerance: str
    providers: dict[str, ProviderPolicyView]
    circle: CircleToken
    network: str = Field(description="testnet (TEST_API_KEY:), mainnet (LIVE_API_KEY:) or unknown.")


def policy_view(config: TreasuryConfig) -> PolicyView:
    """The effective policy, for `treasury_status` and `butler treasury policy`."""
    p = config.policy
    return PolicyView(
        source=str(config.policy_path) if config.policy_file_found else "defaults (no policy file)",
        enabled=p.enabled,
        threshold=decimal_str(p.threshold),
        amount=decimal_str(p.amount),
        caps=CapsView(per_transaction=decimal_str(p.caps.per_transaction), daily=decimal_str(p.caps.daily),
                      monthly=decimal_str(p.caps.monthly)),
        min_wallet_reserve=decimal_str(p.min_wallet_reserve),
        auto_approve_max=decimal_str(p.auto_approve_max),
        max_consecutive_failures=p.max_consecutive_failures,
        credit_tolerance=decimal_str(p.credit_tolerance),
        providers={
            name: ProviderPolicyView(
                destinations=list(pp.destinations), threshold=decimal_str(p.threshold_for(name)),
                amount=decimal_str(p.amount_for(name)),
                opening_credit=decimal_str(pp.opening_credit) if pp.opening_credit is not None else None)
            for name, pp in sorted(p.providers.items())
        },
        circle=config.token,
        network=config.network,
    )
