"""Every path Butler reads is a regular file of bounded size, read without blocking; prd_path stays inside the
working directory and the folders the person allows. Each refusal is a clear error of the right code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from butler_skill.errors import ConfigError, InvalidInput
from butler_skill.host.context import Context
from butler_skill.host.dispatch import call_tool
from butler_skill.safe_read import SIZE_CAPS, read_text
from tests.conftest import SMALL_KEYS, write_keys

BIN = Path(sys.executable).parent


def _fifo(folder: Path, name: str = "pipe") -> Path:
    path = folder / name
    os.mkfifo(path)
    return path


def _bounded(fn, seconds: float = 20.0):  # type: ignore[no-untyped-def]
    """Run fn in a thread; fail (instead of hanging the suite) if it blocks."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed back to the test
            box["error"] = exc

    th = threading.Thread(target=run, daemon=True)
    th.start()
    th.join(seconds)
    assert not th.is_alive(), "reading blocked"
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box.get("value")


@pytest.mark.parametrize("kind", sorted(SIZE_CAPS))
def test_a_fifo_is_refused_without_blocking(tmp_path: Path, kind: str) -> None:
    pipe = _fifo(tmp_path)
    with pytest.raises((ConfigError, InvalidInput), match="FIFO"):
        _bounded(lambda: read_text(pipe, kind))


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_devices_are_refused_before_a_byte_is_read(device: str) -> None:
    if not os.path.exists(device):
        pytest.skip(f"no {device}")
    with pytest.raises(InvalidInput, match="character device"):
        _bounded(lambda: read_text(device, "prd"))


def test_a_directory_and_an_oversize_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="a directory"):
        read_text(tmp_path, "keys")
    big = tmp_path / "big.json"
    with big.open("wb") as fh:
        fh.truncate(SIZE_CAPS["keys"] + 1)  # sparse: no disk used
    with pytest.raises(ConfigError, match="over the"):
        read_text(big, "keys")
    ok = tmp_path / "ok.json"
    ok.write_bytes(b"x" * SIZE_CAPS["keys"])  # exactly at the cap is fine
    assert len(read_text(ok, "keys")) == SIZE_CAPS["keys"]


def test_non_utf8_keys_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_bytes(b'{"keys": [{"id": "a\xff\xfe"}]}')
    ctx = Context(env={"HOME": str(tmp_path)}, keys_path=path, state_path=tmp_path / "s.db")
    out = call_tool("get_status", {}, ctx)
    assert out["error"]["code"] == "config_error"
    assert "not UTF-8" in out["error"]["message"] and str(path) in out["error"]["message"]


@pytest.fixture
def world(tmp_path: Path) -> dict[str, object]:
    work = tmp_path / "work"
    work.mkdir()
    keys = write_keys(tmp_path / "keys.json", SMALL_KEYS)
    env = {"HOME": str(tmp_path), "BUTLER_KEYS_PATH": str(keys), "BUTLER_STATE_PATH": str(tmp_path / "s.db")}
    return {"work": work, "env": env, "dir": tmp_path}


def _alloc(world: dict[str, object], prd_path: str, **env: str) -> dict[str, object]:
    ctx = Context(env={**world["env"], **env}, cwd=world["work"])  # type: ignore[dict-item, arg-type]
    try:
        return _bounded(lambda: call_tool("allocate_tokens", {"prd_path": prd_path}, ctx))  # type: ignore[no-any-return]
    finally:
        ctx.close()


def test_prd_path_fifo_and_dev_zero_answer_invalid_input_promptly(world: dict[str, object]) -> None:
    pipe = _fifo(world["work"])  # type: ignore[arg-type]
    for target in (pipe.name, str(pipe)):
        out = _alloc(world, target)
        assert out["error"]["code"] == "invalid_input" and "FIFO" in out["error"]["message"]  # type: ignore[index]
    zero = Path(world["work"]) / "zero"  # type: ignore[arg-type]
    zero.symlink_to("/dev/zero")
    out = _alloc(world, "zero")
    # /dev/zero is outside the working directory once the link is resolved; both checks refuse it (the
    # confinement first: a well-formed path the person's settings do not allow is policy_denied).
    assert out["error"]["code"] == "policy_denied"  # type: ignore[index]
    out = _alloc(world, "zero", BUTLER_READ_PATHS="/dev")
    assert out["error"]["code"] == "invalid_input" and "character device" in out["error"]["message"]  # type: ignore[index]


def test_prd_path_is_confined_to_cwd_and_the_allowlist(world: dict[str, object]) -> None:
    outside = Path(world["dir"]) / "elsewhere"  # type: ignore[arg-type]
    outside.mkdir()
    (outside / "prd.md").write_text("- a\n- b\n", "utf-8")
    work = Path(world["work"])  # type: ignore[arg-type]
    (work / "inside.md").write_text("- a\n", "utf-8")
    (work / "escape.md").symlink_to(outside / "prd.md")
    for target in (str(outside / "prd.md"), "../elsewhere/prd.md", "escape.md", "/etc/passwd"):
        out = _alloc(world, target)
        assert out["error"]["code"] == "policy_denied", target  # type: ignore[index]
        assert "BUTLER_READ_PATHS" in out["error"]["message"]  # type: ignore[index]
        # nothing about the file (its size, its estimate) comes back
        assert "estimate" not in json.dumps(out)
    assert _alloc(world, "inside.md")["ok"]
    allowed = _alloc(world, str(outside / "prd.md"), BUTLER_READ_PATHS=f"/nonexistent{os.pathsep}{outside}")
    assert allowed["ok"] and allowed["result"]["estimate"]["requirements"] == 2  # type: ignore[index]


def test_treasury_policy_fifo_is_a_config_error(tmp_path: Path) -> None:
    from butler_skill.treasury.config import load_treasury_config

    pipe = _fifo(tmp_path, "policy.yaml")
    with pytest.raises(ConfigError, match="FIFO"):
        _bounded(lambda: load_treasury_config({"BUTLER_TREASURY_POLICY": str(pipe)}, None))


def test_baseline_fifo_and_device_are_invalid_input(tmp_path: Path) -> None:
    from butler_skill.scanning.baseline import load_baseline

    pipe = _fifo(tmp_path, "baseline.json")
    with pytest.raises(InvalidInput, match="FIFO"):
        _bounded(lambda: load_baseline(pipe))
    with pytest.raises(InvalidInput, match="character device"):
        _bounded(lambda: load_baseline(Path("/dev/zero")))


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "butler"), *args], env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=60)


def test_cli_keys_path_and_input_file_fifos_fail_fast_without_traceback(tmp_path: Path) -> None:
    pipe = _fifo(tmp_path, "keys.json")
    res = _run({"BUTLER_KEYS_PATH": str(pipe), "HOME": str(tmp_path)}, "call", "get_status")
    assert res.returncode == 1 and json.loads(res.stdout)["error"]["code"] == "config_error"
    assert "Traceback" not in res.stderr
    keys = write_keys(tmp_path / "k.json", SMALL_KEYS)
    res = _run({"BUTLER_KEYS_PATH": str(keys), "HOME": str(tmp_path)}, "call", "get_status", "--input", f"@{pipe}")
    assert res.returncode == 2 and json.loads(res.stdout)["error"]["code"] == "invalid_input"
    assert "Traceback" not in res.stderr
