"""Token usage of one call, normalised: the one value pricing, the ledger and every front pass around.

Conventions (the adapters in ``butler_skill/adapters/providers`` fill it from the wire):

* ``input_tokens``: input billed at the plain input price, i.e. *excluding* cache reads and cache writes;
* ``cache_read_tokens`` / ``cache_write_tokens``: input served from / written to the prompt cache;
* ``output_tokens``: everything generated, reasoning included (``reasoning_tokens`` is the part of it that
  was reasoning, informational, never added again);
* ``total_tokens`` = input + cache read + cache write + output, always recomputed from the parts;
* ``cost_usd``: a cost the provider reported itself (OpenRouter), which wins over Butler's estimate;
* ``estimated``: the figures are an estimate (an interrupted stream, a host's guess), not the provider's.

Pure: no I/O. ``butler_skill.adapters.providers.base`` re-exports it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field

__all__ = ["Usage"]


class Usage(BaseModel):
    """Token usage of one call, normalised (see the module doc)."""

    model_config = ConfigDict(frozen=True)

    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    cache_read_tokens: int = Field(default=0, ge=0)
    cache_write_tokens: int = Field(default=0, ge=0)
    reasoning_tokens: int = Field(default=0, ge=0)
    total_tokens: int = Field(default=0, ge=0)
    cost_usd: float | None = Field(default=None, description="cost the provider reported (OpenRouter)")
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
        reasoning_tokens: int = 0,
        cost_usd: float | None = None,
        estimated: bool = False,
    ) -> Usage:
        """Build a Usage whose ``total_tokens`` is the sum of its parts."""
        return cls(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_read_tokens=cache_read_tokens,
            cache_write_tokens=cache_write_tokens,
            reasoning_tokens=min(reasoning_tokens, output_tokens),
            total_tokens=input_tokens + cache_read_tokens + cache_write_tokens + output_tokens,
            cost_usd=cost_usd,
            estimated=estimated,
        )

    @classmethod
    def from_openai(cls, raw: Mapping[str, Any], *, estimated: bool = False) -> Usage:
        """From an OpenAI-compatible ``usage`` object. Raises ``ValueError`` when it is not one."""
        prompt = _count(raw.get("prompt_tokens"))
        completion = _count(raw.get("completion_tokens"))
        pdetails = raw.get("prompt_tokens_details") or {}
        cdetails = raw.get("completion_tokens_details") or {}
        cached = _count(pdetails.get("cached_tokens")) if isinstance(pdetails, Mapping) else 0
        reasoning = _count(cdetails.get("reasoning_tokens")) if isinstance(cdetails, Mapping) else 0
        cost = raw.get("cost")
        return cls.of(
            input_tokens=max(0, prompt - cached),
            cache_read_tokens=min(cached, prompt),
            output_tokens=completion,
            reasoning_tokens=reasoning,
            cost_usd=float(cost) if isinstance(cost, int | float) and not isinstance(cost, bool) else None,
            estimated=estimated,
        )

    @classmethod
    def from_anthropic(cls, raw: Mapping[str, Any], *, estimated: bool = False) -> Usage:
        """From an Anthropic ``usage`` object."""
        return cls.of(
            input_tokens=_count(raw.get("input_tokens")),
            output_tokens=_count(raw.get("output_tokens")),
            cache_read_tokens=_count(raw.get("cache_read_input_tokens")),
            cache_write_tokens=_count(raw.get("cache_creation_input_tokens")),
            estimated=estimated,
        )


def _count(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or not math.isfinite(value):
        raise ValueError(f"not a token count: {value!r}")
    return int(value)
