"""The keys file: formats, defaults, and errors that name the place but never the secret."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from butler_skill.config import load_config, parse_keys
from butler_skill.errors import ConfigError, UnknownKey

SECRET = "gsk_" + "Zq8Wm3Rt6Yp1Ua4Sd7Fg0Hj2Kl5Zx9Cv" + "b8Nm4Qw7Er1Ty5Ui"


def test_bare_list_yaml_and_json(tmp_path: Path) -> None:
    y = "- id: g1\n  provider: groq\n  key_env: G\n  limits: {tokens_per_day: 1000}\n"
    assert parse_keys(y, "keys.yaml")[0].id == "g1"
    j = json.dumps({"keys": [{"id": "o1", "provider": "openai", "key": SECRET, "limits": {"tokens_per_day": 5}}]})
    key = parse_keys(j, "keys.json")[0]
    assert SECRET not in repr(key) and SECRET not in key.model_dump_json()


@pytest.mark.parametrize(("entry", "field"), [
    ({"id": "bad-1", "provider": "groq", "key": SECRET, "limits": {"tokens_per_day": -1}}, "limits.tokens_per_day"),
    ({"id": "bad-2", "provider": "groq", "key": SECRET, "limits": {}}, "limits.tokens_per_day"),
    ({"id": "bad-3", "provider": "groq", "key": SECRET, "key_env": "X", "limits": {"tokens_per_day": 1}}, "(key)"),
    ({"id": "bad-4", "provider": "groq", "key": SECRET, "limits": {"tokens_per_day": 1}, "colour": "red"}, "colour"),
    ({"id": "bad-5", "provider": "groq", "key": 12345678901234567890, "limits": {"tokens_per_day": 1}}, "key"),
])
def test_malformed_key_names_file_key_and_field_not_secret(entry: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_keys(json.dumps({"keys": [entry]}), "/x/keys.json")
    msg = err.value.message
    assert "/x/keys.json" in msg and entry["id"] in msg and field in msg
    assert SECRET not in msg and SECRET not in json.dumps(err.value.details)
    assert "12345678901234567890" not in msg


def test_broken_syntax_gives_line_not_content() -> None:
    with pytest.raises(ConfigError) as err:
        parse_keys('{"keys": [{"id": "a", "key": "' + SECRET + '" oops', "k.json")
    assert SECRET not in err.value.message and "line" in err.value.message


def test_duplicate_ids_and_unknown_key(tmp_path: Path) -> None:
    entry = {"id": "same", "provider": "groq", "key_env": "G", "limits": {"tokens_per_day": 1}}
    with pytest.raises(ConfigError):
        parse_keys(json.dumps([entry, entry]), "k.json")
    path = tmp_path / "k.json"
    path.write_text(json.dumps([entry]))
    cfg = load_config({"G": SECRET}, keys_path=path)
    assert cfg.secret_for("same") == SECRET
    with pytest.raises(UnknownKey):
        cfg.secret_for("other")
    assert cfg.state_path == tmp_path / "butler-state.db"


def test_env_settings_are_validated(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    path.write_text(json.dumps([{"id": "a", "provider": "groq", "key_env": "G", "limits": {"tokens_per_day": 1}}]))
    assert load_config({"BUTLER_ROTATION_THRESHOLD": "0.5"}, keys_path=path).rotation_threshold == 0.5
    with pytest.raises(ConfigError):
        load_config({"BUTLER_ROTATION_THRESHOLD": "1.5"}, keys_path=path)
    with pytest.raises(ConfigError):
        load_config({"BUTLER_LEASE_SECONDS": "soon"}, keys_path=path)
