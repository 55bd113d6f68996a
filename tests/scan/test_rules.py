"""Each rule: a random key of its shape is found where it is usually written; close decoys are not."""

from __future__ import annotations

import json
import random

import pytest

from butler_skill.core.scan import (
    RULES,
    RULES_BY_ID,
    Finding,
    fingerprint,
    is_placeholder,
    preview,
    redact_secrets,
    scan_text,
    shannon_entropy,
)
from tests.scan.shapes import ALL_RULES, ALNUM, HEX, URLSAFE, in_context, make_key, pem

RNG_SEED = 4242


def _rng(tag: str) -> random.Random:
    return random.Random(f"{RNG_SEED}:{tag}")


def _s(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def rules_found(text: str, path: str = "x.env") -> list[str]:
    return [f.rule_id for f in scan_text(text, path)]


def test_every_rule_is_covered_by_the_shapes() -> None:
    assert {r.id for r in RULES} == set(ALL_RULES)
    assert len({r.id for r in RULES}) == len(RULES)


@pytest.mark.parametrize("rule_id", ALL_RULES)
def test_rule_finds_its_shape(rule_id: str) -> None:
    for i in range(20):
        secret = make_key(rule_id, _rng(f"{rule_id}:{i}"))
        text, path = in_context(rule_id, secret)
        findings = scan_text(text, path)
        assert [f.rule_id for f in findings] == [rule_id], (rule_id, i)
        f = findings[0]
        assert f.fingerprint == fingerprint(rule_id, secret) or rule_id == "private-key"
        assert f.confidence == RULES_BY_ID[rule_id].confidence
        assert secret not in f.model_dump_json()


@pytest.mark.parametrize("rule_id", ALL_RULES)
def test_position_is_one_based_line_and_column(rule_id: str) -> None:
    secret = make_key(rule_id, _rng(rule_id))
    text, path = in_context(rule_id, secret)
    text = "# header\n\n" + text
    (f,) = scan_text(text, path)
    offset = text.index(secret.split("\n")[0])
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    assert (f.line, f.column) == (line, col)
    assert f.end_line == line + secret.count("\n")
    assert f.length == len(secret) or rule_id == "private-key"


def test_openai_key_shapes() -> None:
    rng = _rng("openai")
    proj = "sk-proj-" + _s(rng, URLSAFE, 156)
    assert rules_found(f"KEY={proj}") == ["openai-project-key"]
    legacy = "sk-" + _s(rng, ALNUM, 20) + "T3BlbkFJ" + _s(rng, ALNUM, 20)
    assert rules_found(f"KEY={legacy}") == ["openai-legacy-key"]
    # the marker is what makes a legacy key: a near miss has none
    assert rules_found(f"KEY=sk-{_s(rng, ALNUM, 20)}T3BlbkFI{_s(rng, ALNUM, 20)}", "a.py") == []
    assert rules_found("KEY=sk-proj-abc123", "a.py") == []


@pytest.mark.parametrize(
    "text",
    [
        "OPENAI_API_KEY=sk-...",
        "OPENAI_API_KEY=sk-xxxx",
        "OPENAI_API_KEY=<your-key>",
        "OPENAI_API_KEY=${OPENAI_API_KEY}",
        "OPENAI_API_KEY=sk-proj-" + "x" * 100,
        "OPENAI_API_KEY=sk-proj-" + "X" * 100,
        "OPENAI_API_KEY=sk-proj-" + "a" * 100,
        "OPENAI_API_KEY=sk-proj-" + ("0123456789abcdef" * 8),
        "OPENAI_API_KEY=sk-proj-" + ("abc123" * 20),
        "OPENAI_API_KEY=sk-proj-your-key-here-your-key-here-your-key-here-xx",
        "OPENAI_API_KEY=sk-proj-" + "EXAMPLE" + "k" * 60,
        "GROQ_API_KEY=gsk_" + "your_groq_api_key_here_" + "0" * 29,
        "NVIDIA_API_KEY=nvapi-" + "-" * 64,
        "OPENROUTER_API_KEY=sk-or-v1-" + "0" * 64,
        "OPENROUTER_API_KEY=sk-or-v1-" + ("0123456789abcdef" * 4),
        "CIRCLE_API_KEY=TEST_API_KEY:" + "0" * 32 + ":" + "0" * 32,
        "CIRCLE_API_KEY=TEST_API_KEY:<key-id>:<key-secret>",
        "STRIPE_KEY=sk_test_" + "4eC39HqLyjWDarjtT1zdp7dc",  # Stripe's documented example key
        "STRIPE_KEY=sk_live_" + "1234567890",
        "AWS_ACCESS_KEY_ID=AKIA" + "IOSFODNN7EXAMPLE",  # AWS's documented example key
        "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "GITHUB_TOKEN=ghp_" + "x" * 36,
        "CIRCLE_ENTITY_SECRET=" + "0" * 64,
        "CIRCLE_ENTITY_SECRET=<your-entity-secret>",
        "password=changeme",
        "password=********",
        "api_key=dummy-api-key-for-tests",
        "token=fake-token-value",
        "DB_PASSWORD=${{ secrets.DB_PASSWORD }}",
    ],
)
def test_placeholders_are_not_findings(text: str) -> None:
    assert rules_found(text, ".env") == []


@pytest.mark.parametrize(
    ("text", "path"),
    [
        # wrong lengths and alphabets
        ("x = 'gsk_" + _s(_rng("g51"), ALNUM, 51) + "'", "a.py"),  # 51 characters
        ("x = 'gsk_" + _s(_rng("g54"), ALNUM, 54) + "'", "a.py"),  # 54: part of a longer token
        ("x = 'nvapi-" + _s(_rng("n63"), ALNUM, 63) + "'", "a.py"),  # 63
        ("KEY=sk-or-v1-" + "AB3F" * 16, "a.py"),  # upper-case hex
        ("KEY=TEST_API_KEY:" + "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d" + ":" + "9f8e7d6c5b4a3928" * 2, "a.py"),  # 31 hex
        ("key = 'AKIA" + "Q3R7T2X9Z4W6Y8V" + "'", "a.py"),  # 15 after the prefix
        ("blob = 'XAKIA" + "Q3R7T2X9Z4W6Y8V5" + "'", "a.py"),  # inside a longer token
        ("t = 'ghp_" + "Ab3Xy9Qz" * 4 + "Ab3'", "a.py"),  # 35
        ("t = 'ghx_" + "Ab3Xy9Qz" * 4 + "Ab3X'", "a.py"),  # no such GitHub prefix
        ("t = 'github_pat_" + "Ab3Xy9Qz" * 10 + "A'", "a.py"),  # 81
        ("pk = 'pk_live_" + "Ab3Xy9Qz" * 3 + "'", "a.py"),  # Stripe publishable: public
        # hashes, ids and addresses under names that look close
        ("sha256 = '" + "9e1f" * 16 + "'", "a.py"),
        ("entity_secret_ciphertext = 'Qk1hY2hpbmVzIGFyZSBnb29kIGF0IHJhbmRvbW5lc3M='", "a.py"),
        ("password_sha256 = '" + "3c7a" * 16 + "'", "a.py"),
        ("api_key_hash: " + "c0ffee42" * 8, "c.yaml"),
        ("token_address = '0x036CbD53842c5426634e7929541eC2318f3dCF7e'", "a.py"),
        ("request_id = '3f2b8c1e-9d4a-4e6f-8b7c-2a1d0e9f8c7b'", "a.py"),
        ("rev: 4f8a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a", ".pre-commit-config.yaml"),
        ('"integrity": "sha512-' + "q1W2e3R4t5Y6u7I8o9P0aSdFgHjKlZxCvBnM" * 2 + '=="', "package-lock.json"),
        # code that is not a literal secret
        ('api_key = os.environ["OPENAI_API_KEY"]', "a.py"),
        ("api_key = get_api_key(settings)", "a.py"),
        ("const token = process.env.GITHUB_TOKEN;", "a.js"),
        ("max_tokens = 4096", "a.py"),
        ('tokenizer = "cl100k_base"', "a.py"),
        ('secret_name = "prod/db/password"', "a.py"),
        ('token_url = "https://auth.example.com/oauth/token"', "a.py"),
        ('if password == "Xk9#mP2vL7qR4zW":', "a.py"),
        ('password = "password123"', "a.py"),
        ('api_key = "test-api-key"', "a.py"),
        ('ssh_key_path = "/home/me/.ssh/id_ed25519"', "a.py"),
        ("password: '{{ .Values.db.password }}'", "values.yaml"),
        ("password: !secret db_password", "secrets.yaml"),
        ("PUBLIC_KEY=Ab3dE5gH7jK9mN1pQ3sT5vX7zA9cEe2", ".env"),
        ('assert scripts == ["01_token_allocation.py", "02_spawn_subagents.py"]', "a.py"),
        ('files = {"token.txt": "k9Xq2Lm4Vb7Nc1Zr8Tw5Ys3Pa6Dh0Fj"}', "a.py"),
        ('OR_API_KEY = "sk-or-v1-" + random_hex(64)', "a.py"),
        ('GROQ_API_KEY = "gsk_" + part_one + part_two', "a.py"),
        ('api_key: "{api_key}"', "template.yaml"),
        ('password = "{db.password}x9Q"', "a.py"),
        ("CACHE_KEY=Ab3dE5gH7jK9mN1pQ3sT5vX7zA9cEe2", ".env"),
    ],
)
def test_near_misses_are_not_findings(text: str, path: str) -> None:
    assert rules_found(text, path) == []


def test_private_key_blocks() -> None:
    rng = _rng("pem")
    for label in ("RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY", "ENCRYPTED PRIVATE KEY"):
        block = pem(rng, label)
        (f,) = scan_text("key:\n" + block + "\n", "id")
        assert f.rule_id == "private-key" and f.line == 2 and f.end_line == 2 + block.count("\n")
        assert f.preview.startswith(f"-----BEGIN {label}-----…(")
    # escaped inside JSON (service-account files): one line, same fingerprint as the PEM file
    block = pem(rng)
    as_json = json.dumps({"type": "service_account", "private_key": block + "\n"})
    (in_json,) = scan_text(as_json, "sa.json")
    (in_pem,) = scan_text(block, "key.pem")
    assert in_json.fingerprint == in_pem.fingerprint and in_json.line == 1
    # a BEGIN without END (a truncated hunk) is still a key
    head = "\n".join(block.split("\n")[:5])
    assert rules_found(head, "x") == ["private-key"]


@pytest.mark.parametrize(
    "text",
    [
        "-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----",
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC...\n-----END PRIVATE KEY-----",
        "-----BEGIN RSA PRIVATE KEY-----\n<your key here>\n-----END RSA PRIVATE KEY-----",
        "-----BEGIN PRIVATE KEY-----\n" + "A" * 64 + "\n" + "A" * 64 + "\n-----END PRIVATE KEY-----",
    ],
)
def test_private_key_placeholders(text: str) -> None:
    assert rules_found(text, "README.md") == []


def test_public_key_block_is_not_a_finding() -> None:
    block = pem(_rng("pub"), "PUBLIC KEY")
    assert rules_found(block, "key.pub") == []


@pytest.mark.parametrize(
    ("template", "path"),
    [
        ("DB_PASSWORD={v}", ".env"),
        ("export API_TOKEN='{v}'", ".env"),
        ('  "client_secret": "{v}",', "config.json"),
        ("  password: {v}", "config.yaml"),
        ('  api_key: "{v}"', "config.yml"),
        ('    "db_password = \\"{v}\\"\\n",', "nb.ipynb"),
        ('const apiKey = "{v}";', "app.js"),
        ("  secretKey: '{v}',", "app.ts"),
        ("export const AUTH_TOKEN = `{v}`;", "app.ts"),
        ('api_key: str = "{v}"', "settings.py"),
        ('os.environ["SERVICE_TOKEN"] = "{v}"', "conf.py"),
        ('token = os.getenv("SERVICE_TOKEN", "{v}")', "conf.py"),
        ('headers = {{"Authorization": "Bearer {v}"}}', "client.py"),
        ('curl -H "Authorization: Bearer {v}" https://api.example.com', ".bash_history"),
        ("mycli login --token {v}", ".zsh_history"),
        ("mycli login --password={v}", ".bash_history"),
        ('accessToken := "{v}"', "main.go"),
        ("config[:api_key] => '{v}'", "app.rb"),
        ("<password>{v}</password>", "settings.xml"),
        ("MAPBOX_KEY={v}", ".env"),
    ],
)
def test_generic_secret_in_every_syntax(template: str, path: str) -> None:
    value = _s(_rng(template), ALNUM, 28)
    text = template.format(v=value)
    findings = scan_text(text, path)
    assert [f.rule_id for f in findings] == ["generic-secret"], text
    assert text[findings[0].column - 1:].startswith(value)


def test_generic_passwords_need_randomness() -> None:
    assert rules_found('password = "Xk9#mP2vL7qR"', "a.py") == ["generic-secret"]  # butler:allow (fixture)
    for word in ("correcthorsebatterystaple", "MyCompanyName", "my_database_password", "ProductionDatabase"):
        assert rules_found(f'password = "{word}"', "a.py") == [], word


def test_specific_rule_wins_over_generic() -> None:
    key = make_key("groq-api-key", _rng("groq"))
    assert rules_found(f"GROQ_API_KEY={key}") == ["groq-api-key"]
    entity = _s(_rng("entity"), HEX, 64)
    assert rules_found(f"CIRCLE_ENTITY_SECRET={entity}") == ["circle-entity-secret"]
    assert rules_found(f'entitySecret: "{entity}"', "c.yaml") == ["circle-entity-secret"]


def test_several_findings_in_order() -> None:
    rng = _rng("many")
    keys = [make_key(r, rng) for r in ("groq-api-key", "github-token", "openrouter-api-key")]
    text = "\n".join(f"K{i}={k}" for i, k in enumerate(keys))
    found = scan_text(text, "x.env")
    assert [f.line for f in found] == [1, 2, 3]
    assert [f.rule_id for f in found] == ["groq-api-key", "github-token", "openrouter-api-key"]


def test_preview_and_fingerprint_shape() -> None:
    key = make_key("groq-api-key", _rng("p"))
    (f,) = scan_text(f"K={key}", "x")
    assert f.preview == "gsk_…(56 chars)"
    assert len(f.fingerprint) == 32 and int(f.fingerprint, 16) >= 0
    assert preview("abcdefghijklmnopqrstuvwx", 0) == "abc…(24 chars)"
    assert preview("short123", 8) == "shor…(8 chars)"  # never more than half


def test_fingerprint_depends_on_rule_and_secret_only() -> None:
    key = make_key("github-token", _rng("fp"))
    a = scan_text(f"x = '{key}'", "a.py")[0]
    b = scan_text(f"\n\n  other: {key}\n", "b/c.yaml")[0]
    assert a.fingerprint == b.fingerprint == fingerprint("github-token", key)
    assert fingerprint("github-token", key) != fingerprint("groq-api-key", key)


def test_entropy_and_placeholder_helpers() -> None:
    assert shannon_entropy("") == 0.0
    assert shannon_entropy("aaaa") == 0.0
    assert shannon_entropy("abcd") == pytest.approx(2.0)
    assert is_placeholder("xxxxxxxxxxxx")
    assert is_placeholder("abcdefghij12")  # a run of 7+ consecutive characters
    assert is_placeholder("a1b2a1b2a1b2a1b2")  # periodic
    assert not is_placeholder(_s(_rng("r"), ALNUM, 40))


def test_empty_and_keywordless_text() -> None:
    assert scan_text("", "x") == []
    assert scan_text("nothing to see here\n" * 1000, "x") == []


def test_finding_model_is_frozen_and_strict() -> None:
    key = make_key("groq-api-key", _rng("m"))
    (f,) = scan_text(key, "x")
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error type is an implementation detail
        f.line = 3  # type: ignore[misc]
    with pytest.raises(Exception):  # noqa: B017
        Finding(**{**f.model_dump(), "secret": key})


@pytest.mark.parametrize(
    "text",
    [
        "api_key=" + "/a" * 50_000,
        "sk-proj-" * 20_000,
        "token " * 50_000,
        "-----BEGIN PRIVATE KEY-----\n" + ("QUJD" * 16 + "\n") * 4000,
        '"password": "' + "A1b2" * 40_000 + '"',
        "gsk_" + "a" * 200_000,
        "x = '" + "ab/" * 60_000 + "'",
    ],
)
def test_adversarial_inputs_finish_and_agree(text: str) -> None:
    first = scan_text(text, "a.env")
    assert first == scan_text(text, "a.env")
    assert redact_secrets(text) == redact_secrets(text)


def test_stand_in_words_count_only_in_one_case() -> None:
    # "none", "NONE", "None" mark a stand-in; "RnoNe" inside random mixed case is chance, not a word
    assert rules_found('api_key = "MVe7OhDmE60m5jPjRnoNeYHECRVfyTUE"', "a.py") == ["generic-secret"]  # butler:allow
    for word in ("none", "NONE", "None"):
        assert rules_found(f'api_key = "MVe7OhDmE60m5jP{word}YHECRVfyTUE"', "a.py") == [], word
