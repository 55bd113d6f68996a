"""`butler doctor` finds the set-up mistakes it promises to find, and says how to fix each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import SECRETS, write_keys

BIN = Path(sys.executable).parent
GOOD = [{"id": "g1", "provider": "groq", "key_env": "TEST_GROQ_KEY_1", "limits": {"tokens_per_day": 100}}]


def doctor(tmp_path: Path, keys: list[dict[str, Any]] | None, env_extra: dict[str, str] | None = None,
           folder: Path | None = None) -> tuple[int, dict[str, Any], str]:
    folder = folder or tmp_path
    path = folder / "api-keys.json"
    if keys is not None:
        write_keys(path, keys)
    env = {"HOME": str(tmp_path), "PATH": f"{BIN}:{os.environ['PATH']}", "BUTLER_KEYS_PATH": str(path),
           **(env_extra or {})}
    res = subprocess.run([str(BIN / "butler"), "doctor", "--json"], env=env, capture_output=True, text=True,
                         timeout=60)
    return res.returncode, json.loads(res.stdout), res.stdout + res.stderr


def checks(report: dict[str, Any], level: str) -> set[tuple[str, str]]:
    return {(f["check"], f["subject"]) for f in report["findings"] if f["level"] == level}


def test_clean_setup_passes(tmp_path: Path) -> None:
    code, report, out = doctor(tmp_path, GOOD, {"TEST_GROQ_KEY_1": SECRETS["TEST_GROQ_KEY_1"]})
    assert code == 0 and report["ok"] and not checks(report, "error") and not checks(report, "warning")
    assert SECRETS["TEST_GROQ_KEY_1"] not in out


def test_missing_file_and_unset_env(tmp_path: Path) -> None:
    code, report, _ = doctor(tmp_path, None)
    assert code == 1 and ("keys.exists", str(tmp_path / "api-keys.json")) in checks(report, "error")
    code, report, _ = doctor(tmp_path, GOOD)
    assert code == 1 and ("key.env", "g1") in checks(report, "error")
    fix = next(f["fix"] for f in report["findings"] if f["check"] == "key.env")
    assert "export TEST_GROQ_KEY_1" in fix


def test_readable_file_is_an_error_with_chmod_fix(tmp_path: Path) -> None:
    write_keys(tmp_path / "api-keys.json", GOOD)
    (tmp_path / "api-keys.json").chmod(0o644)
    code, report, _ = doctor(tmp_path, None, {"TEST_GROQ_KEY_1": SECRETS["TEST_GROQ_KEY_1"]})
    assert code == 1
    finding = next(f for f in report["findings"] if f["check"] == "keys.mode")
    assert finding["level"] == "error" and finding["fix"].startswith("chmod 600")


def test_git_exposure_untracked_then_tracked(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    env = {"TEST_GROQ_KEY_1": SECRETS["TEST_GROQ_KEY_1"]}
    code, report, _ = doctor(tmp_path, GOOD, env, folder=repo)
    assert code == 1 and any(c == "keys.git" for c, _ in checks(report, "error"))
    subprocess.run(["git", "-C", str(repo), "add", "-f", "api-keys.json"], check=True)
    code, report, _ = doctor(tmp_path, None, env, folder=repo)
    finding = next(f for f in report["findings"] if f["check"] == "keys.git")
    assert "tracked" in finding["message"] and "git rm --cached" in finding["fix"]


def test_inline_wrong_shape_duplicate_and_missing_base_url(tmp_path: Path) -> None:
    keys = [
        {"id": "inline", "provider": "groq", "key": SECRETS["TEST_GROQ_KEY_1"], "limits": {"tokens_per_day": 1}},
        {"id": "twin", "provider": "groq", "key_env": "TWIN", "limits": {"tokens_per_day": 1}},
        {"id": "wrong", "provider": "anthropic", "key_env": "WRONG", "limits": {"tokens_per_day": 1}},
        {"id": "custom", "provider": "acme", "key_env": "ACME", "limits": {"tokens_per_day": 1}},
    ]
    env = {"TWIN": SECRETS["TEST_GROQ_KEY_1"], "WRONG": SECRETS["TEST_GROQ_KEY_2"], "ACME": "x" * 20}
    code, report, out = doctor(tmp_path, keys, env)
    assert code == 1
    assert {("key.inline", "inline"), ("key.duplicate", "twin"), ("key.shape", "wrong")} <= checks(report, "warning")
    assert ("key.base_url", "custom") in checks(report, "error")
    for secret in SECRETS.values():
        assert secret not in out


def test_malformed_keys_file_is_named(tmp_path: Path) -> None:
    code, report, out = doctor(tmp_path, [{"id": "bad", "provider": "groq", "key": SECRETS["TEST_GROQ_KEY_1"],
                                           "limits": {"tokens_per_day": "lots"}}])
    assert code == 1
    finding = next(f for f in report["findings"] if f["check"] == "keys.valid")
    assert "bad" in finding["message"] and "limits.tokens_per_day" in finding["message"]
    assert SECRETS["TEST_GROQ_KEY_1"] not in out
