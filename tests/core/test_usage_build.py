"""`Usage.of` builds the usual usage (plain non-negative counts, no amounts) without validating it again, and
`Usage.from_openai` reads the wire with fewer checks on its usual shapes: properties, each equal to its definition
(the validated model the code built before) over random values, errors included."""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from butler_skill.core.money import money
from butler_skill.core.usage import Usage

COUNTS = st.one_of(st.integers(min_value=-3, max_value=10**7), st.booleans(), st.none(), st.floats(allow_nan=True),
                   st.just("12"))
AMOUNTS = st.one_of(st.none(), st.integers(min_value=-2, max_value=5), st.decimals(allow_nan=False, places=6),
                    st.floats(min_value=-1, max_value=3), st.just(True))
FLAGS = st.one_of(st.booleans(), st.integers(min_value=0, max_value=2), st.none())
NAMES = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens",
         "reasoning_tokens", "web_search_requests")


def of_by_definition(input_tokens: Any = 0, output_tokens: Any = 0, cache_read_tokens: Any = 0,
                     cache_write_tokens: Any = 0, cache_write_1h_tokens: Any = 0, reasoning_tokens: Any = 0,
                     web_search_requests: Any = 0, tool_fees_usd: Any = 0, cost_usd: Any = None,
                     upstream_cost_usd: Any = None, byok: Any = False, estimated: Any = False) -> Usage:
    """`Usage.of` as it was: every field through the model's validation."""
    return Usage(
        input_tokens=input_tokens, output_tokens=output_tokens, cache_read_tokens=cache_read_tokens,
        cache_write_tokens=cache_write_tokens, cache_write_1h_tokens=min(cache_write_1h_tokens, cache_write_tokens),
        reasoning_tokens=min(reasoning_tokens, output_tokens), web_search_requests=web_search_requests,
        tool_fees_usd=money(tool_fees_usd),
        total_tokens=input_tokens + output_tokens + cache_read_tokens + cache_write_tokens,
        cost_usd=money(cost_usd) if cost_usd is not None else None,
        upstream_cost_usd=money(upstream_cost_usd) if upstream_cost_usd is not None else None,
        byok=byok, estimated=estimated)


def outcome(fn: Any, *args: Any, **kw: Any) -> Any:
    try:
        u = fn(*args, **kw)
    except (ValueError, TypeError) as exc:  # (pydantic's ValidationError is a ValueError)
        return ("error", type(exc).__name__ if not isinstance(exc, ValueError) else "ValueError")
    return ("usage", u, u.model_dump(), {k: type(v) for k, v in u.model_dump().items()}, u.model_fields_set)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(st.integers(min_value=0, max_value=10**7), COUNTS), min_size=7, max_size=7),
       st.one_of(st.just(0), AMOUNTS), st.one_of(st.none(), AMOUNTS), st.one_of(st.none(), AMOUNTS), FLAGS, FLAGS)
def test_usage_of_equals_the_validated_model(counts: list[Any], fees: Any, cost: Any, upstream: Any, byok: Any,
                                             estimated: Any) -> None:
    kw = dict(zip(NAMES, counts, strict=True))
    kw.update(tool_fees_usd=fees, cost_usd=cost, upstream_cost_usd=upstream, byok=byok, estimated=estimated)
    assert outcome(Usage.of, **kw) == outcome(of_by_definition, **kw)


def from_openai_by_definition(raw: Mapping[str, Any], *, estimated: bool = False) -> Usage:
    """`Usage.from_openai` as it was written before its checks were reordered."""
    def count(value: Any) -> int:
        if value is None:
            return 0
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or not math.isfinite(value):
            raise ValueError(f"not a token count: {value!r}")
        return int(value)

    def amount(value: Any) -> Decimal | None:
        if value is None:
            return None
        try:
            return money(value)
        except ValueError:
            return None

    prompt = count(raw.get("prompt_tokens"))
    completion = count(raw.get("completion_tokens"))
    pdetails = raw.get("prompt_tokens_details") or {}
    cdetails = raw.get("completion_tokens_details") or {}
    cached = count(pdetails.get("cached_tokens")) if isinstance(pdetails, Mapping) else 0
    written = count(pdetails.get("cache_write_tokens")) if isinstance(pdetails, Mapping) else 0
    reasoning = count(cdetails.get("reasoning_tokens")) if isinstance(cdetails, Mapping) else 0
    cached = min(cached, prompt)
    written = min(written, prompt - cached)
    cost_details = raw.get("cost_details")
    upstream = cost_details.get("upstream_inference_cost") if isinstance(cost_details, Mapping) else None
    return of_by_definition(input_tokens=prompt - cached - written, cache_read_tokens=cached,
                            cache_write_tokens=written, output_tokens=completion, reasoning_tokens=reasoning,
                            cost_usd=amount(raw.get("cost")), upstream_cost_usd=amount(upstream),
                            byok=raw.get("is_byok") is True, estimated=estimated)


WIRE_COUNT = st.one_of(st.integers(min_value=0, max_value=10**6), COUNTS)
DETAILS = st.one_of(st.none(), st.just({}), st.just(0), st.just([]), st.just("x"),
                    st.fixed_dictionaries({}, optional={"cached_tokens": WIRE_COUNT, "cache_write_tokens": WIRE_COUNT,
                                                        "reasoning_tokens": WIRE_COUNT}))
RAW = st.fixed_dictionaries({}, optional={
    "prompt_tokens": WIRE_COUNT, "completion_tokens": WIRE_COUNT, "total_tokens": WIRE_COUNT,
    "prompt_tokens_details": DETAILS, "completion_tokens_details": DETAILS,
    "cost": st.one_of(AMOUNTS, st.just("0.0012"), st.just("junk")), "is_byok": FLAGS,
    "cost_details": st.one_of(st.none(), st.just({}), st.just(0),
                              st.fixed_dictionaries({"upstream_inference_cost": AMOUNTS}))})


@settings(max_examples=400, deadline=None)
@given(RAW, st.booleans())
def test_usage_from_openai_equals_its_definition(raw: dict[str, Any], estimated: bool) -> None:
    assert outcome(Usage.from_openai, raw, estimated=estimated) == outcome(from_openai_by_definition, raw,
                                                                          estimated=estimated)
