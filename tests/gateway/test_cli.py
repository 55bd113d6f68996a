"""`butler token ...` and `butler openclaw setup`: tokens shown once and stored hashed; OpenClaw's config gets
a provider entry with a Butler token and the keys' prices, never a provider key, and nothing else changes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from butler_skill.host.cli import main
from butler_skill.host.context import Context
from butler_skill.store.access_tokens import AccessTokenStore
from tests.conftest import SECRETS, SMALL_KEYS, write_keys

OPENAI_STYLE = [{**SMALL_KEYS[2], "model": "gpt-4o-mini", "price_in_per_m": 0.15, "price_out_per_m": 0.6},
                {**SMALL_KEYS[0], "model": "llama-3.1-8b-instant"}]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    write_keys(tmp_path / "keys.json", OPENAI_STYLE)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("BUTLER_KEYS_PATH", str(tmp_path / "keys.json"))
    monkeypatch.setenv("BUTLER_STATE_PATH", str(tmp_path / "state.db"))
    monkeypatch.delenv("OPENCLAW_CONFIG_PATH", raising=False)
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    return tmp_path


def store(home: Path) -> AccessTokenStore:
    return AccessTokenStore(Context(env={"HOME": str(home)}, state_path=home / "state.db",
                                    keys_path=home / "keys.json").db)


def test_a_token_is_shown_once_and_stored_only_as_a_hash(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "create", "--name", "laptop", "--daily-budget", "5000", "--json"]) == 0
    created = json.loads(capsys.readouterr().out)
    secret = created["token"]
    assert secret.startswith("butler_at_") and created["daily_budget"] == 5000 and created["role"] == "agent"
    assert main(["token", "list"]) == 0
    listing = capsys.readouterr().out
    assert created["id"] in listing and "laptop" in listing and secret not in listing
    found = store(home).find(secret)
    assert found is not None and found.id == created["id"]
    for path in home.glob("state.db*"):
        assert secret not in path.read_bytes().decode("latin-1")
    assert main(["token", "revoke", created["id"]]) == 0
    assert store(home).find(secret) is None
    assert main(["token", "revoke", "tok_nope"]) == 2


def test_an_admin_token(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "create", "--name", "ops", "--role", "admin", "--json"]) == 0
    secret = json.loads(capsys.readouterr().out)["token"]
    token = store(home).find(secret)
    assert token is not None and token.role == "admin"


def test_openclaw_setup_dry_run_changes_nothing(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["openclaw", "setup", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would write" in out and "<a new Butler access token>" in out and "gpt-4o-mini" in out
    assert not (home / ".openclaw" / "openclaw.json").exists()
    assert store(home).list() == []


def test_openclaw_setup_writes_the_provider_and_keeps_the_rest(home: Path, capsys: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    config = home / "oc" / "openclaw.json"
    config.parent.mkdir()
    before = {"agents": {"defaults": {"model": {"primary": "anthropic/claude-sonnet-4"}}},
              "models": {"mode": "merge", "providers": {"litellm": {"baseUrl": "http://127.0.0.1:4000"}}},
              "mcp": {"servers": {"butler": {"command": "butler-mcp"}}}}
    config.write_text(json.dumps(before))
    monkeypatch.setenv("OPENCLAW_CONFIG_PATH", str(config))
    assert main(["openclaw", "setup", "--base-url", "http://127.0.0.1:9999/v1"]) == 0
    out = capsys.readouterr().out
    assert "added models.providers.butler" in out and str(config) in out
    after = json.loads(config.read_text())
    entry = after["models"]["providers"].pop("butler")
    assert after == before  # nothing else touched
    assert entry["baseUrl"] == "http://127.0.0.1:9999/v1" and entry["api"] == "openai-completions"
    by_id = {m["id"]: m for m in entry["models"]}
    # gpt-4o-mini's cached input is half price (the price table), not a tenth
    assert by_id["gpt-4o-mini"]["cost"] == {"input": 0.15, "output": 0.6, "cacheRead": 0.075, "cacheWrite": 0.15}
    assert by_id["llama-3.1-8b-instant"]["cost"]["output"] == 0.08
    token = store(home).find(entry["apiKey"])
    assert token is not None and token.name == "openclaw"
    assert entry["apiKey"] not in out  # written to the file only
    text = config.read_text()
    for secret in SECRETS.values():
        assert secret not in text
    assert config.stat().st_mode & 0o777 == 0o600
    assert main(["openclaw", "setup", "--config", str(config)]) == 0
    assert "replaced models.providers.butler" in capsys.readouterr().out


def test_openclaw_setup_refuses_a_config_it_cannot_merge(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = home / ".openclaw" / "openclaw.json"
    config.parent.mkdir()
    config.write_text("{ // JSON5\n  agents: {} }")
    assert main(["openclaw", "setup"]) == 1
    assert "openclaw config set models.providers.butler" in capsys.readouterr().err
    assert config.read_text() == "{ // JSON5\n  agents: {} }"
    assert store(home).list() == []
