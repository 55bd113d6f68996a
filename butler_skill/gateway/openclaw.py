"""`butler openclaw setup`: point OpenClaw's model calls at Butler's gateway.

Writes one custom provider, ``models.providers.butler``, into OpenClaw's config (``$OPENCLAW_CONFIG_PATH``,
else ``$HOME/.openclaw/openclaw.json``): the gateway's base URL, ``api: openai-completions``, a Butler access
token as ``apiKey`` (never a provider key) and the models Butler's OpenAI-format keys serve, with their prices
so OpenClaw's own cost display agrees with Butler's ledger. Everything else in the file is left as it was.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from butler_skill.errors import ConfigError
from butler_skill.models import ResolvedKey

PROVIDER_NAME = "butler"
TOKEN_PLACEHOLDER = "<a new Butler access token>"


def config_path(env: Mapping[str, str]) -> Path:
    explicit = env.get("OPENCLAW_CONFIG_PATH")
    if explicit:
        return Path(explicit).expanduser()
    return Path(env.get("HOME") or Path.home()) / ".openclaw" / "openclaw.json"


def provider_entry(base_url: str, api_key: str, keys: Sequence[ResolvedKey]) -> dict[str, Any]:
    """The provider block: one model per model Butler's OpenAI-format keys serve (prices per million
    tokens, the highest of the keys serving it, so the display never understates)."""
    models: dict[str, dict[str, Any]] = {}
    for k in keys:
        if not k.enabled or k.wire_format != "openai":
            continue
        m = models.setdefault(k.model, {
            "id": k.model, "name": f"{k.model} (via Butler)", "reasoning": False, "input": ["text"],
            "cost": {"input": 0.0, "output": 0.0, "cacheRead": 0.0, "cacheWrite": 0.0},
            "contextWindow": 128_000, "maxTokens": k.max_output_tokens or 8_192,
        })
        cost = m["cost"]
        cost["input"] = max(cost["input"], k.price_in_per_m)
        cost["output"] = max(cost["output"], k.price_out_per_m)
        # The key's own cache prices (price table / keys file), as Butler's ledger settles them.
        read = k.price_cache_read_per_m if k.price_cache_read_per_m is not None else k.price_in_per_m
        write = k.price_cache_write_per_m if k.price_cache_write_per_m is not None else k.price_in_per_m
        cost["cacheRead"] = max(cost["cacheRead"], float(read))
        cost["cacheWrite"] = max(cost["cacheWrite"], float(write))
        m["maxTokens"] = min(m["maxTokens"], k.max_output_tokens or m["maxTokens"])  # the model's output cap
    return {"baseUrl": base_url.rstrip("/"), "apiKey": api_key, "api": "openai-completions",
            "models": list(models.values())}


def read_config(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    text = path.read_text("utf-8")
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        raise ConfigError(
            f"{path} is not plain JSON (JSON5 comments?); add the entry with `openclaw config set "
            f"models.providers.{PROVIDER_NAME} '<json>'` using `butler openclaw setup --dry-run --json`"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} does not hold a JSON object")
    return data


def merged(config: dict[str, Any], entry: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The config with the provider entry in place, and what changed (in words)."""
    out = json.loads(json.dumps(config))
    models = out.setdefault("models", {})
    if not isinstance(models, dict):
        raise ConfigError("the config's 'models' is not an object")
    models.setdefault("mode", "merge")
    providers = models.setdefault("providers", {})
    if not isinstance(providers, dict):
        raise ConfigError("the config's 'models.providers' is not an object")
    verb = "replaced" if PROVIDER_NAME in providers else "added"
    providers[PROVIDER_NAME] = entry
    return out, (f"{verb} models.providers.{PROVIDER_NAME}: baseUrl {entry['baseUrl']}, api {entry['api']}, "
                 f"{len(entry['models'])} model(s) ({', '.join(m['id'] for m in entry['models']) or 'none'})")


def write_config(path: Path, config: dict[str, Any]) -> None:
    """Write atomically, owner-only (the file holds an access token)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".butler-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(config, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)
    path.chmod(0o600)
