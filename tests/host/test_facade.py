"""The Python facade: the original API's method names, keyword arguments, output models."""

from __future__ import annotations

from pathlib import Path

import pytest

from butler_skill import Butler
from butler_skill.errors import InvalidInput, NoCapacity
from butler_skill.handlers.tokens import AllocateTokensOutput, GetStatusOutput
from tests.conftest import SECRETS


def test_methods_mirror_the_tools(keys_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    with Butler(keys_path=keys_file, state_path=tmp_path / "s.db") as b:
        a = b.allocate_tokens(prd_text="- one\n- two", label="facade")
        assert isinstance(a, AllocateTokensOutput) and a.success and not hasattr(a, "key")
        assert b.secret_for(a.key_id) == SECRETS[{"alpha-1": "TEST_GROQ_KEY_1", "alpha-2": "TEST_GROQ_KEY_2",
                                                  "beta-1": "TEST_OPENAI_KEY"}[a.key_id]]
        r = b.record_usage(session_id=a.session_id, request_id="r", input_tokens=10, output_tokens=10)
        assert r.session.used == 20
        assert isinstance(b.get_status(), GetStatusOutput)
        assert b.monitor_usage().total.used_today == 20
        assert len(b.get_available_keys().keys) == 3
        assert b.rotate_key(session_id=a.session_id).rotation.rotated
        with pytest.raises(InvalidInput) as err:
            b.allocate_tokens(prd_text="x", tokens=-1)
        assert err.value.details["path"] == "/tokens"
        with pytest.raises(NoCapacity):
            b.allocate_tokens(prd_text="x", tokens=10**7)
        assert "allocate_tokens" in dir(b)
        with pytest.raises(AttributeError):
            b.not_a_tool  # noqa: B018
