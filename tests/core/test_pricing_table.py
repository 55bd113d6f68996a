"""The price table (vendored from LiteLLM's model map) and the order keys file > table > registry."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from butler_skill import price_table
from butler_skill.config import model_prices, resolve_key
from butler_skill.models import KeyConfig

D = Decimal


def key(**kw: Any) -> KeyConfig:
    return KeyConfig.model_validate({"id": "k", "limits": {"tokens_per_day": 1_000}, **kw})


def test_the_vendored_table_knows_caps_and_cache_prices() -> None:
    table = price_table.load()
    mini = table["openai/gpt-4o-mini"]
    assert (mini.input_per_m, mini.output_per_m, mini.cache_read_per_m, mini.max_output_tokens) == (
        D("0.15"), D("0.6"), D("0.075"), 16_384)
    sonnet = table["anthropic/claude-sonnet-4-5"]
    assert (sonnet.cache_read_per_m, sonnet.cache_write_per_m, sonnet.cache_write_1h_per_m) == (
        D("0.3"), D("3.75"), D(6))
    assert sonnet.web_search_per_request == D("0.01") and sonnet.max_output_tokens == 64_000
    raw = json.loads(price_table.DATA_PATH.read_text("utf-8"))
    assert raw["source"].startswith("litellm") and "MIT" in raw["license"]


def test_convert_keeps_chat_models_of_known_providers_per_million_exactly(tmp_path: Path) -> None:
    litellm_map = {
        "sample_spec": {"mode": "one of: chat, ..."},
        "gpt-x": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 1.1e-06,
                  "output_cost_per_token": 4.4e-06, "cache_read_input_token_cost": 2.75e-07,
                  "max_output_tokens": 100_000, "supports_reasoning": True},
        "groq/llama-y": {"litellm_provider": "groq", "mode": "chat", "input_cost_per_token": 5.9e-07,
                         "output_cost_per_token": 7.9e-07, "max_output_tokens": 32_768},
        "claude-z": {"litellm_provider": "anthropic", "mode": "chat", "input_cost_per_token": 3e-06,
                     "output_cost_per_token": 1.5e-05, "cache_creation_input_token_cost": 3.75e-06,
                     "cache_creation_input_token_cost_above_1hr": 6e-06, "cache_read_input_token_cost": 3e-07,
                     "search_context_cost_per_query": {"search_context_size_medium": 0.01}},
        "text-embedding-q": {"litellm_provider": "openai", "mode": "embedding", "input_cost_per_token": 1e-07},
        "bedrock/claude": {"litellm_provider": "bedrock", "mode": "chat", "input_cost_per_token": 3e-06,
                           "output_cost_per_token": 1.5e-05},
    }
    src = tmp_path / "map.json"
    src.write_text(json.dumps(litellm_map), "utf-8")
    out, n = price_table.update(src, tmp_path / "table.json")
    assert n == 3
    table = price_table.load(out)
    assert set(table) == {"openai/gpt-x", "groq/llama-y", "anthropic/claude-z"}
    assert table["openai/gpt-x"].cache_read_per_m == D("0.275") and table["openai/gpt-x"].reasoning
    assert table["groq/llama-y"].input_per_m == D("0.59") and table["groq/llama-y"].max_output_tokens == 32_768
    z = table["anthropic/claude-z"]
    assert (z.cache_write_per_m, z.cache_write_1h_per_m, z.web_search_per_request) == (D("3.75"), D(6), D("0.01"))


def test_openrouter_models_fall_back_to_the_upstream_row() -> None:
    row = price_table.lookup("openrouter", "openai/gpt-4o-mini")
    assert row is not None and row.max_output_tokens == 16_384
    assert price_table.lookup("openai", "no-such-model") is None


def test_table_then_registry_with_provider_cache_ratios() -> None:
    on_table = resolve_key(key(provider="anthropic", model="claude-sonnet-4-5"))
    assert on_table.price_source == "table" and on_table.max_output_tokens == 64_000
    assert on_table.token_param == "max_tokens"
    # unknown to the table: the registry's list price and Anthropic's ratios (0.1x, 1.25x, 2x)
    off = resolve_key(key(provider="anthropic", model="claude-unlisted", price_in_per_m=1.0, price_out_per_m=5.0))
    assert (off.price_cache_read_per_m, off.price_cache_write_per_m, off.price_cache_write_1h_per_m) == (
        D("0.1"), D("1.25"), D(2))
    openai = resolve_key(key(provider="openai"))
    assert openai.token_param == "max_completion_tokens" and openai.max_output_tokens == 16_384
    groq = resolve_key(key(provider="groq"))
    assert groq.price_source == "registry" and groq.price_cache_read_per_m == D("0.295")  # Groq: 50% off cached


def test_the_keys_file_has_the_last_word() -> None:
    k = resolve_key(key(provider="openai", model="gpt-4o-mini", price_cache_read_per_m="0.05", max_output_tokens=4_096,
                        token_param="max_tokens", web_search_per_request=0))
    p = model_prices(k)
    assert p.cache_read_per_m == D("0.05") and p.input_per_m == D("0.15") and p.max_output_tokens == 4_096
    assert k.token_param == "max_tokens" and p.web_search_per_request == 0
    # a negotiated input price moves the table's cache prices with it (gpt-4o-mini caches at 0.5x)
    discounted = resolve_key(key(provider="openai", model="gpt-4o-mini", price_in_per_m=0.10, price_out_per_m=0.40))
    assert discounted.price_source == "keys_file" and discounted.price_cache_read_per_m == D("0.05")


def test_nvidia_free_tier_stays_token_budgeted() -> None:
    k = resolve_key(key(provider="nvidia"))
    p = model_prices(k)
    assert p.input_per_m == p.output_per_m == p.read == 0 and k.tokens_per_day == 1_000
    assert k.max_output_tokens == 4_096
