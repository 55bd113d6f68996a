"""core.pricing: published pricing rules to the cent (exactly, in Decimal), and properties of the formula."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from butler_skill.core.pricing import (
    ModelPrices,
    UsageFigures,
    call_cost,
    from_pico,
    money,
    output_limit,
    to_pico,
    usage_cost,
)

D = Decimal

# Published list prices (USD per million tokens), written out here rather than read from the table.
SONNET_45 = ModelPrices(input_per_m=D(3), output_per_m=D(15), cache_read_per_m=D("0.30"), cache_write_per_m=D("3.75"),
                        cache_write_1h_per_m=D(6), web_search_per_request=D("0.01"), max_output_tokens=64_000)
GPT_4O_MINI = ModelPrices(input_per_m=D("0.15"), output_per_m=D("0.60"), cache_read_per_m=D("0.075"))
GPT_41 = ModelPrices(input_per_m=D(2), output_per_m=D(8), cache_read_per_m=D("0.50"))


def test_anthropic_cache_writes_5m_and_1h_reads_and_web_search() -> None:
    u = UsageFigures(input_tokens=1_000, cache_write_tokens=5_000, cache_write_1h_tokens=3_000,
                     cache_read_tokens=10_000, output_tokens=500, web_search_requests=2)
    # 1,000 x $3 + 2,000 x $3.75 (5m) + 3,000 x $6 (1h) + 10,000 x $0.30 + 500 x $15, per million; + 2 x $0.01
    assert usage_cost(u, SONNET_45) == D("0.059")
    # the old rule (writes at 1.0x, searches free) came out 52% low on this call
    old = UsageFigures(input_tokens=1_000, cache_write_tokens=5_000, cache_read_tokens=10_000, output_tokens=500)
    flat = ModelPrices(input_per_m=D(3), output_per_m=D(15), cache_read_per_m=D("0.3"), cache_write_per_m=D(3))
    assert usage_cost(old, flat) == D("0.0285")


def test_openai_cached_input_is_half_or_a_quarter_per_model() -> None:
    u = UsageFigures(input_tokens=2_000, cache_read_tokens=8_000, output_tokens=1_000)
    assert usage_cost(u, GPT_4O_MINI) == D("0.0003") + D("0.0006") + D("0.0006")  # 0.5x: $0.075/M
    assert usage_cost(u, GPT_41) == D("0.004") + D("0.004") + D("0.008")  # 0.25x: $0.50/M


def test_a_reported_cost_is_kept_digit_for_digit() -> None:
    u = UsageFigures(input_tokens=10, output_tokens=10)
    assert call_cost(u, GPT_4O_MINI, reported=money(0.00001623)) == D("0.00001623")
    assert to_pico(money(0.00001623)) == 16_230_000 and from_pico(16_230_000) == D("0.00001623")
    # BYOK: OpenRouter's fee on its credits plus what the upstream billed the user's own key
    assert call_cost(u, GPT_4O_MINI, reported=D("0.00000081"), upstream=D("0.0000162"), byok=True) == D("0.00001701")
    # not BYOK: the upstream figure is already inside cost
    assert call_cost(u, GPT_4O_MINI, reported=D("0.00001623"), upstream=D("0.0000162")) == D("0.00001623")


def test_money_refuses_what_is_not_an_amount() -> None:
    for bad in (-1, "x", float("nan"), float("inf"), True, None, [1]):
        with pytest.raises(ValueError):
            money(bad)
    assert money("0.1") + money(0.2) == D("0.3")  # no float drift


def test_output_limit_never_exceeds_the_cap() -> None:
    assert output_limit(49_936, 16_384) == 16_384
    assert output_limit(900, 16_384) == 900
    assert output_limit(49_936, None) == 49_936


# ---- properties ---------------------------------------------------------------------------------------
counts = st.integers(min_value=0, max_value=10**9)
prices = st.decimals(min_value=0, max_value=1_000, places=6, allow_nan=False, allow_infinity=False)


@st.composite
def figures(draw: st.DrawFn) -> UsageFigures:
    writes = draw(counts)
    return UsageFigures(input_tokens=draw(counts), output_tokens=draw(counts), cache_read_tokens=draw(counts),
                        cache_write_tokens=writes, cache_write_1h_tokens=draw(st.integers(0, writes)),
                        web_search_requests=draw(st.integers(0, 10_000)))


@st.composite
def model_prices(draw: st.DrawFn) -> ModelPrices:
    opt = st.none() | prices
    return ModelPrices(input_per_m=draw(prices), output_per_m=draw(prices), cache_read_per_m=draw(opt),
                       cache_write_per_m=draw(opt), cache_write_1h_per_m=draw(opt),
                       web_search_per_request=draw(st.decimals(min_value=0, max_value=1, places=4)))


@settings(deadline=None)  # properties, not timings: a loaded machine must not fail them
@given(figures(), model_prices())
def test_cost_is_exact_non_negative_and_each_token_priced_once(u: UsageFigures, p: ModelPrices) -> None:
    cost = usage_cost(u, p)
    assert isinstance(cost, Decimal) and cost >= 0
    five_min = u.cache_write_tokens - u.cache_write_1h_tokens
    per_m = (u.input_tokens * p.input_per_m + u.cache_read_tokens * p.read + five_min * p.write
             + u.cache_write_1h_tokens * p.write_1h + u.output_tokens * p.output_per_m)
    # exact: no rounding anywhere, and pico-USD holds it without loss
    assert cost == per_m / 1_000_000 + u.web_search_requests * p.web_search_per_request
    assert from_pico(to_pico(cost)) == cost


@settings(deadline=None)
@given(figures(), prices)
def test_one_price_for_everything_prices_every_token_exactly_once(u: UsageFigures, price: Decimal) -> None:
    p = ModelPrices(input_per_m=price, output_per_m=price, cache_read_per_m=price, cache_write_per_m=price,
                    cache_write_1h_per_m=price)
    tokens = u.input_tokens + u.output_tokens + u.cache_read_tokens + u.cache_write_tokens
    assert usage_cost(u, p) == tokens * price / 1_000_000


@settings(deadline=None)
@given(figures(), model_prices(), st.sampled_from(["input_tokens", "output_tokens", "cache_read_tokens",
                                                    "cache_write_tokens", "web_search_requests"]),
       st.integers(1, 10**6))
def test_cost_is_monotone_in_every_count(u: UsageFigures, p: ModelPrices, field: str, more: int) -> None:
    bigger = u.model_copy(update={field: getattr(u, field) + more})
    assert usage_cost(bigger, p) >= usage_cost(u, p)


@settings(deadline=None)
@given(figures(), model_prices())
def test_moving_writes_to_the_hour_never_costs_less_when_the_hour_costs_more(u: UsageFigures, p: ModelPrices) -> None:
    if p.write_1h < p.write or u.cache_write_1h_tokens == u.cache_write_tokens:
        return
    moved = u.model_copy(update={"cache_write_1h_tokens": u.cache_write_1h_tokens + 1})
    assert usage_cost(moved, p) >= usage_cost(u, p)


@settings(deadline=None)
@given(st.decimals(min_value=0, max_value=10**6, places=12))
def test_pico_round_trip_is_exact(amount: Decimal) -> None:
    assert from_pico(to_pico(amount)) == amount
