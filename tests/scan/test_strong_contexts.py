"""Generated passwords under password names and after an Authorization scheme, and what still reads as words.

The generic rule drops values shaped like identifiers (`*_KEY = "litellm_spend_update_buffer"`). Its word test
also accepted generated passwords: Safari / iCloud Keychain's `xunbyc-Ciqfu0-hamkos` every time its digit ended a
group, and random alphanumerics whose case changes happened to cut them into "words".
"""

from __future__ import annotations

import random
import re
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from butler_skill.core.scan import _WORD_PART, is_identifier_like, reads_random, scan_text
from tests.scan.shapes import _STAND_IN_WORDS
from tests.scan.test_url_credentials import apple_style

PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CONTEXTS = (
    ("DB_PASSWORD={v}\n", ".env"),
    ('password = "{v}"\n', "settings.py"),
    ("db:\n  password: {v}\n", "values.yaml"),
    ('{{"password": "{v}"}}\n', "config.json"),
    ('curl -H "Authorization: Bearer {v}" https://api.example.test\n', "run.sh"),
    ("API_TOKEN={v}\n", ".env"),
    ('client_secret = "{v}"\n', "client.py"),
)


def rules(text: str, path: str) -> list[str]:
    return [f.rule_id for f in scan_text(text, path)]


@PROPS
@given(st.integers(0, 2**32 - 1), st.sampled_from(CONTEXTS[:5]))
def test_keychain_passwords_are_found_under_password_names(seed: int, context: tuple[str, str]) -> None:
    """Under other secret names the free-text fragments still apply (`test` in `testuk-…`, about once in 14,000)."""
    rng = random.Random(seed)
    pw = apple_style(rng)
    while any(w in pw or w.upper() in pw for w in _STAND_IN_WORDS):
        pw = apple_style(rng)
    template, path = context
    assert rules(template.format(v=pw), path) == ["generic-secret"], pw
    assert reads_random(pw) and not is_identifier_like(pw)


@pytest.mark.parametrize("pw", ["xunbyc-Ciqfu0-hamkos", "HEYZmsfZFEoBgQZ1", "GMQLfsGtXqERYHum", "ujyYqbBrBFAJaSdr"])
def test_generated_values_that_used_to_read_as_words_are_found(pw: str) -> None:
    """A Keychain password ending a group with its digit; random alphanumerics cut into vowelless "words" by
    their case changes."""
    for template, path in CONTEXTS:
        assert rules(template.format(v=pw), path) == ["generic-secret"], (template, pw)


@pytest.mark.parametrize("pw", ["dexiky-4awomy-Rejate", "cemoDe-tysdu7-nonebo", "kotesT-wubyx4-hazixo"])
def test_stand_in_fragments_by_chance_do_not_hide_a_password(pw: str) -> None:
    """`my-`, `none`, `test` held by chance: under a password name or after `Bearer` a value of 16 characters or
    more is judged by whole stand-in words, not these fragments (other names keep the fragment list)."""
    for template, path in CONTEXTS[:5]:
        assert rules(template.format(v=pw), path) == ["generic-secret"], (template, pw)


@pytest.mark.parametrize("value", [
    "my-database-password", "your-password-goes-here", "ProductionDatabase", "correcthorsebatterystaple",
    "dummy_password_for_tests", "${DB_PASSWORD:-changeme}", "process.env.DB_PASSWORD", "xxxxxxxxxxxxxxxxxx",
    "*all*authentication*tokens*updated*successfully*", "MyCompanyName2024", "test-db-pass-local", "admin-admin-admin",
])
def test_long_stand_ins_under_password_names_stay_quiet(value: str) -> None:
    for template, path in CONTEXTS[:5]:
        assert rules(template.format(v=value), path) == [], (template, value)


@pytest.mark.parametrize("name", [
    "litellm_spend_update_buffer", "CustomPrivateKeySign", "OneLogin_Saml2_Auth", "x-goog-request-params",
    "context.eval_ctx", "HtmlCssModuleDependency", "test_ctx_mgr_rollback_if_commit_failed", "srv.recvfrom",
    "suppress_http_instrumentation", "bootstrapModules.length", "TestRoundtrip.check_roundtrip", "jwt.PyJWK",
])
def test_real_identifiers_still_read_as_words(name: str) -> None:
    """Names from the standard library, site-packages and webpack, the class the identifier test exists for."""
    assert not reads_random(name)
    assert rules(f'ASSISTANTS_HEADER_KEY = "{name}"\n', "consts.py") == []


_BACKTRACKING_WORD_PART = re.compile(r"(?:[a-z]{2,}|[A-Z][a-z]+|[A-Z]{2,}(?![a-z]))+[0-9]{0,4}|[A-Za-z]?[0-9]{1,4}")


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="abcABC0129", max_size=14))
def test_the_word_pattern_accepts_what_the_backtracking_one_did(part: str) -> None:
    assert bool(_WORD_PART.fullmatch(part)) == bool(_BACKTRACKING_WORD_PART.fullmatch(part))


def test_a_long_letter_run_before_digits_is_judged_not_backtracked() -> None:
    """The old pattern tried every way to cut the letters into words before failing: 60 letters and five digits
    under a secret name took hours. The scan now ends, and the value is a finding."""
    rng = random.Random(13)
    letters = "".join(rng.choice("qwrtzpsdfghjklxcvbnm" + "aeiou") for _ in range(200))
    for n in (40, 60, 120, 200):
        value = letters[:n] + "97531"
        assert not is_identifier_like(value + "!")
        assert rules(f'client_secret = "{value}Q"\n', "a.py") == ["generic-secret"]


def test_random_alphanumerics_rarely_read_as_words() -> None:
    """Of 20,000 random 16-character alphanumerics the word pattern used to accept about 1.5%; fewer than 0.8%
    still read as words now (the rest of that class stays a documented limit)."""
    rng = random.Random(16)
    alnum = string.ascii_letters + string.digits
    words = sum(is_identifier_like("".join(rng.choice(alnum) for _ in range(16))) for _ in range(20_000))
    assert words < 160


def test_a_random_value_starting_with_a_yaml_sigil_is_not_a_reference() -> None:
    """`*alias` and `!tag` are references when a name follows the sigil, not when random text does; `@…` and `&…`
    stay references whatever follows (`<password>@cluster0.a1b2c.mongodb.net/app` reads as `password>` and a value)."""
    assert rules("ADMIN_PASSWORD=*pAioOhu12lN0sZmUos4\n", ".env") == ["generic-secret"]
    assert rules("API_TOKEN=!Xq9vTz2LmK7wPr4Ns8\n", ".env") == ["generic-secret"]
    for value in ("*db_password", "*DbPassword", "!vault_secret", "@types/node-fetch", "&default_credentials",
                  "@cluster0.a1b2c.mongodb.net/app"):
        assert rules(f"password: {value}\n", "values.yaml") == [], value
    url = "mysql+pymysql://app:<password>@cluster0.a1b2c.mongodb.net/app"
    assert rules(f'engine = create_engine("{url}")\n', ".env") == []
