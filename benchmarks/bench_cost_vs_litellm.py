"""Butler's cost per call beside the provider's published rules and LiteLLM's `completion_cost`, for documented
response shapes (OpenAI cached input, reasoning, Groq, Anthropic cache writes 5m/1h + web search, OpenRouter
reported cost and BYOK). Prints one line per case; LiteLLM's column is `-` when litellm is not installed.

Run: .venv/bin/python benchmarks/bench_cost_vs_litellm.py   (`pip install -e '.[bench]'` brings litellm)
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # LiteLLM would otherwise download its map at import

from benchmarks._common import machine
from butler_skill.adapters.providers.base import Usage
from butler_skill.config import model_prices, resolve_key
from butler_skill.core.pricing import call_cost
from butler_skill.models import KeyConfig

D = Decimal
M = D(1_000_000)

# (name, provider, model, wire, usage as documented, published cost computed by hand from the price page)
CASES: list[tuple[str, str, str, str, dict[str, Any], Decimal]] = [
    ("openai gpt-4o-mini, 1,024 cached", "openai", "gpt-4o-mini", "openai",
     {"prompt_tokens": 1117, "completion_tokens": 46, "total_tokens": 1163,
      "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
      "completion_tokens_details": {"reasoning_tokens": 0}},
     (93 * D("0.15") + 1024 * D("0.075") + 46 * D("0.6")) / M),
    ("openai gpt-4.1, 0.25x cache", "openai", "gpt-4.1", "openai",
     {"prompt_tokens": 20_000, "completion_tokens": 1_500, "total_tokens": 21_500,
      "prompt_tokens_details": {"cached_tokens": 16_000}, "completion_tokens_details": {"reasoning_tokens": 1_200}},
     (4_000 * D(2) + 16_000 * D("0.5") + 1_500 * D(8)) / M),
    ("openai o3-mini, reasoning", "openai", "o3-mini", "openai",
     {"prompt_tokens": 3_000, "completion_tokens": 9_000, "total_tokens": 12_000,
      "prompt_tokens_details": {"cached_tokens": 2_048}, "completion_tokens_details": {"reasoning_tokens": 8_000}},
     (952 * D("1.1") + 2_048 * D("0.55") + 9_000 * D("4.4")) / M),
    ("groq llama-3.3-70b-versatile", "groq", "llama-3.3-70b-versatile", "openai",
     {"queue_time": 0.0375, "prompt_tokens": 18, "prompt_time": 0.0007, "completion_tokens": 556,
      "completion_time": 0.46, "total_tokens": 574, "total_time": 0.46},
     (18 * D("0.59") + 556 * D("0.79")) / M),
    ("anthropic sonnet-4.5, 5m+1h writes, search", "anthropic", "claude-sonnet-4-5", "anthropic",
     {"input_tokens": 2_048, "cache_creation_input_tokens": 5_000, "cache_read_input_tokens": 12_000,
      "cache_creation": {"ephemeral_5m_input_tokens": 2_000, "ephemeral_1h_input_tokens": 3_000},
      "output_tokens": 503, "server_tool_use": {"web_search_requests": 1}},
     (2_048 * D(3) + 2_000 * D("3.75") + 3_000 * D(6) + 12_000 * D("0.3") + 503 * D(15)) / M + D("0.01")),
    ("anthropic haiku-4.5, 5m writes only", "anthropic", "claude-haiku-4-5", "anthropic",
     {"input_tokens": 50, "cache_creation_input_tokens": 10_000, "cache_read_input_tokens": 0, "output_tokens": 300},
     (50 * D(1) + 10_000 * D("1.25") + 300 * D(5)) / M),
    ("openrouter reported cost", "openrouter", "openai/gpt-4o-mini", "openai",
     {"prompt_tokens": 14, "completion_tokens": 23, "total_tokens": 37, "cost": 0.00001623, "is_byok": False,
      "cost_details": {"upstream_inference_cost": None}},
     D("0.00001623")),
    ("openrouter BYOK (fee + upstream)", "openrouter", "openai/gpt-4o-mini", "openai",
     {"prompt_tokens": 14, "completion_tokens": 23, "total_tokens": 37, "cost": 0.00000081, "is_byok": True,
      "cost_details": {"upstream_inference_cost": 0.0000162}},
     D("0.00000081") + D("0.0000162")),
]


def butler_cost(provider: str, model: str, wire: str, raw: dict[str, Any]) -> Decimal:
    key = resolve_key(KeyConfig.model_validate({"id": "k", "provider": provider, "model": model,
                                                "limits": {"tokens_per_day": 1}}))
    u = Usage.from_anthropic(raw) if wire == "anthropic" else Usage.from_openai(raw)
    return call_cost(u, model_prices(key), reported=u.cost_usd, upstream=u.upstream_cost_usd, byok=u.byok)


def litellm_cost(provider: str, model: str, wire: str, raw: dict[str, Any]) -> Decimal | None:
    try:
        import litellm
    except ImportError:
        return None
    name = {"groq": f"groq/{model}", "openrouter": f"openrouter/{model}"}.get(provider, model)
    if wire == "anthropic":
        total_in = raw["input_tokens"] + raw.get("cache_creation_input_tokens", 0) + raw.get(
            "cache_read_input_tokens", 0)
        usage = litellm.Usage(prompt_tokens=total_in, completion_tokens=raw["output_tokens"],
                              total_tokens=total_in + raw["output_tokens"],
                              cache_creation_input_tokens=raw.get("cache_creation_input_tokens", 0),
                              cache_read_input_tokens=raw.get("cache_read_input_tokens", 0),
                              prompt_tokens_details={"cached_tokens": raw.get("cache_read_input_tokens", 0)},
                              server_tool_use=raw.get("server_tool_use"),
                              cache_creation_token_details=raw.get("cache_creation"))
    else:
        usage = litellm.Usage(**{k: v for k, v in raw.items() if k in (
            "prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details",
            "completion_tokens_details", "cost", "is_byok", "cost_details")})
    response = litellm.ModelResponse(model=name, usage=usage, choices=[
        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "x"}}])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return D(repr(litellm.completion_cost(completion_response=response, model=name)))
    except Exception as exc:  # a comparison column, not a dependency
        print(f"    litellm could not price {name}: {type(exc).__name__}: {str(exc)[:80]}")
        return None


def main() -> int:
    print(f"machine: {machine()}")
    try:
        from importlib.metadata import version

        print(f"litellm {version('litellm')}, its bundled cost map (no download)")
    except ImportError:
        print("litellm not installed: its column shows '-'")
    print(f"{'case':44} {'published':>14} {'butler':>14} {'litellm':>14}  butler=published")
    exact = 0
    for name, provider, model, wire, raw, published in CASES:
        ours = butler_cost(provider, model, wire, raw)
        theirs = litellm_cost(provider, model, wire, raw)
        same = ours == published
        exact += same
        lit = f"{theirs:.10f}" if theirs is not None else "-"
        print(f"{name:44} {published:14.10f} {ours:14.10f} {lit:>14}  {'yes' if same else 'NO'}")
    key = resolve_key(KeyConfig.model_validate({"id": "k", "provider": "anthropic", "model": "claude-sonnet-4-5",
                                                "limits": {"tokens_per_day": 1}}))
    prices, raw = model_prices(key), CASES[4][4]
    start = time.perf_counter()
    n = 20_000
    for _ in range(n):
        u = Usage.from_anthropic(raw)
        call_cost(u, prices, reported=u.cost_usd)
    took = (time.perf_counter() - start) / n
    print(f"{exact}/{len(CASES)} cases exact to the pico-dollar; parse + price one Anthropic usage: "
          f"{took * 1e6:.1f} µs")
    return 0 if exact == len(CASES) else 1


if __name__ == "__main__":
    raise SystemExit(main())
