"""A state file Butler cannot use answers `storage_error` naming the file, the cause and a fix, on stdout as
the error shape and on stderr as one line, never a traceback. `internal` is left for bugs."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from butler_skill.errors import StorageError
from butler_skill.host.context import Context
from butler_skill.host.dispatch import call_tool
from butler_skill.store.db import Database
from tests.conftest import SMALL_KEYS, write_keys

BIN = Path(sys.executable).parent


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    keys = write_keys(tmp_path / "keys.json", SMALL_KEYS)
    return {"HOME": str(tmp_path), "PATH": os.environ["PATH"], "BUTLER_KEYS_PATH": str(keys),
            "BUTLER_STATE_PATH": str(tmp_path / "state.db"), "BUTLER_BUSY_TIMEOUT_MS": "50"}


def butler(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "butler"), *args], env=env, capture_output=True, text=True, timeout=60)


def assert_storage_error(res: subprocess.CompletedProcess[str], path: Path, cause: str) -> None:
    out = json.loads(res.stdout)
    err = out["error"]
    assert res.returncode == 1 and err["code"] == "storage_error", res.stdout + res.stderr
    assert err["details"]["file"] == str(path) and err["details"]["cause"] == cause
    assert str(path) in err["message"] and ";" in err["message"]  # the file, then the fix
    assert "Traceback" not in res.stderr


def test_garbage_in_place_of_the_database(env: dict[str, str]) -> None:
    path = Path(env["BUTLER_STATE_PATH"])
    path.write_bytes(os.urandom(8192))
    res = butler(env, "call", "allocate_tokens", "--input", '{"prd_text": "x", "tokens": 100}')
    assert_storage_error(res, path, "corrupt")


def test_truncated_database(env: dict[str, str]) -> None:
    path = Path(env["BUTLER_STATE_PATH"])
    assert butler(env, "call", "allocate_tokens", "--input", '{"prd_text": "x", "tokens": 100}').returncode == 0
    with sqlite3.connect(path) as conn:  # fold the WAL in, so the main file holds every page
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = path.stat().st_size
    assert size > 4 * 4096
    with path.open("r+b") as fh:
        fh.truncate(size // 3)
    res = butler(env, "call", "get_status")
    assert_storage_error(res, path, "corrupt")
    # the status table command gives the same one line on stderr
    res = butler(env, "status")
    assert res.returncode == 1 and res.stderr.startswith("butler: storage_error:") and "Traceback" not in res.stderr


def test_a_directory_in_place_of_the_database(env: dict[str, str]) -> None:
    path = Path(env["BUTLER_STATE_PATH"])
    path.mkdir()
    res = butler(env, "call", "get_status")
    assert_storage_error(res, path, "is_directory")


def test_locked_past_the_busy_timeout(env: dict[str, str]) -> None:
    path = Path(env["BUTLER_STATE_PATH"])
    assert butler(env, "call", "get_status").returncode == 0
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # held while the CLI tries to write
    try:
        res = butler(env, "call", "allocate_tokens", "--input", '{"prd_text": "x", "tokens": 100}')
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert_storage_error(res, path, "locked")
    assert "BUTLER_BUSY_TIMEOUT_MS" in json.loads(res.stdout)["error"]["message"]
    # once the lock is gone the same call works: nothing was left half-done
    assert butler(env, "call", "allocate_tokens", "--input", '{"prd_text": "x", "tokens": 100}').returncode == 0


def test_disk_full_is_a_storage_error_and_changes_nothing(env: dict[str, str]) -> None:
    ctx = Context(env=env)
    try:
        assert call_tool("allocate_tokens", {"prd_text": "x", "tokens": 100}, ctx)["ok"]
        conn = ctx.db._connection()
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")  # the file may not grow by a page: a full disk
        before = call_tool("get_status", {}, ctx)
        out = None
        for i in range(200):  # grow the ledger until a page is needed
            out = call_tool("allocate_tokens", {"prd_text": "x" * 2000, "tokens": 10, "label": f"l{i:03d}" * 30},
                            ctx)
            if not out["ok"]:
                break
        assert out is not None and out["error"]["code"] == "storage_error", out
        assert out["error"]["details"]["cause"] == "full" and "free space" in out["error"]["message"]
        conn.execute("PRAGMA max_page_count = 1000000")
        after = call_tool("get_status", {}, ctx)
        assert after["ok"] and before["ok"]
    finally:
        ctx.close()


def test_limit_of_two_to_the_seventy_is_a_config_error(tmp_path: Path, env: dict[str, str]) -> None:
    keys = [dict(SMALL_KEYS[0], limits={"tokens_per_day": 2**70})]
    write_keys(Path(env["BUTLER_KEYS_PATH"]), keys)
    res = butler(env, "call", "get_available_keys")
    err = json.loads(res.stdout)["error"]
    assert res.returncode == 1 and err["code"] == "config_error"
    assert err["details"]["field"] == "limits.tokens_per_day" and "Traceback" not in res.stderr
    for price in ("Infinity", "NaN", "1e400"):
        key = f'{{"id": "a", "provider": "groq", "price_in_per_m": {price}, "limits": {{"tokens_per_day": 5}}}}'
        Path(env["BUTLER_KEYS_PATH"]).write_text(f'{{"keys": [{key}]}}', "utf-8")
        res = butler(env, "call", "get_available_keys")
        assert json.loads(res.stdout)["error"]["code"] == "config_error", price


def test_non_utf8_keys_file_on_the_cli(env: dict[str, str]) -> None:
    Path(env["BUTLER_KEYS_PATH"]).write_bytes(b'{"keys": []}\n# \xff\xfe latin-1 \xe9\n')
    res = butler(env, "call", "get_status")
    assert res.returncode == 1 and json.loads(res.stdout)["error"]["code"] == "config_error"
    res = butler(env, "status")
    assert res.returncode == 1 and "config_error" in res.stderr and "Traceback" not in res.stderr


def test_database_class_maps_only_file_failures(tmp_path: Path) -> None:
    db = Database(tmp_path / "d.db")
    with pytest.raises(sqlite3.OperationalError), db.write() as tx:  # a bad statement is a bug, not storage
        tx.execute("SELEC nonsense")
    with pytest.raises(sqlite3.IntegrityError), db.write() as tx:
        tx.execute("INSERT INTO schema_migrations(version, name) VALUES (1, 'dup')")
    db.close()
    (tmp_path / "x.db").write_bytes(b"not a database" * 512)
    with pytest.raises(StorageError) as info:
        Database(tmp_path / "x.db")
    assert info.value.details["cause"] == "corrupt"


def test_state_folder_that_is_a_file(tmp_path: Path, env: dict[str, str]) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x", "utf-8")
    path = blocker / "state.db"
    res = butler({**env, "BUTLER_STATE_PATH": str(path)}, "call", "get_status")
    out = json.loads(res.stdout)
    assert res.returncode == 1 and out["error"]["code"] == "storage_error" and str(path) in out["error"]["message"]
    assert "Traceback" not in res.stderr


def test_log_file_that_cannot_be_opened_is_one_line(tmp_path: Path, env: dict[str, str]) -> None:
    res = butler({**env, "BUTLER_LOG_FILE": str(tmp_path)}, "call", "get_status")
    assert res.returncode == 1 and res.stderr.startswith("butler: config_error: cannot use")
    assert str(tmp_path) in res.stderr and "Traceback" not in res.stderr


def test_mcp_server_with_an_unusable_log_file_is_one_line(tmp_path: Path, env: dict[str, str]) -> None:
    res = subprocess.run([str(BIN / "butler-mcp")], env={**env, "BUTLER_LOG_FILE": str(tmp_path)}, input="",
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and res.stderr.startswith("butler-mcp: config_error: cannot use")
    assert "Traceback" not in res.stderr
