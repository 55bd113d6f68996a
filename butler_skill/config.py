"""Configuration: the keys file plus the environment, with defaults from the provider registry.

The keys file is JSON or YAML: an object with a `keys` list (a bare list is accepted too). Secrets are
referenced by environment variable (`key_env`) or, discouraged, written inline (`key`). Errors name the
file, the key id and the field, never a value.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from butler_skill import price_table
from butler_skill.core import pricing
from butler_skill.errors import ConfigError, UnknownKey

# Paths and bounds live in keybook (the pydantic-free reader of the keys file); re-exported here.
from butler_skill.keybook import DEFAULT_KEYS_PATH as DEFAULT_KEYS_PATH
from butler_skill.keybook import MAX_PRICE_PER_M, MAX_TOKENS_PER_DAY, keys_path_from, state_path_from
from butler_skill.keybook import STATE_FILE_NAME as STATE_FILE_NAME
from butler_skill.models import KeyConfig, ResolvedKey
from butler_skill.registry import facts_for

# Every variable Butler itself reads (SKILL.md declares each; a test keeps the two in step).
ENV_VARS: dict[str, str] = {
    "BUTLER_KEYS_PATH": "Path of the keys file (default ~/.openclaw/workspace/api-keys.json).",
    "BUTLER_STATE_PATH": "Path of the SQLite ledger (default: butler-state.db next to the keys file).",
    "BUTLER_ROTATION_THRESHOLD": "Fraction of an allocation that triggers rotation (default 0.75).",
    "BUTLER_AUTO_ROTATE": "Rotate automatically when the threshold is crossed: 1 or 0 (default 1).",
    "BUTLER_LEASE_SECONDS": "How long an unreported reservation is held before it expires (default 3600).",
    "BUTLER_LOG_LEVEL": "Log level on stderr: DEBUG, INFO, WARNING (default) or ERROR. Logs are redacted.",
    "BUTLER_LOG_FILE": "Also write the (redacted) log to this file, created with mode 0600.",
    "BUTLER_BUSY_TIMEOUT_MS": "How long to wait for another process's lock on the ledger before answering "
                              "storage_error (default 30000).",
    "BUTLER_READ_PATHS": "Folders (os.pathsep-separated) prd_path may read besides the working directory.",
    "BUTLER_DATABASE_URL": "postgresql://... to keep the ledger on PostgreSQL, shared by many hosts (default: SQLite).",
}


class ButlerConfig(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    keys_path: Path
    state_path: Path
    keys: list[KeyConfig]
    rotation_threshold: float = Field(default=0.75, gt=0, le=1)
    auto_rotate: bool = True
    lease_seconds: int = Field(default=3600, gt=0)
    busy_timeout_ms: int = Field(default=30_000, ge=0, le=3_600_000)
    env: dict[str, str] = Field(default_factory=dict, exclude=True, repr=False)
    _resolved: list[ResolvedKey] | None = PrivateAttr(default=None)
    # Lookups by id and the secrets redaction masks are built once: a keys file of 10,000 keys made every call
    # quadratic (each secret looked its key up by a linear search, twice per call).
    _by_id: dict[str, KeyConfig] | None = PrivateAttr(default=None)
    _secrets: list[str] | None = PrivateAttr(default=None)

    def resolved(self) -> list[ResolvedKey]:
        # Through __pydantic_private__ itself: `self._resolved` goes through pydantic's __getattr__, which raises
        # and catches an AttributeError on each read (a few µs on every allocation).
        private = self.__pydantic_private__
        keys = private["_resolved"]  # type: ignore[index]
        if keys is None:
            keys = private["_resolved"] = [resolve_key(k) for k in self.keys]  # type: ignore[index]
        return list(keys)

    def key(self, key_id: str) -> KeyConfig:
        if self._by_id is None:
            self._by_id = {k.id: k for k in self.keys}
        found = self._by_id.get(key_id)
        if found is not None:
            return found
        raise UnknownKey(f"no key with id {key_id!r} in {self.keys_path}", key_id=key_id)

    def secret_for(self, key_id: str) -> str | None:
        """The secret of a key, for code that calls the provider. Never for a tool output."""
        k = self.key(key_id)
        if k.key is not None:
            return k.key.get_secret_value()
        if k.key_env:
            return self.env.get(k.key_env) or None
        return None


    def key_secrets(self) -> list[str]:
        """Every secret the keys reference (inline or through their environment variable), computed once."""
        if self._secrets is None:
            self._secrets = [s for k in self.keys if (s := self.secret_for(k.id))]
        return list(self._secrets)


def resolve_key(k: KeyConfig) -> ResolvedKey:
    """Fill a key's defaults: the keys file first, then the price table's row for its model, then the
    registry's provider facts (cache prices from the provider's ratios when neither gives them)."""
    facts = facts_for(k.provider)
    base_url = k.base_url or facts.base_url
    model = k.model or facts.default_model
    row = price_table.lookup(k.provider, model)

    def pick(own: Decimal | float | None, table: Decimal | None, fallback: Decimal | float) -> Decimal:
        value = own if own is not None else (table if table is not None else fallback)
        return pricing.money(value)

    pin = pick(k.price_in_per_m, row.input_per_m if row else None, facts.price_in_per_m)
    pout = pick(k.price_out_per_m, row.output_per_m if row else None, facts.price_out_per_m)

    def cache(own: Decimal | None, table: Decimal | None, ratio: Decimal) -> Decimal:
        """A cache price: the keys file's, else the table's (scaled when the keys file moved the input
        price), else the provider's ratio times the input price."""
        if own is not None:
            return own
        if row is not None and table is not None:
            return table if k.price_in_per_m is None or row.input_per_m == 0 else pin * table / row.input_per_m
        return pin * ratio

    read = cache(k.price_cache_read_per_m, row.cache_read_per_m if row else None, facts.cache_read_ratio)
    write = cache(k.price_cache_write_per_m, row.cache_write_per_m if row else None, facts.cache_write_ratio)
    write_1h = cache(k.price_cache_write_1h_per_m, row.cache_write_1h_per_m if row else None,
                     facts.cache_write_1h_ratio)
    source = "keys_file" if k.price_in_per_m is not None or k.price_out_per_m is not None else (
        "table" if row else "registry")
    return ResolvedKey(
        id=k.id,
        provider=k.provider,
        scope=k.scope or f"{k.provider}:{k.id}",
        model=model,
        base_url=base_url,
        wire_format=facts.wire_format,
        tokens_per_day=k.limits.tokens_per_day,
        price_in_per_m=float(pin),
        price_out_per_m=float(pout),
        enabled=k.enabled and bool(base_url),
        price_in_exact=pin,
        price_out_exact=pout,
        price_cache_read_per_m=read,
        price_cache_write_per_m=write,
        price_cache_write_1h_per_m=write_1h,
        web_search_per_request=pick(k.web_search_per_request, row.web_search_per_request if row else None,
                                    facts.web_search_per_request),
        max_output_tokens=k.max_output_tokens or (row.max_output_tokens if row else None) or facts.max_output_tokens,
        token_param=k.token_param or facts.token_param,
        price_source=source,
    )


def model_prices(key: ResolvedKey) -> pricing.ModelPrices:
    """The exact prices a key settles at."""
    return pricing.ModelPrices(
        input_per_m=key.price_in_exact if key.price_in_exact is not None else pricing.money(key.price_in_per_m),
        output_per_m=key.price_out_exact if key.price_out_exact is not None else pricing.money(key.price_out_per_m),
        cache_read_per_m=key.price_cache_read_per_m, cache_write_per_m=key.price_cache_write_per_m,
        cache_write_1h_per_m=key.price_cache_write_1h_per_m, web_search_per_request=key.web_search_per_request,
        max_output_tokens=key.max_output_tokens,
    )


def load_config(
    env: Mapping[str, str], keys_path: Path | None = None, state_path: Path | None = None
) -> ButlerConfig:
    kp = keys_path_from(env, keys_path)
    sp = state_path_from(env, kp, state_path)
    keys = load_keys_file(kp)
    try:
        return ButlerConfig(
            keys_path=kp,
            state_path=sp,
            keys=keys,
            rotation_threshold=float(env.get("BUTLER_ROTATION_THRESHOLD", "0.75")),
            auto_rotate=env.get("BUTLER_AUTO_ROTATE", "1").strip().lower() not in {"0", "false", "no", "off"},
            lease_seconds=int(env.get("BUTLER_LEASE_SECONDS", "3600")),
            busy_timeout_ms=int(env.get("BUTLER_BUSY_TIMEOUT_MS", "30000")),
            env=dict(env),
        )
    except (ValidationError, ValueError) as exc:
        raise ConfigError(f"bad Butler setting in the environment: {_first_field(exc)}") from None


def _first_field(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        return f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
    return "not a number"


def load_keys_file(path: Path) -> list[KeyConfig]:
    from butler_skill.safe_read import read_text

    if not path.exists() and not path.is_symlink():
        raise ConfigError(
            f"no keys file at {path}; run `butler init` to write one (or set BUTLER_KEYS_PATH)",
            file=str(path),
        )
    return parse_keys(read_text(path, "keys", label="keys file"), str(path))


# Bounds past which a keys file is a typo, not a budget (keybook.MAX_TOKENS_PER_DAY, MAX_PRICE_PER_M): a day's
# tokens and a price stay well inside SQLite's 64-bit integers and finite floats, even summed over thousands of keys.


def _check_bounds(key: KeyConfig, source: str) -> None:
    import math

    if key.limits.tokens_per_day > MAX_TOKENS_PER_DAY:
        raise ConfigError(
            f"{source}: key {key.id}: field limits.tokens_per_day: {key.limits.tokens_per_day} is over the "
            f"limit of {MAX_TOKENS_PER_DAY:,} tokens a day; give the key's real daily budget",
            file=source, key_id=key.id, field="limits.tokens_per_day")
    for field in ("price_in_per_m", "price_out_per_m"):
        value = getattr(key, field)
        if value is not None and not (math.isfinite(value) and value <= MAX_PRICE_PER_M):
            raise ConfigError(
                f"{source}: key {key.id}: field {field}: must be a finite price of at most {MAX_PRICE_PER_M:,.0f} "
                "USD per million tokens", file=source, key_id=key.id, field=field)


def parse_keys(text: str, source: str) -> list[KeyConfig]:
    if source.endswith(".json"):
        loads, errors = json.loads, (json.JSONDecodeError,)
    else:
        import yaml  # only YAML keys files pay for the parser

        loads, errors = yaml.safe_load, (yaml.YAMLError,)  # type: ignore[assignment]
    try:
        data: Any = loads(text)
    except errors as exc:
        # The parser's message can quote the offending line, which may hold a secret: give the position only.
        line = getattr(exc, "lineno", None) or getattr(getattr(exc, "problem_mark", None), "line", None)
        raise ConfigError(f"{source}: not valid JSON/YAML (near line {line})", file=source, line=line) from None
    if isinstance(data, dict):
        data = data.get("keys")
    if not isinstance(data, list):
        raise ConfigError(f"{source}: expected an object with a 'keys' list, or a list", file=source)
    keys: list[KeyConfig] = []
    seen: set[str] = set()
    for index, raw in enumerate(data):
        key_id = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else f"#{index}"
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: key {key_id} is not an object", file=source, key_id=key_id)
        try:
            key = KeyConfig.model_validate(raw)
        except ValidationError as exc:
            err = exc.errors(include_input=False, include_url=False)[0]
            field = ".".join(str(p) for p in err["loc"]) or "(key)"
            raise ConfigError(
                f"{source}: key {key_id}: field {field}: {err['msg']}",
                file=source, key_id=key_id, field=field,
            ) from None
        _check_bounds(key, source)
        if key.id in seen:
            raise ConfigError(f"{source}: key id {key.id} appears twice", file=source, key_id=key.id, field="id")
        seen.add(key.id)
        keys.append(key)
    return keys


# The original Butler's eight keys. Sokosumi is a custom endpoint with no public base URL, so it ships
# disabled until its base_url is filled in: the seven enabled keys give 28.5M tokens a day.
DEFAULT_KEYS: list[dict[str, Any]] = [
    {"id": "nvidia-1", "provider": "nvidia", "key_env": "NVIDIA_API_KEY_1", "scope": "nvidia-account-1",
     "limits": {"tokens_per_day": 5_000_000}},
    {"id": "nvidia-2", "provider": "nvidia", "key_env": "NVIDIA_API_KEY_2", "scope": "nvidia-account-2",
     "limits": {"tokens_per_day": 5_000_000}},
    {"id": "nvidia-3", "provider": "nvidia", "key_env": "NVIDIA_API_KEY_3", "scope": "nvidia-account-3",
     "limits": {"tokens_per_day": 5_000_000}},
    {"id": "groq-1", "provider": "groq", "key_env": "GROQ_API_KEY", "scope": "groq-org",
     "limits": {"tokens_per_day": 10_000_000}},
    {"id": "anthropic-1", "provider": "anthropic", "key_env": "ANTHROPIC_API_KEY", "scope": "anthropic-org",
     "limits": {"tokens_per_day": 1_000_000}},
    {"id": "openai-1", "provider": "openai", "key_env": "OPENAI_API_KEY", "scope": "openai-org",
     "limits": {"tokens_per_day": 500_000}},
    {"id": "openrouter-1", "provider": "openrouter", "key_env": "OPENROUTER_API_KEY", "scope": "openrouter",
     "limits": {"tokens_per_day": 2_000_000}},
    {"id": "sokosumi-1", "provider": "sokosumi", "key_env": "SOKOSUMI_API_KEY", "scope": "sokosumi",
     "base_url": "", "model": "default", "enabled": False, "limits": {"tokens_per_day": 1_000_000}},
]

# The embedded demo set: keys on the built-in demo provider, two accounts, no secrets needed.
DEMO_KEYS: list[dict[str, Any]] = [
    {"id": "demo-a1", "provider": "demo", "scope": "demo-account-a", "limits": {"tokens_per_day": 60_000}},
    {"id": "demo-a2", "provider": "demo", "scope": "demo-account-a", "limits": {"tokens_per_day": 60_000}},
    {"id": "demo-b1", "provider": "demo", "scope": "demo-account-b", "limits": {"tokens_per_day": 120_000},
     "price_in_per_m": 0.8, "price_out_per_m": 2.4},
]


def write_keys_file(path: Path, keys: list[dict[str, Any]], force: bool = False) -> None:
    if path.exists() and not force:
        raise ConfigError(f"{path} exists; pass --force to overwrite it", file=str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = json.dumps({"keys": keys}, indent=2) + "\n"
    # Created 0600 from the start: no window in which another user could read it.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(payload)
    path.chmod(0o600)


def git_exposure(path: Path) -> str | None:
    """Why a file inside a git work tree would be committed, or None when it is safe (or not in git)."""
    import subprocess

    folder = path.parent
    try:
        inside = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "--is-inside-work-tree"],
            capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if inside.returncode != 0 or inside.stdout.strip() != "true":
        return None
    tracked = subprocess.run(
        ["git", "-C", str(folder), "ls-files", "--error-unmatch", path.name], capture_output=True, timeout=10
    )
    if tracked.returncode == 0:
        return "tracked by git"
    ignored = subprocess.run(["git", "-C", str(folder), "check-ignore", "-q", path.name], timeout=10)
    if ignored.returncode != 0:
        return "inside a git work tree and not ignored"
    return None
