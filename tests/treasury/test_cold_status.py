"""A treasury read that calls nobody loads no network code: `butler call treasury_status` without a Circle or
OpenRouter key (or with `refresh: false`) imports neither httpx, cryptography, PyYAML (no YAML policy file) nor the
Circle and OpenRouter clients; a key set brings them in, and the answer is the same either way."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import write_keys

HEAVY = ("httpx", "cryptography", "yaml", "butler_skill.adapters.circle", "butler_skill.adapters.openrouter")
PROBE = """
import json, sys
from butler_skill.host.context import Context
from butler_skill.host.dispatch import call_tool
out = call_tool("treasury_status", json.loads(sys.argv[1]), Context())
print(json.dumps({"ok": out["ok"], "loaded": [m for m in sys.argv[2].split(",") if m in sys.modules],
                  "wallet_error": out["result"]["wallet"]["error"] if out["ok"] else None}))
"""


def _probe(tmp_path: Path, args: dict[str, object], **env: str) -> dict[str, object]:
    keys = write_keys(tmp_path / "keys.json", [{"id": "k1", "provider": "groq", "limits": {"tokens_per_day": 1000}}])
    base = {"HOME": str(tmp_path), "BUTLER_KEYS_PATH": str(keys), "BUTLER_STATE_PATH": str(tmp_path / "state.db"),
            "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args), ",".join(HEAVY)], env={**base, **env},
                          capture_output=True, text=True, timeout=120, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_a_status_that_calls_nobody_loads_no_network_code(tmp_path: Path) -> None:
    for args in ({}, {"refresh": False}):
        got = _probe(tmp_path, args)
        assert got["ok"] is True and got["loaded"] == [], got
        assert got["wallet_error"] in ("CIRCLE_API_KEY is not set", "not refreshed")


def test_a_wallet_key_brings_the_client_in(tmp_path: Path) -> None:
    key = "TEST_API_KEY:" + "a" * 32 + ":" + "b" * 32
    got = _probe(tmp_path, {"refresh": False}, CIRCLE_API_KEY=key)
    assert got["ok"] is True and "butler_skill.adapters.circle" in got["loaded"], got
