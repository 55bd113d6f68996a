"""Token usage of one call, normalised: the one value pricing, the ledger and every front pass around.

Conventions (the adapters in ``butler_skill/adapters/providers`` fill it from the wire):

* ``input_tokens``: input billed at the plain input price, i.e. *excluding* cache reads and cache writes;
* ``cache_read_tokens`` / ``cache_write_tokens``: input served from / written to the prompt cache;
  ``cache_write_1h_tokens`` is the part of the writes kept for an hour (Anthropic bills it 2x, not 1.25x);
* ``output_tokens``: everything generated, reasoning included (``reasoning_tokens`` is the part of it that
  was reasoning, informational, never added again);
* ``web_search_requests`` / ``tool_fees_usd``: server-side tools billed per request, not per token;
* ``total_tokens`` = input + cache read + cache write + output, always recomputed from the parts;
* ``cost_usd``: a cost the provider reported itself (OpenRouter), exact, which wins over Butler's estimate;
  ``upstream_cost_usd`` and ``byok``: OpenRouter's ``cost_details.upstream_inference_cost`` and ``is_byok``;
* ``estimated``: the figures are an estimate (an interrupted stream, a host's guess), not the provider's.

OpenAI-compatible: ``prompt_tokens`` *includes* ``prompt_tokens_details.cached_tokens`` (and OpenRouter's
``cache_write_tokens``), so they are taken out of the input; ``completion_tokens`` includes the reasoning.
Anthropic: ``input_tokens`` already *excludes* ``cache_creation_input_tokens`` and ``cache_read_input_tokens``.
Each token is therefore counted in exactly one field, and ``core.pricing`` prices each field once.

Pure: no I/O. ``butler_skill.adapters.providers.base`` re-exports it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from pydantic import ConfigDict, Field, computed_field

from butler_skill.core.pricing import UsageFigures, money
from butler_skill.trusted import trusted

__all__ = ["Usage"]


class Usage(UsageFigures):
    """Token usage of one call, normalised (see the module doc): the parts `core.pricing` prices, plus what a
    provider reports beside them."""

    model_config = ConfigDict(frozen=True)

    reasoning_tokens: int = Field(default=0, ge=0)
    total_tokens: int = Field(default=0, ge=0)
    cost_usd: Decimal | None = Field(default=None, description="cost the provider reported (OpenRouter), exact")
    upstream_cost_usd: Decimal | None = Field(
        default=None, description="OpenRouter cost_details.upstream_inference_cost (what the upstream billed)")
    byok: bool = Field(default=False, description="OpenRouter is_byok: the upstream billed the user's own key")
    estimated: bool = False

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total_input_tokens(self) -> int:
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    @classmethod
    def of(
        cls,
        *,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
        cache_write_1h_tokens: int = 0,
        reasoning_tokens: int = 0,
        web_search_requests: int = 0,
        tool_fees_usd: Decimal | float = 0,
        cost_usd: Decimal | float | None = None,
        upstream_cost_usd: Decimal | float | None = None,
        byok: bool = False,
        estimated: bool = False,
    ) -> Usage:
        """Build a Usage whose ``total_tokens`` is the sum of its parts. Counts that are plain non-negative ints,
        no amounts and plain bools (what the adapters parse from every answer) need no validation: the model is
        built as it stands (`trusted`, about a tenth of validating; a property holds the two equal)."""
        fast = (cost_usd is None and upstream_cost_usd is None and tool_fees_usd == 0 and type(tool_fees_usd) is int
                and type(byok) is bool and type(estimated) is bool and cls is Usage
                and _counts(input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cache_write_1h_tokens,
                            reasoning_tokens, web_search_requests))
        values = {
            "input_tokens": input_tokens, "output_tokens": output_tokens, "cache_read_tokens": cache_read_tokens,
            "cache_write_tokens": cache_write_tokens,
            "cache_write_1h_tokens": min(cache_write_1h_tokens, cache_write_tokens),
            "reasoning_tokens": min(reasoning_tokens, output_tokens),
            "web_search_requests": web_search_requests, "tool_fees_usd": _ZERO if fast else money(tool_fees_usd),
            "total_tokens": input_tokens + output_tokens + cache_read_tokens + cache_write_tokens,
            "cost_usd": money(cost_usd) if cost_usd is not None else None,
            "upstream_cost_usd": money(upstream_cost_usd) if upstream_cost_usd is not None else None,
            "byok": byok, "estimated": estimated}
        return trusted(cls, values) if fast else cls.model_validate(values)

    @classmethod
    def from_openai(cls, raw: Mapping[str, Any], *, estimated: bool = False) -> Usage:
        """From an OpenAI-compatible ``usage`` object. Raises ``ValueError`` when it is not one.

        ``prompt_tokens`` includes ``prompt_tokens_details.cached_tokens`` and (OpenRouter, for providers
        that bill cache writes) ``prompt_tokens_details.cache_write_tokens``. OpenRouter's ``cost`` is kept
        exactly, with ``is_byok`` and ``cost_details.upstream_inference_cost``."""
        prompt = _count(raw.get("prompt_tokens"))
        completion = _count(raw.get("completion_tokens"))
        pdetails = raw.get("prompt_tokens_details")
        cdetails = raw.get("completion_tokens_details")
        cached = written = reasoning = 0
        if pdetails and isinstance(pdetails, Mapping):
            cached = _count(pdetails.get("cached_tokens"))
            written = _count(pdetails.get("cache_write_tokens"))
        if cdetails and isinstance(cdetails, Mapping):
            reasoning = _count(cdetails.get("reasoning_tokens"))
        cached = min(cached, prompt)
        written = min(written, prompt - cached)
        cost_details = raw.get("cost_details")
        upstream = cost_details.get("upstream_inference_cost") if cost_details and isinstance(
            cost_details, Mapping) else None
        return cls.of(
            input_tokens=prompt - cached - written,
            cache_read_tokens=cached,
            cache_write_tokens=written,
            output_tokens=completion,
            reasoning_tokens=reasoning,
            cost_usd=_amount(raw.get("cost")),
            upstream_cost_usd=_amount(upstream),
            byok=raw.get("is_byok") is True,
            estimated=estimated,
        )

    @classmethod
    def from_anthropic(cls, raw: Mapping[str, Any], *, estimated: bool = False) -> Usage:
        """From an Anthropic ``usage`` object: ``cache_creation.ephemeral_{5m,1h}_input_tokens`` split the
        writes; ``server_tool_use.web_search_requests`` counts searches billed per request."""
        split = raw.get("cache_creation")
        w5m = _count(split.get("ephemeral_5m_input_tokens")) if isinstance(split, Mapping) else 0
        w1h = _count(split.get("ephemeral_1h_input_tokens")) if isinstance(split, Mapping) else 0
        written = raw.get("cache_creation_input_tokens")
        writes = _count(written) if written is not None else w5m + w1h
        tools = raw.get("server_tool_use")
        searches = _count(tools.get("web_search_requests")) if isinstance(tools, Mapping) else 0
        return cls.of(
            input_tokens=_count(raw.get("input_tokens")),
            output_tokens=_count(raw.get("output_tokens")),
            cache_read_tokens=_count(raw.get("cache_read_input_tokens")),
            cache_write_tokens=max(writes, w1h),
            cache_write_1h_tokens=w1h,
            web_search_requests=searches,
            estimated=estimated,
        )


_ZERO = Decimal(0)


def _counts(*values: Any) -> bool:
    """Every value a plain int (not a bool, not a subclass), none below zero."""
    return all(type(v) is int and v >= 0 for v in values)


def _amount(value: Any) -> Decimal | None:
    """A reported USD amount, exactly (floats through their shortest repr); None when absent or unreadable."""
    if value is None:
        return None
    try:
        return money(value)
    except ValueError:
        return None


def _count(value: Any) -> int:
    if type(value) is int and value >= 0:  # (the usual case, checked first)
        return value
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or not math.isfinite(value):
        raise ValueError(f"not a token count: {value!r}")
    return int(value)
