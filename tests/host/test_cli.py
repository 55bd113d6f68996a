"""The `butler` command as a person or a shell tool would run it: JSON out, exit codes, tables, init."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SECRETS

BIN = Path(sys.executable).parent


def butler(*args: str, env: dict[str, str], stdin: str | None = None, cwd: Path | None = None
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "butler"), *args], env=env, input=stdin, capture_output=True, text=True,
                          timeout=60, cwd=cwd)


def no_secrets(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS.values():
            assert secret not in text


def test_call_with_inline_file_and_stdin_input(env: dict[str, str], tmp_path: Path) -> None:
    first = butler("call", "allocate_tokens", "--input", '{"prd_text": "- a", "tokens": 500}', env=env)
    assert first.returncode == 0, first.stderr
    out: dict[str, Any] = json.loads(first.stdout)
    assert out["ok"] and out["result"]["allocated"] == 500
    (tmp_path / "in.json").write_text(json.dumps({"session_id": out["result"]["session_id"], "request_id": "r1",
                                                  "input_tokens": 10, "output_tokens": 5}))
    second = butler("call", "record_usage", "--input", f"@{tmp_path / 'in.json'}", env=env)
    assert second.returncode == 0 and json.loads(second.stdout)["result"]["session"]["used"] == 15
    third = butler("call", "get_status", "--input", "-", stdin="{}", env=env)
    assert json.loads(third.stdout)["result"]["tokens"]["active_sessions"] == 1
    no_secrets(first.stdout, second.stdout, third.stdout, first.stderr, second.stderr, third.stderr)


@pytest.mark.parametrize(("args", "code"), [
    (["call", "allocate_tokens", "--input", '{"label": "no prd, no count"}'], 2),
    (["call", "allocate_tokens", "--input", '{"prd_text": "x", "prd_path": "x.md"}'], 2),
    (["call", "record_usage", "--input", '{"session_id": "s", "request_id": "r", "input_tokens": 1, "output_tokens": 1,'
                                         ' "cost": 1e308}'], 2),
    (["call", "allocate_tokens", "--input", "not json"], 2),
    (["call", "allocate_tokens", "--input", "@/nonexistent/file.json"], 2),
    (["call", "rotate_key", "--input", '{"session_id": "ses_nope"}'], 1),
    (["call", "allocate_tokens", "--input", '{"prd_text": "x", "tokens": 99999999}'], 1),
])
def test_exit_codes_and_error_shape(env: dict[str, str], args: list[str], code: int) -> None:
    res = butler(*args, env=env)
    assert res.returncode == code
    out = json.loads(res.stdout)
    assert out["ok"] is False and set(out["error"]) == {"code", "message", "details"}


def test_unknown_tool_is_usage_error(env: dict[str, str]) -> None:
    res = butler("call", "steal_keys", env=env)
    assert res.returncode == 2 and "invalid choice" in res.stderr


def test_status_and_keys_tables(env: dict[str, str]) -> None:
    butler("call", "allocate_tokens", "--input", '{"prd_text": "x", "tokens": 700, "label": "t1"}', env=env)
    status = butler("status", env=env)
    assert status.returncode == 0
    assert "provider" in status.stdout and "groq" in status.stdout and "700" in status.stdout and "t1" in status.stdout
    keys = butler("keys", env=env)
    assert keys.returncode == 0 and "alpha-1" in keys.stdout and "beta-1" in keys.stdout
    no_secrets(status.stdout, keys.stdout)


def test_init_writes_default_keys_0600_and_warns_in_git(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    env = {"HOME": str(tmp_path), "PATH": os.environ["PATH"]}
    target = repo / "api-keys.json"
    res = butler("init", "--path", str(target), env=env)
    assert res.returncode == 0, res.stderr
    assert "28,500,000 tokens/day" in res.stdout and "warning" in res.stderr and "not ignored" in res.stderr
    assert target.stat().st_mode & 0o777 == 0o600
    data = json.loads(target.read_text())
    keys = data["keys"]
    assert len(keys) == 8 and len({k["provider"] for k in keys}) == 6
    assert all("key" not in k and k["key_env"] for k in keys)
    assert butler("init", "--path", str(target), env=env).returncode == 1  # refuses to overwrite
    (repo / ".gitignore").write_text("api-keys.json\n")
    quiet = butler("init", "--path", str(target), "--force", env=env)
    assert quiet.returncode == 0 and "warning" not in quiet.stderr


def test_init_default_path_under_home(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "PATH": os.environ["PATH"]}
    assert butler("init", env=env).returncode == 0
    assert (tmp_path / ".openclaw/workspace/api-keys.json").exists()
    st = butler("status", env=env)
    assert st.returncode == 0 and "28,500,000" in st.stdout  # sokosumi ships disabled until configured


def test_demo_runs_and_reads_well(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "PATH": os.environ["PATH"]}
    res = butler("demo", "--state-dir", str(tmp_path / "d"), env=env)
    assert res.returncode == 0, res.stderr
    for needle in ("allocate_tokens", "alert", "rotated", "duplicate=True", "provider", "remaining", "cost today"):
        assert needle in res.stdout
