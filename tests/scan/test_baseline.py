"""Baselines: accepted fingerprints round-trip, suppress exactly what they list, and hold no secret."""

from __future__ import annotations

import json
import random
from pathlib import Path
from types import SimpleNamespace

import pytest

from butler_skill.core.scan import scan_text
from butler_skill.errors import InvalidInput
from butler_skill.handlers.scan import ScanSecretsInput, scan_secrets
from butler_skill.scanning.baseline import baseline_document, load_baseline, parse_baseline, write_baseline
from tests.scan.shapes import make_key


def test_round_trip_and_stable_bytes(tmp_path: Path) -> None:
    rng = random.Random(3)
    keys = [make_key("groq-api-key", rng), make_key("github-token", rng)]
    findings = scan_text(f"A={keys[0]}\nB={keys[1]}\nC={keys[0]}\n", "x.env")
    assert len(findings) == 3
    path = tmp_path / "baseline.json"
    assert write_baseline(path, findings) == 2  # the same secret in one file is one entry
    first = path.read_bytes()
    assert load_baseline(path) == {f.fingerprint for f in findings}
    write_baseline(path, list(reversed(findings)))
    assert path.read_bytes() == first
    text = first.decode()
    for k in keys:
        assert k not in text and k[len(k) // 2:] not in text
    assert "preview" not in text


def test_parse_rejects_malformed() -> None:
    with pytest.raises(InvalidInput):
        parse_baseline([])
    with pytest.raises(InvalidInput, match="version"):
        parse_baseline({"version": 99, "entries": []})
    with pytest.raises(InvalidInput, match="entry 0"):
        parse_baseline({"version": 1, "entries": [{"fingerprint": "not-hex"}]})
    assert parse_baseline({"version": 1, "entries": []}) == frozenset()


def test_baseline_suppresses_only_listed_findings(tmp_path: Path) -> None:
    rng = random.Random(4)
    old, new = make_key("openrouter-api-key", rng), make_key("openrouter-api-key", rng)
    (tmp_path / "a.env").write_text(f"OLD={old}\n")
    ctx = SimpleNamespace(cwd=tmp_path)
    before = scan_secrets(ctx, ScanSecretsInput())
    (tmp_path / "bl.json").write_text(json.dumps(baseline_document(before.findings)))
    (tmp_path / "a.env").write_text(f"\n\nOLD={old}\nNEW={new}\n")  # the accepted one moved lines
    after = scan_secrets(ctx, ScanSecretsInput(baseline="bl.json"))
    assert [(f.line, f.rule_id) for f in after.findings] == [(4, "openrouter-api-key")]
    assert after.suppressed == {"inline": 0, "baseline": 1}
