"""Compiled JSON Schema validators (jsonschema-rs), cached per schema file. Free of pydantic and of
python-jsonschema, so a one-shot `butler call` of a read tool loads only what it validates with.

`dispatch` explains an invalid value with python-jsonschema (imported only then); this module only answers
valid or not.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any


@cache
def schema(schema_path: str) -> Any:
    with open(schema_path, encoding="utf-8") as fh:
        return json.load(fh)


@cache
def compiled(schema_path: str) -> Any:
    """The compiled validator (jsonschema-rs) that answers valid or not on every call: about a hundred times
    faster than python-jsonschema on a list of 1,000 keys, and cheaper to import for a one-shot CLI call."""
    import jsonschema_rs

    return jsonschema_rs.validator_for(schema(schema_path), validate_formats=True)


def is_valid(schema_path: str, value: Any) -> bool:
    return bool(compiled(schema_path).is_valid(value))


def finite(value: Any) -> bool:
    """No Infinity or NaN anywhere in a JSON-like value (JSON has neither). Checked by the C encoder, which refuses
    them: a walk in Python over a list of 10,000 keys took a fifth of the call."""
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:
        return False
    return True
