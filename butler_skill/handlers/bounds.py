"""Bounds on every number and string a caller gives a tool, and the JSON Schema pieces that state a rule.

Each bound is finite and generous for real work, so a figure past it is a mistake (or an attack), not a
big job: it is `invalid_input`, refused before anything changes. Because every figure is bounded, no sum
the ledger keeps can grow to infinity, and no output can carry Infinity or NaN.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import Field, WithJsonSchema

from butler_skill.core.limits import MAX_CALL_COST_USD, MAX_CALL_TOKENS

# A task's or an allocation's budget (as before): 100M tokens.
MAX_BUDGET_TOKENS = 100_000_000
# Filters and counts a caller reads by (min_tokens): no key-day holds more than this.
MAX_DAY_TOKENS = 1_000_000_000_000
# Server-side tool requests (web searches) one response can bill.
MAX_CALL_REQUESTS = 10_000
MAX_ID = 200  # session, task, request, intent and key ids
MAX_NAME = 100  # provider names
MAX_PATH = 4_096  # PATH_MAX on Linux
MAX_PATHS = 1_000
NO_NUL = r"^[^\x00]*$"  # no path or revision may carry a NUL: the OS cannot take it

TokenCount = Annotated[int, Field(ge=0, le=MAX_CALL_TOKENS)]
# Money a caller reports, kept exactly: a JSON number, or a plain decimal string (no sign, no exponent),
# within 0..MAX_CALL_COST_USD. The schema states the same bound on both forms, so whatever it accepts the
# model accepts too.
MONEY_TEXT = r"^(?:[0-9]{1,4}(?:\.[0-9]{1,18})?|10000(?:\.0{1,18})?)$"
Money = Annotated[
    Decimal,
    Field(ge=0, le=MAX_CALL_COST_USD, allow_inf_nan=False),
    WithJsonSchema({"anyOf": [{"type": "number", "minimum": 0, "maximum": MAX_CALL_COST_USD},
                              {"type": "string", "pattern": MONEY_TEXT}]}),
]
Budget = Annotated[int, Field(gt=0, le=MAX_BUDGET_TOKENS)]
Id = Annotated[str, Field(min_length=1, max_length=MAX_ID)]
ProviderName = Annotated[str, Field(min_length=1, max_length=MAX_NAME)]
PathText = Annotated[str, Field(min_length=1, max_length=MAX_PATH, pattern=NO_NUL)]


def given(name: str) -> dict[str, Any]:
    """JSON Schema: the property is present and not null (an explicit null means "not given")."""
    return {"required": [name], "properties": {name: {"not": {"type": "null"}}}}


def both_given(*names: str) -> dict[str, Any]:
    return {"required": list(names), "properties": {n: {"not": {"type": "null"}} for n in names}}
