"""The redaction layer's shortcut stays in step with the scanner, and masks every key shape it must."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from butler_skill.core import scan
from butler_skill.host import redaction
from tests.scan.shapes import make_key

TOKEN_RULES = [r.id for r in scan.RULES if r.confidence == scan.Confidence.HIGH and r.kind == "token"]


def test_shortcut_keywords_are_the_scanners() -> None:
    assert set(redaction.SHAPE_KEYWORDS) == set(scan._HIGH_KEYWORDS)
    assert set(redaction.SHAPE_KEYWORDS_CI) == set(scan._HIGH_KEYWORDS_CI)


@given(st.sampled_from(TOKEN_RULES), st.integers(0, 2**32), st.sampled_from(["", "Bearer ", "key=", "'"]))
def test_every_key_shape_is_masked_even_when_unknown(rule_id: str, seed: int, before: str) -> None:
    secret = make_key(rule_id, random.Random(seed))
    text = f"provider said: invalid credential {before}{secret} (request 42)"
    clean = redaction.redact_text(text, [])
    assert secret not in clean and clean.startswith("provider said: invalid credential ")


def test_ordinary_output_is_untouched() -> None:
    text = '{"key_id": "groq-1", "tokens": 500, "reason": "rate_limit"}'
    assert not redaction.may_hold_credential(text)
    assert redaction.redact_text(text, []) == text
