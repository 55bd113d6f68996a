"""Per-model prices and output caps, from a vendored copy of LiteLLM's model map (`butler prices update`).

Why LiteLLM's `model_prices_and_context_window.json`: it is maintained daily by many contributors, MIT
licensed, and one file carries everything Butler needs per model (input, output, cache read, 5-minute and
1-hour cache write prices, the per-request web search fee, and `max_output_tokens`). genai-prices has
cleaner price rules but no output caps. Butler cannot fetch it at run time (hosts may be offline, and a
budget must not change under a running task), so the few providers Butler speaks to are vendored in
`butler_skill/data/model_prices.json`, converted to USD per million tokens as decimal strings; `butler
prices update` regenerates it from an installed `litellm` package or a given file.

Order of precedence for a key (config.resolve_key): the keys file, then this table, then the registry's
provider defaults. This module reads one packaged file; rules stay in core/pricing.py.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

DATA_PATH = Path(__file__).parent / "data" / "model_prices.json"
LITELLM_FILE = "model_prices_and_context_window_backup.json"

# LiteLLM's provider names -> Butler's, for the providers Butler speaks to.
_PROVIDERS = {"openai": "openai", "anthropic": "anthropic", "groq": "groq", "nvidia_nim": "nvidia",
              "openrouter": "openrouter"}


class TableEntry(BaseModel):
    """One model's row: USD per million tokens (decimal strings in the file), fees per request, caps."""

    model_config = ConfigDict(frozen=True)

    input_per_m: Decimal
    output_per_m: Decimal
    cache_read_per_m: Decimal | None = None
    cache_write_per_m: Decimal | None = None
    cache_write_1h_per_m: Decimal | None = None
    web_search_per_request: Decimal | None = None
    max_output_tokens: int | None = None
    reasoning: bool = False


@lru_cache(maxsize=4)
def load(path: Path = DATA_PATH) -> dict[str, TableEntry]:
    """The table, keyed `provider/model` (Butler's provider names). Missing file: an empty table."""
    try:
        raw = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return {}
    return {name: TableEntry.model_validate(row) for name, row in raw["models"].items()}


def lookup(provider: str, model: str, table: Mapping[str, TableEntry] | None = None) -> TableEntry | None:
    """The row for a provider's model. OpenRouter ids (`openai/gpt-4o-mini`) fall back to the upstream
    provider's row: OpenRouter passes provider prices through (and reports the real cost per call)."""
    rows = load() if table is None else table
    row = rows.get(f"{provider}/{model}")
    if row is None and provider == "openrouter" and "/" in model:
        upstream, _, name = model.partition("/")
        row = rows.get(f"{upstream}/{name}")
    return row


# ---- update -----------------------------------------------------------------------------------------
def _per_m(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    # Through the float's shortest repr: 7.5e-08 per token is exactly 0.075 per million.
    return str((Decimal(repr(float(value))) * 1_000_000).normalize())


def _fee(value: Any) -> str | None:
    if isinstance(value, Mapping):
        value = value.get("search_context_size_medium", value.get("search_context_size_low"))
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return str(Decimal(repr(float(value))).normalize())


def convert(litellm_map: Mapping[str, Any], *, source: str) -> dict[str, Any]:
    """LiteLLM's map -> Butler's table: chat models of the providers Butler speaks to, prices per million."""
    models: dict[str, dict[str, Any]] = {}
    for name, row in litellm_map.items():
        if not isinstance(row, Mapping) or row.get("mode") != "chat":
            continue
        provider = _PROVIDERS.get(str(row.get("litellm_provider")))
        pin, pout = _per_m(row.get("input_cost_per_token")), _per_m(row.get("output_cost_per_token"))
        if provider is None or pin is None or pout is None:
            continue
        model = name.removeprefix(f"{row['litellm_provider']}/")
        entry: dict[str, Any] = {"input_per_m": pin, "output_per_m": pout}
        for field, key in (("cache_read_per_m", "cache_read_input_token_cost"),
                           ("cache_write_per_m", "cache_creation_input_token_cost"),
                           ("cache_write_1h_per_m", "cache_creation_input_token_cost_above_1hr")):
            value = _per_m(row.get(key))
            if value is not None:
                entry[field] = value
        fee = _fee(row.get("search_context_cost_per_query"))
        if fee is not None:
            entry["web_search_per_request"] = fee
        cap = row.get("max_output_tokens")
        if isinstance(cap, int) and not isinstance(cap, bool) and cap > 0:
            entry["max_output_tokens"] = cap
        if row.get("supports_reasoning") is True:
            entry["reasoning"] = True
        models[f"{provider}/{model}"] = entry
    return {"source": source, "license": "MIT (LiteLLM, BerriAI)", "units": "USD per million tokens; fees per request",
            "models": dict(sorted(models.items()))}


def installed_litellm_map() -> Path | None:
    """The map bundled with an installed `litellm` package, found without importing it (slow)."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / LITELLM_FILE
        if candidate.is_file():
            return candidate
    return None


def update(source: Path | None = None, out: Path = DATA_PATH) -> tuple[Path, int]:
    """Regenerate the vendored table from `source` (default: the installed litellm's map)."""
    src = source or installed_litellm_map()
    if src is None:
        raise FileNotFoundError("no litellm package installed: pass the map file with --from")
    data = json.loads(Path(src).read_text("utf-8"))
    version = _litellm_version() if source is None else None
    table = convert(data, source=f"litellm {version} {LITELLM_FILE}" if version else Path(src).name)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(table, indent=1, sort_keys=False) + "\n", "utf-8")
    load.cache_clear()
    return out, len(table["models"])


def _litellm_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("litellm")
    except PackageNotFoundError:
        return None
