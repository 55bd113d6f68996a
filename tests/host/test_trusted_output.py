"""allocate_tokens builds its answer, and a given count's estimate, without validating them again (trusted.py): over
random keys, prices, PRDs, counts and labels, that answer is exactly what a validated model holds, and it passes the
tool's generated output schema (the host checks that on every call too)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, field_validator

from butler_skill.config import write_keys_file
from butler_skill.core.estimate import Estimate
from butler_skill.handlers import tokens as t
from butler_skill.handlers.bounds import MAX_BUDGET_TOKENS
from butler_skill.host.context import Context
from butler_skill.host.dispatch import call_tool
from butler_skill.host.validators import is_valid
from butler_skill.trusted import trusted

SCHEMA = str(Path(__file__).resolve().parents[2] / "schemas" / "allocate_tokens.output.json")
price = st.one_of(st.just(0.0), st.floats(min_value=0, max_value=500, allow_nan=False, allow_infinity=False))
keys = st.lists(st.fixed_dictionaries({
    "provider": st.sampled_from(["groq", "openai", "anthropic", "openrouter"]),
    "price_in_per_m": price, "price_out_per_m": price,
}), min_size=1, max_size=3)
asks = st.fixed_dictionaries({}, optional={
    "tokens": st.integers(min_value=1, max_value=MAX_BUDGET_TOKENS),
    "prd_text": st.text(min_size=1, max_size=300),
    "label": st.text(max_size=40),
}).filter(lambda a: "tokens" in a or "prd_text" in a)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(keys, asks)
def test_the_answer_is_what_validation_would_make(key_specs: list[dict[str, object]], ask: dict[str, object]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "keys.json"
        write_keys_file(path, [{"id": f"k{n}", "limits": {"tokens_per_day": MAX_BUDGET_TOKENS * 2}, **spec}
                               for n, spec in enumerate(key_specs)])
        ctx = Context(env={"HOME": folder}, keys_path=path, state_path=Path(folder) / "state.db")
        try:
            out = t.allocate_tokens(ctx, t.AllocateTokensInput.model_validate(ask))
            dumped = out.model_dump(mode="json")
            checked = t.AllocateTokensOutput.model_validate(out.model_dump())
            assert json.dumps(checked.model_dump(mode="json")) == json.dumps(dumped)  # same values, same types
            assert checked == out and is_valid(SCHEMA, dumped)
            for built, valid in ((out, checked), (out.estimate, checked.estimate)):
                assert {f: type(v) for f, v in built} == {f: type(v) for f, v in valid}  # 0 for 0.0 would differ
            # Through the host as well: it validates the dumped answer against the schema on every call.
            again = call_tool("allocate_tokens", ask, ctx)
            assert again["ok"] and is_valid(SCHEMA, again["result"])
        finally:
            ctx.close()


def test_an_unusual_model_takes_the_checked_way() -> None:
    # Fewer values than fields: validated (and so refused), never built half-empty.
    try:
        trusted(t.AllocateTokensOutput, {"success": True})
    except ValueError:
        return
    raise AssertionError("a partial answer was built")


def test_a_misnamed_value_takes_the_checked_way() -> None:
    # As many values as fields but one name wrong: validated (and so refused), never built without `formula`.
    values = {"method": "m", "context_tokens": 1, "requirements": 1, "input_tokens": 1, "output_tokens": 1,
              "safety_factor": 1.2, "total": 3, "formulaX": "x"}
    with pytest.raises(ValueError):
        trusted(Estimate, values)
    values["formula"] = values.pop("formulaX")
    assert trusted(Estimate, values) == Estimate.model_validate(values)


def test_a_model_with_validators_takes_the_checked_way() -> None:
    class Checked(BaseModel):
        n: int

        @field_validator("n")
        @classmethod
        def _positive(cls, n: int) -> int:
            if n < 1:
                raise ValueError("n must be positive")
            return n

    with pytest.raises(ValueError):
        trusted(Checked, {"n": 0})
