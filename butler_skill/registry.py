"""Provider facts: one place for base URL, wire format, default model, prices and key shape.

Every value here can be overridden per key in the keys file. Prices are USD per million tokens, list
prices of the default model at the time of writing; they drive cost estimates and key choice, not bills.

The registry is the fallback: per-model prices and output caps come first from the vendored price table
(butler_skill/price_table.py), and the keys file has the last word. Cache prices missing from both are
derived from the provider's ratios here (OpenAI and Groq cached input 0.5x, Anthropic reads 0.1x, 5-minute
writes 1.25x, 1-hour writes 2x). NVIDIA NIM's free tier is priced at zero: its keys stay token-budgeted.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal, NamedTuple

WireFormat = Literal["openai", "anthropic"]


class ProviderFacts(NamedTuple):
    """Plain and immutable (no pydantic, no dataclass to build at import): a cold `butler call get_status` reads
    it to fill key defaults."""

    name: str
    base_url: str
    wire_format: WireFormat
    default_model: str
    price_in_per_m: float
    price_out_per_m: float
    key_prefixes: tuple[str, ...] = ()
    env_var: str | None = None
    cache_read_ratio: Decimal = Decimal(1)
    cache_write_ratio: Decimal = Decimal(1)
    cache_write_1h_ratio: Decimal = Decimal(1)
    web_search_per_request: Decimal = Decimal(0)
    max_output_tokens: int | None = None  # of the default model, when the table does not know the key's model
    token_param: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"


DEMO_BASE_URL = "http://demo.butler.invalid/v1"

PROVIDERS: dict[str, ProviderFacts] = {
    facts.name: facts
    for facts in (
        ProviderFacts(
            name="nvidia", base_url="https://integrate.api.nvidia.com/v1", wire_format="openai",
            default_model="meta/llama-3.1-70b-instruct", price_in_per_m=0.0, price_out_per_m=0.0,
            key_prefixes=("nvapi-",), env_var="NVIDIA_API_KEY", max_output_tokens=4096,
        ),
        ProviderFacts(
            name="groq", base_url="https://api.groq.com/openai/v1", wire_format="openai",
            default_model="llama-3.3-70b-versatile", price_in_per_m=0.59, price_out_per_m=0.79,
            key_prefixes=("gsk_",), env_var="GROQ_API_KEY", cache_read_ratio=Decimal("0.5"),
            max_output_tokens=32768,
        ),
        ProviderFacts(
            name="anthropic", base_url="https://api.anthropic.com/v1", wire_format="anthropic",
            default_model="claude-sonnet-4-5", price_in_per_m=3.0, price_out_per_m=15.0,
            key_prefixes=("sk-ant-",), env_var="ANTHROPIC_API_KEY", cache_read_ratio=Decimal("0.1"),
            cache_write_ratio=Decimal("1.25"), cache_write_1h_ratio=Decimal(2), web_search_per_request=Decimal("0.01"),
            max_output_tokens=64000,
        ),
        ProviderFacts(
            name="openai", base_url="https://api.openai.com/v1", wire_format="openai",
            default_model="gpt-4o-mini", price_in_per_m=0.15, price_out_per_m=0.60,
            key_prefixes=("sk-proj-", "sk-svcacct-", "sk-"), env_var="OPENAI_API_KEY", cache_read_ratio=Decimal("0.5"),
            max_output_tokens=16384, token_param="max_completion_tokens",
        ),
        ProviderFacts(
            name="openrouter", base_url="https://openrouter.ai/api/v1", wire_format="openai",
            default_model="openai/gpt-4o-mini", price_in_per_m=0.15, price_out_per_m=0.60,
            key_prefixes=("sk-or-v1-",), env_var="OPENROUTER_API_KEY", cache_read_ratio=Decimal("0.5"),
            max_output_tokens=16384,
        ),
        # A custom OpenAI-compatible endpoint (the original's Sokosumi): base_url comes from the keys file.
        ProviderFacts(
            name="custom", base_url="", wire_format="openai", default_model="default",
            price_in_per_m=1.0, price_out_per_m=1.0,
        ),
        # The built-in demo provider: answered in-process, never over a network, no key needed.
        ProviderFacts(
            name="demo", base_url=DEMO_BASE_URL, wire_format="openai", default_model="butler-demo-1",
            price_in_per_m=0.50, price_out_per_m=1.50, cache_read_ratio=Decimal("0.1"),
        ),
    )
}


def facts_for(provider: str) -> ProviderFacts:
    """Facts for a provider name; unknown names are custom OpenAI-compatible endpoints."""
    return PROVIDERS.get(provider, PROVIDERS["custom"])
