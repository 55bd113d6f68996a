"""What a one-shot `butler call` of a read tool loads: neither pydantic nor python-jsonschema nor YAML nor the
HTTP stack (behaviour, not time: the benchmark in benchmarks/bench_spine.py times it). Each call runs the real
console script in a fresh interpreter with `-X importtime`, which lists every module the process imported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SECRETS, SMALL_KEYS, write_keys

BIN = Path(sys.executable).parent
# Top-level packages a valid read must not import.
HEAVY = {"pydantic", "pydantic_core", "jsonschema", "yaml", "httpx", "httpcore", "anyio", "mcp"}


def _run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    keys = write_keys(tmp_path / "keys.json", SMALL_KEYS)
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", **SECRETS, "BUTLER_KEYS_PATH": str(keys),
           "BUTLER_STATE_PATH": str(tmp_path / "state.db")}
    done = subprocess.run([sys.executable, "-X", "importtime", str(BIN / "butler"), *args], env=env,
                          capture_output=True, text=True, timeout=120)
    imported = {line.rsplit("|", 1)[1].strip().split(".")[0]
                for line in done.stderr.splitlines() if line.startswith("import time:") and "|" in line}
    return done, imported


@pytest.mark.parametrize("tool,payload", [("get_status", None), ("get_status", '{"history_limit": 3}'),
                                          ("get_available_keys", '{"provider": "groq"}'), ("monitor_usage", None)])
def test_a_cold_read_imports_no_heavy_package(tmp_path: Path, tool: str, payload: str | None) -> None:
    done, imported = _run(tmp_path, "call", tool, *(["--input", payload] if payload else []))
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert json.loads(done.stdout)["ok"]
    assert "butler_skill" in imported and "jsonschema_rs" in imported  # the listing works
    assert not imported & HEAVY, sorted(imported & HEAVY)


def test_an_invalid_input_takes_the_full_path_with_the_same_error(tmp_path: Path) -> None:
    """The control: the listing does see pydantic and python-jsonschema when the call needs them (an invalid
    input is explained by the full path), and the error keeps its shape and exit code."""
    done, imported = _run(tmp_path, "call", "get_status", "--input", '{"history_limit": -1}')
    assert done.returncode == 2
    error = json.loads(done.stdout)["error"]
    assert error["code"] == "invalid_input" and error["details"]["path"] == "/history_limit"
    assert {"pydantic", "jsonschema"} <= imported


def test_a_bad_keys_file_gives_the_config_error_of_the_full_path(tmp_path: Path) -> None:
    write_keys(tmp_path / "keys.json", SMALL_KEYS)
    (tmp_path / "keys.json").write_text(json.dumps({"keys": [{"id": "k", "provider": "groq",
                                                              "limits": {"tokens_per_day": "lots"}}]}))
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "BUTLER_KEYS_PATH": str(tmp_path / "keys.json"),
           "BUTLER_STATE_PATH": str(tmp_path / "state.db")}
    done = subprocess.run([str(BIN / "butler"), "call", "get_status"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1
    error = json.loads(done.stdout)["error"]
    assert error["code"] == "config_error"
    assert error["details"] == {"file": str(tmp_path / "keys.json"), "key_id": "k", "field": "limits.tokens_per_day"}
