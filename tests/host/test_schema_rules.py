"""The input schemas say the rules the handlers keep, so a client validating against them learns each rule
before it calls: which shapes are accepted is decided by schemas/ alone, and the handler agrees."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from butler_skill.host.context import Context
from butler_skill.host.dispatch import call_tool
from butler_skill.host.manifest import load_manifest

MANIFEST = load_manifest()


def valid(tool: str, payload: dict[str, Any]) -> bool:
    spec = MANIFEST.tool(tool)
    assert spec is not None
    schema = json.loads(MANIFEST.schema_path(spec.input_schema).read_text("utf-8"))
    return bool(jsonschema.Draft202012Validator(schema).is_valid(payload))


@pytest.mark.parametrize(("tool", "payload", "accepted"), [
    # allocate_tokens: exactly one of prd_path / prd_text, or a bare token count (the PRD then optional)
    ("allocate_tokens", {"tokens": 20_000}, True),
    ("allocate_tokens", {"prd_text": "- a"}, True),
    ("allocate_tokens", {"prd_path": "prd.md"}, True),
    ("allocate_tokens", {"prd_text": "- a", "tokens": 500}, True),
    ("allocate_tokens", {"prd_text": "- a", "prd_path": None}, True),  # an explicit null is "not given"
    ("allocate_tokens", {}, False),
    ("allocate_tokens", {"label": "x"}, False),
    ("allocate_tokens", {"prd_text": None, "prd_path": None}, False),
    ("allocate_tokens", {"prd_text": "- a", "prd_path": "prd.md"}, False),
    ("allocate_tokens", {"prd_text": "- a", "prd_path": "prd.md", "tokens": 5}, False),
    ("allocate_tokens", {"tokens": 0}, False),
    ("allocate_tokens", {"tokens": 100_000_001}, False),
    # scan_secrets: staged and since are two different diffs, not both
    ("scan_secrets", {"staged": True}, True),
    ("scan_secrets", {"since": "HEAD~1"}, True),
    ("scan_secrets", {"staged": False, "since": "HEAD~1"}, True),
    ("scan_secrets", {"staged": True, "since": None}, True),
    ("scan_secrets", {"staged": True, "since": "HEAD~1"}, False),
    ("scan_secrets", {"since": "--output=/tmp/x"}, False),  # never an option for git
    ("scan_secrets", {"paths": ["a\x00b"]}, False),
    ("scan_secrets", {"paths": [""]}, False),
    # treasury_autobuy: intent_id only with mode=execute
    ("treasury_autobuy", {"mode": "execute", "intent_id": "topup_1"}, True),
    ("treasury_autobuy", {"mode": "propose", "intent_id": None}, True),
    ("treasury_autobuy", {"intent_id": "topup_1"}, False),
    ("treasury_autobuy", {"mode": "propose", "intent_id": "topup_1"}, False),
    # bounded figures
    ("record_usage", {"session_id": "s", "request_id": "r", "input_tokens": 10_000_000, "output_tokens": 0,
                      "cost": 10_000}, True),
    ("record_usage", {"session_id": "s", "request_id": "r", "input_tokens": 10_000_001, "output_tokens": 0}, False),
    ("record_usage", {"session_id": "s", "request_id": "r", "input_tokens": 1, "output_tokens": 0, "cost": 1e308},
     False),
    ("rotate_key", {"session_id": "s", "retry_after_s": 86_401}, False),
    ("get_available_keys", {"min_tokens": 10**13}, False),
])
def test_the_schema_says_the_rule(tool: str, payload: dict[str, Any], accepted: bool) -> None:
    assert valid(tool, payload) is accepted


@pytest.mark.parametrize(("tool", "payload"), [
    ("allocate_tokens", {"prd_text": "- a", "prd_path": "prd.md"}),
    ("allocate_tokens", {"label": "no source"}),
    ("scan_secrets", {"staged": True, "since": "HEAD"}),
    ("treasury_autobuy", {"mode": "evaluate", "intent_id": "topup_1"}),
])
def test_what_the_schema_refuses_the_tool_refuses_as_invalid_input(ctx: Context, tool: str,
                                                                   payload: dict[str, Any]) -> None:
    out = call_tool(tool, payload, ctx)
    assert out["error"]["code"] == "invalid_input", out


def test_a_bare_token_count_allocates(ctx: Context) -> None:
    out = call_tool("allocate_tokens", {"tokens": 20_000}, ctx)
    assert out["ok"], out
    assert out["result"]["allocated"] == 20_000 and out["result"]["estimate"]["method"] == "given"
