"""Models built from values Butler's own code made, without validating them again.

pydantic validates every field of a model it builds; for an answer whose every value the code computed itself
(ints, floats and strs it typed, models already validated) that check re-proves what the code says, and on the
allocation path (its answer, and a given count's estimate) it cost about a tenth of the call (issue 12). `trusted`
builds the same instance `model_validate` would, as `model_construct` does, in a few lines (`model_construct`
walks every field's aliases and defaults, and is slower than validating). The tool boundary does not move: the
host still validates every handler's dumped output against the tool's generated output schema
(host/dispatch.validate_output), and a property test holds these outputs equal to validated ones over random
inputs (tests/host/test_trusted_output.py).
"""

from __future__ import annotations

from functools import cache
from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)
_set = object.__setattr__
_new = object.__new__


@cache
def _field_names(cls: type[BaseModel]) -> frozenset[str] | None:
    """The names of `cls`'s fields when `trusted` may build it by hand (no private attributes, no post-init hook, no
    validators of its own, not a root model); None when it may not."""
    decorators = cls.__pydantic_decorators__
    if (cls.__private_attributes__ or cls.__pydantic_post_init__ or cls.__pydantic_root_model__
            or decorators.model_validators or decorators.field_validators):
        return None
    return frozenset(cls.model_fields)


def trusted(cls: type[M], values: dict[str, Any]) -> M:
    """An instance of `cls` holding `values` as they are: every field given, each already of its field's type."""
    if values.keys() != _field_names(cls):
        return cls.model_validate(values)  # anything unusual (a name missing or unknown) takes the checked way
    model = _new(cls)
    _set(model, "__dict__", values)
    _set(model, "__pydantic_fields_set__", set(values))
    _set(model, "__pydantic_extra__", None)
    _set(model, "__pydantic_private__", None)
    return model
