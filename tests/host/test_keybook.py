"""keybook (the keys file read without pydantic) never accepts what load_config refuses, and gives the same
keys, settings and secrets as load_config whenever it accepts: a property over random keys files mixing valid
entries with every kind of doubtful value (coercible text, wrong types, bounds, duplicates, both secret sources,
extra fields, bad settings in the environment)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from butler_skill.config import DEFAULT_KEYS, DEMO_KEYS, load_config
from butler_skill.errors import ConfigError
from butler_skill.keybook import keybook_of, read_keybook
from tests.conftest import SECRETS, SMALL_KEYS

MISSING = object()


def pick(valid: list[Any], doubtful: list[Any], absent: bool = True) -> st.SearchStrategy[Any]:
    """Mostly a valid value (or the field left out), sometimes a doubtful one."""
    return st.sampled_from(([MISSING] if absent else []) * 12 + valid * 12 + doubtful)


def plain(valid: list[Any], doubtful: list[Any], absent: bool = True) -> st.SearchStrategy[Any]:
    """Only valid values (or the field left out)."""
    return st.sampled_from(([MISSING] if absent else []) + valid)


def entries(pick: Any) -> st.SearchStrategy[dict[str, Any]]:
    """One key of a keys file, its values drawn by `pick` (valid and doubtful, or valid only)."""
    return st.fixed_dictionaries({
        "id": pick(["k1", "k2", "k3", "k4", "k5", "k6", "key-2.x_y", "a" * 64], ["", "bad id", "ké", "a" * 65, 7],
                   absent=False),
        "provider": pick(["groq", "openai", "anthropic", "openrouter", "custom", "demo", "sokosumi"], ["", 5],
                         absent=False),
        "key": pick([None, "inline-secret-0123456789"], ["", 12]),
        "key_env": pick([None, "TEST_GROQ_KEY_1", "TEST_OPENAI_KEY", "UNSET_VAR"], ["1BAD", ""]),
        "scope": pick([None, "", "acct"], [3]),
        "model": pick([None, "", "gpt-4o", "openai/gpt-4o-mini"], []),
        "base_url": pick([None, "", "http://127.0.0.1:9/v1"], []),
        "limits": pick([{"tokens_per_day": n} for n in (1, 5_000, 10**12)] * 3, [
            {"tokens_per_day": v} for v in (10**12 + 1, 0, -3, 5.0, 5.5, "5000", True, None)] + [
            {"tokens_per_day": 10, "extra": 1}, {}, "lots"], absent=False),
        "price_in_per_m": pick([None, 0, 0.25, 3, 1_000_000.0], [-1, "0.5", 2_000_000.0, True]),
        "price_out_per_m": pick([None, 1.5], [-2, "1.5"]),
        "price_cache_read_per_m": pick([None, 0.1, 0], ["0.1", -0.1, "x"]),
        "web_search_per_request": pick([None, 0.01], ["0.01", -1]),
        "max_output_tokens": pick([None, 1, 4096], [0, 5.0, "5"]),
        "token_param": pick([None, "max_tokens", "max_completion_tokens"], ["bogus"]),
        "enabled": pick([True, False], ["yes", 1, None]),
        "colour": pick([], ["red"]),  # a field KeyConfig does not know
    }).map(lambda d: {k: v for k, v in d.items() if v is not MISSING})


entry = entries(pick)
valid_entry = entries(plain)

environment = st.fixed_dictionaries({
    "BUTLER_ROTATION_THRESHOLD": pick(["0.75", "1"], ["0", "1.5", "abc", "nan"]),
    "BUTLER_LEASE_SECONDS": pick(["3600"], ["0", "-1", "x"]),
    "BUTLER_BUSY_TIMEOUT_MS": pick(["0", "250", "3600000"], ["3600001", "-1", "1.5"]),
}).map(lambda d: {k: v for k, v in d.items() if v is not MISSING})


def _both(text: str, env_extra: dict[str, str], name: str = "keys.json") -> tuple[Any, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text(text, "utf-8")
        env = {"HOME": tmp, **SECRETS, **env_extra}
        book = read_keybook(env, keys_path=path)
        try:
            cfg = load_config(env, keys_path=path)
        except ConfigError:
            return book, None
        return book, keybook_of(cfg)


@settings(max_examples=400, deadline=None)
@given(keys=st.lists(entry, min_size=1, max_size=3), wrapped=st.booleans(), env_extra=environment)
def test_keybook_accepts_only_what_load_config_accepts_and_agrees(keys: list[dict[str, Any]], wrapped: bool,
                                                                   env_extra: dict[str, str]) -> None:
    book, reference = _both(json.dumps({"keys": keys} if wrapped else keys), env_extra)
    if book is not None:
        assert reference is not None, keys
        assert book == reference


@settings(max_examples=150, deadline=None)
@given(keys=st.lists(valid_entry, min_size=1, max_size=4, unique_by=lambda e: e["id"]), wrapped=st.booleans())
def test_keybook_reads_valid_files_as_load_config_does(keys: list[dict[str, Any]], wrapped: bool) -> None:
    """The fast path is taken, not only allowed: for files of valid entries it answers, and equally."""
    book, reference = _both(json.dumps({"keys": keys} if wrapped else keys), {})
    if reference is not None and not any(k.get("key") is not None and k.get("key_env") is not None for k in keys):
        assert book is not None
    if book is not None:
        assert book == reference


@settings(max_examples=50, deadline=None)
@given(keys=st.lists(entry, max_size=3))
def test_yaml_and_non_json_text_are_left_to_load_config(keys: list[dict[str, Any]]) -> None:
    book, _ = _both(json.dumps({"keys": keys}), {}, name="keys.yaml")
    assert book is None
    book, _ = _both('{"keys": [{"id": "k", "provider": "groq", "limits": {"tokens_per_day": NaN}}]}', {})
    assert book is None


def test_the_usual_keys_files_take_the_fast_path() -> None:
    for keys in (DEFAULT_KEYS, DEMO_KEYS, SMALL_KEYS):
        book, reference = _both(json.dumps({"keys": keys}), {})
        assert book is not None and book == reference
    book, reference = _both(json.dumps({"keys": SMALL_KEYS}), {})
    assert book is not None and set(book.secrets) == {SECRETS["TEST_GROQ_KEY_1"], SECRETS["TEST_GROQ_KEY_2"],
                                                      SECRETS["TEST_OPENAI_KEY"]}
