"""Report formats: text for people, JSON, and SARIF 2.1.0 checked against the OASIS schema."""

from __future__ import annotations

import json
import random
from pathlib import Path

import jsonschema
import pytest

from butler_skill.core.scan import RULES, scan_text
from butler_skill.core.scan_report import FINGERPRINT_KEY, format_text, json_report, sarif_report
from tests.scan.shapes import make_key

SCHEMA = Path(__file__).resolve().parent.parent / "data" / "sarif-schema-2.1.0.json"


@pytest.fixture(scope="module")
def findings() -> list:
    rng = random.Random(99)
    groq = make_key("groq-api-key", rng)
    gh = make_key("github-token", rng)
    pw = make_key("generic-secret", rng)
    text = f"GROQ_API_KEY={groq}\n\nGH={gh}\nDB_PASSWORD={pw}\n"
    found = scan_text(text, "deploy/my app/.env")
    assert [f.rule_id for f in found] == ["groq-api-key", "github-token", "generic-secret"]
    return found


def test_sarif_validates_against_the_schema(findings: list) -> None:
    schema = json.loads(SCHEMA.read_text("utf-8"))
    log = sarif_report(findings, tool_version="0.1.0")
    jsonschema.Draft4Validator.check_schema(schema)
    jsonschema.Draft4Validator(schema).validate(log)
    # and an empty run is valid too
    jsonschema.Draft4Validator(schema).validate(sarif_report([], tool_version="0.1.0"))


def test_sarif_content(findings: list) -> None:
    log = sarif_report(findings, tool_version="0.1.0")
    assert log["version"] == "2.1.0"
    (run,) = log["runs"]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == [r.id for r in RULES]  # every rule, stable order
    results = run["results"]
    assert [r["ruleId"] for r in results] == ["groq-api-key", "github-token", "generic-secret"]
    for res, f in zip(results, findings, strict=True):
        assert rules[res["ruleIndex"]]["id"] == res["ruleId"]
        assert res["partialFingerprints"] == {FINGERPRINT_KEY: f.fingerprint}
        loc = res["locations"][0]["physicalLocation"]
        assert loc["artifactLocation"]["uri"] == "deploy/my%20app/.env"
        assert loc["region"]["startLine"] == f.line and loc["region"]["startColumn"] == f.column
    assert [r["level"] for r in results] == ["error", "error", "warning"]
    assert results[0]["message"]["text"].endswith("gsk_…(56 chars)")


def test_sarif_is_stable(findings: list) -> None:
    a = json.dumps(sarif_report(findings, tool_version="1"), sort_keys=True)
    b = json.dumps(sarif_report(list(findings), tool_version="1"), sort_keys=True)
    assert a == b


def test_text_report(findings: list) -> None:
    text = format_text(findings, files_scanned=7, files_skipped={"binary": 2}, suppressed={"inline": 1, "baseline": 0})
    lines = text.splitlines()
    assert lines[0].startswith("deploy/my app/.env:1:14: groq-api-key gsk_…(56 chars)")
    assert f"fingerprint={findings[0].fingerprint}" in lines[0]
    assert lines[-1] == (
        "butler scan: 3 secrets found in 1 file (7 files scanned; skipped: binary 2; suppressed: inline 1)"
    )
    assert format_text([], files_scanned=3) == "butler scan: no secrets found (3 files scanned)\n"


def test_json_report(findings: list) -> None:
    doc = json_report(findings, {"files_scanned": 3, "mode": "files"})
    assert doc["ok"] is True and doc["clean"] is False and doc["files_scanned"] == 3
    assert [f["rule_id"] for f in doc["findings"]] == ["groq-api-key", "github-token", "generic-secret"]
    assert set(doc["findings"][0]) >= {"rule_id", "path", "line", "column", "fingerprint", "preview"}
    assert "allowed" not in doc["findings"][0]
