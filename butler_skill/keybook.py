"""The keys file read without pydantic: what the read tools and the redaction layer need of it.

`config.load_config` (pydantic, the one set of rules for a keys file) stays the authority. This reader is a
fast path for a one-shot `butler call get_status`: it accepts a JSON keys file only when every entry passes
the JSON Schema generated from `models.KeyConfig` (`schemas/keys.schema.json`, kept in step by `butler
schemas`) and the rules the schema cannot say (one secret source, bounds, unique ids, environment settings),
using plain types only (no decimal strings, no numbers given as text). For anything else it answers None and
the caller asks `load_config`, which accepts or raises the exact `config_error`. A property test holds the two
equal over random keys files: whatever this reader accepts, `load_config` accepts with the same keys.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from butler_skill.registry import facts_for

if TYPE_CHECKING:
    from butler_skill.config import ButlerConfig

DEFAULT_KEYS_PATH = Path("~/.openclaw/workspace/api-keys.json")
STATE_FILE_NAME = "butler-state.db"
KEYS_SCHEMA = Path(__file__).resolve().parent / "manifest" / "schemas" / "keys.schema.json"

# Bounds past which a keys file is a typo, not a budget (config._check_bounds raises on them; here they only
# send the file to load_config).
MAX_TOKENS_PER_DAY = 10**12
MAX_PRICE_PER_M = 1_000_000.0
_DECIMAL_FIELDS = ("price_cache_read_per_m", "price_cache_write_per_m", "price_cache_write_1h_per_m",
                   "web_search_per_request")
_INT_FIELDS = ("max_output_tokens",)


class KeyBrief(NamedTuple):
    """A key as the read tools see it: config.resolve_key's identity and budget fields, no prices, no secret."""

    id: str
    provider: str
    scope: str
    model: str
    tokens_per_day: int
    enabled: bool


class KeyBook(NamedTuple):
    keys_path: Path
    state_path: Path
    busy_timeout_ms: int
    keys: tuple[KeyBrief, ...]
    secrets: tuple[str, ...]  # every secret the keys reference (inline or through their variable)


def keys_path_from(env: Mapping[str, str], explicit: Path | None = None) -> Path:
    if explicit is not None:
        return Path(explicit).expanduser()
    raw = env.get("BUTLER_KEYS_PATH")
    if raw:
        return Path(raw).expanduser()
    home = env.get("HOME")
    return Path(home) / ".openclaw/workspace/api-keys.json" if home else DEFAULT_KEYS_PATH.expanduser()


def state_path_from(env: Mapping[str, str], keys_path: Path, explicit: Path | None = None) -> Path:
    if explicit is not None:
        return Path(explicit).expanduser()
    raw = env.get("BUTLER_STATE_PATH")
    if raw:
        return Path(raw).expanduser()
    return keys_path.parent / STATE_FILE_NAME


def brief(*, id: str, provider: str, scope: str | None, model: str | None, base_url: str | None,
          tokens_per_day: int, enabled: bool) -> KeyBrief:
    """A key's defaults, filled as config.resolve_key fills them (a test holds the two equal)."""
    facts = facts_for(provider)
    return KeyBrief(id=id, provider=provider, scope=scope or f"{provider}:{id}", model=model or facts.default_model,
                    tokens_per_day=tokens_per_day, enabled=enabled and bool(base_url or facts.base_url))


def keybook_of(cfg: ButlerConfig) -> KeyBook:
    """The same book from a configuration load_config made (the fallback, and the reference in tests)."""
    return KeyBook(keys_path=cfg.keys_path, state_path=cfg.state_path, busy_timeout_ms=cfg.busy_timeout_ms,
                   keys=tuple(KeyBrief(id=k.id, provider=k.provider, scope=k.scope, model=k.model,
                                       tokens_per_day=k.tokens_per_day, enabled=k.enabled) for k in cfg.resolved()),
                   secrets=tuple(cfg.key_secrets()))


def read_keybook(env: Mapping[str, str], keys_path: Path | None = None,
                 state_path: Path | None = None) -> KeyBook | None:
    """The keys file and settings as plain values, or None when only load_config may decide (YAML, a value that
    needs coercion, anything invalid: load_config then gives the exact error)."""
    kp = keys_path_from(env, keys_path)
    settings = _settings(env)
    if settings is None or not kp.name.endswith(".json"):
        return None
    from butler_skill.errors import ButlerError
    from butler_skill.safe_read import read_text

    try:
        data = json.loads(read_text(kp, "keys", label="keys file"), parse_constant=_refuse)
    except (ButlerError, ValueError, OSError):
        return None
    if isinstance(data, dict):
        data = data.get("keys")
    if not isinstance(data, list) or not all(_plain(raw) for raw in data):
        return None
    from butler_skill.host.validators import is_valid

    schema = str(KEYS_SCHEMA)
    if not all(is_valid(schema, raw) for raw in data):
        return None
    ids = [raw["id"] for raw in data]
    if len(set(ids)) != len(ids):
        return None
    keys = tuple(brief(id=raw["id"], provider=raw["provider"], scope=raw.get("scope"), model=raw.get("model"),
                       base_url=raw.get("base_url"), tokens_per_day=raw["limits"]["tokens_per_day"],
                       enabled=raw.get("enabled", True)) for raw in data)
    secrets = tuple(s for raw in data if (s := raw.get("key") or (env.get(raw["key_env"]) if raw.get("key_env")
                                                                   else None)))
    return KeyBook(keys_path=kp, state_path=state_path_from(env, kp, state_path), busy_timeout_ms=settings,
                   keys=keys, secrets=secrets)


def _refuse(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _plain(raw: Any) -> bool:
    """Only values load_config takes as they are (the schema checks the rest): exact ints, no decimal text,
    one secret source, within the bounds config._check_bounds enforces."""
    if not isinstance(raw, dict):
        return False
    limits = raw.get("limits")
    day = limits.get("tokens_per_day") if isinstance(limits, dict) else None
    if type(day) is not int or day > MAX_TOKENS_PER_DAY:
        return False
    if raw.get("key") is not None and raw.get("key_env") is not None:
        return False
    if any(raw.get(f) is not None and type(raw[f]) is not int for f in _INT_FIELDS):
        return False
    if any(isinstance(raw.get(f), str) for f in _DECIMAL_FIELDS):
        return False
    for f in ("price_in_per_m", "price_out_per_m"):
        value = raw.get(f)
        if value is not None and (type(value) not in (int, float) or not math.isfinite(value)
                                  or value > MAX_PRICE_PER_M):
            return False
    return True


def _settings(env: Mapping[str, str]) -> int | None:
    """The busy timeout, when every setting load_config checks is as it accepts it; else None."""
    try:
        ratio = float(env.get("BUTLER_ROTATION_THRESHOLD", "0.75"))
        lease = int(env.get("BUTLER_LEASE_SECONDS", "3600"))
        busy = int(env.get("BUTLER_BUSY_TIMEOUT_MS", "30000"))
    except ValueError:
        return None
    if not (0 < ratio <= 1 and lease > 0 and 0 <= busy <= 3_600_000):
        return None
    return busy
