"""How many tokens a PRD will cost, by a formula anyone can check by hand.

    context      = ceil(characters / 4)                 (about four characters a token)
    requirements = list items + lines with must/should/shall/need to, at least 1
    input        = context x (1 + requirements / 4)     (the context is re-read as work proceeds)
    output       = 1,000 + 1,500 x requirements         (a plan plus work per requirement)
    total        = ceil((input + output) x 1.2), clamped to [1,000, 2,000,000]

Every term grows with the text and with each requirement, so adding a requirement never lowers
the estimate; the clamp keeps it bounded.
"""

from __future__ import annotations

import math
import re

from pydantic import BaseModel

from butler_skill.trusted import trusted

CHARS_PER_TOKEN = 4
REREAD_PER_REQUIREMENT = 0.25
OUTPUT_BASE = 1_000
OUTPUT_PER_REQUIREMENT = 1_500
SAFETY_FACTOR = 1.2
MIN_ESTIMATE = 1_000
MAX_ESTIMATE = 2_000_000

_LIST_ITEM = re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)]|[a-zA-Z][.)])\s+\S")
_MODAL = re.compile(r"\b(?:must|should|shall|needs? to|required to)\b", re.IGNORECASE)


class Estimate(BaseModel):
    method: str
    context_tokens: int
    requirements: int
    input_tokens: int
    output_tokens: int
    safety_factor: float
    total: int
    formula: str


def count_requirements(text: str) -> int:
    return max(1, sum(1 for line in text.splitlines() if _LIST_ITEM.match(line) or _MODAL.search(line)))


def estimate_prd(text: str) -> Estimate:
    context = math.ceil(len(text) / CHARS_PER_TOKEN)
    requirements = count_requirements(text)
    input_tokens = math.ceil(context * (1 + REREAD_PER_REQUIREMENT * requirements))
    output_tokens = OUTPUT_BASE + OUTPUT_PER_REQUIREMENT * requirements
    raw = math.ceil((input_tokens + output_tokens) * SAFETY_FACTOR)
    total = min(MAX_ESTIMATE, max(MIN_ESTIMATE, raw))
    return Estimate(
        method="prd_formula",
        context_tokens=context,
        requirements=requirements,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        safety_factor=SAFETY_FACTOR,
        total=total,
        formula=(
            f"ceil(({input_tokens} input + {output_tokens} output) x {SAFETY_FACTOR}) = {raw}"
            + (f", clamped to {total}" if total != raw else "")
        ),
    )


def given_estimate(tokens: int) -> Estimate:
    """The caller named the tokens: split them input/output in the formula's typical 1:1 proportion. (Every value
    is typed here, so the model is built without validating them again: butler_skill/trusted.py.)"""
    return trusted(Estimate, {
        "method": "given",
        "context_tokens": 0,
        "requirements": 0,
        "input_tokens": tokens // 2,
        "output_tokens": tokens - tokens // 2,
        "safety_factor": 1.0,
        "total": tokens,
        "formula": f"{tokens} tokens as requested",
    })


def cost_usd(input_tokens: int, output_tokens: int, price_in_per_m: float, price_out_per_m: float) -> float:
    return round((input_tokens * price_in_per_m + output_tokens * price_out_per_m) / 1_000_000, 6)


def estimate_cost(estimate: Estimate, price_in_per_m: float, price_out_per_m: float) -> float:
    """Cost of an estimate at a key's prices, scaled so the parts add up to the reserved total."""
    parts = estimate.input_tokens + estimate.output_tokens
    if parts == 0:
        return 0.0
    scale = estimate.total / parts
    return cost_usd(
        round(estimate.input_tokens * scale), round(estimate.output_tokens * scale),
        price_in_per_m, price_out_per_m,
    )
