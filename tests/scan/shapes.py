"""Random keys with each rule's shape, made at run time from a seed: no key-shaped literal lives in the repo."""

from __future__ import annotations

import base64
import random
import string

from hypothesis import strategies as st

ALNUM = string.ascii_letters + string.digits
URLSAFE = ALNUM + "-_"
HEX = "0123456789abcdef"
UPPER32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def _s(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def make_key(rule_id: str, rng: random.Random) -> str:
    """A random value of the rule's shape (the secret only, not its assignment)."""
    makers = {
        "openai-project-key": lambda: "sk-proj-" + _s(rng, URLSAFE, 74) + "T3BlbkFJ" + _s(rng, URLSAFE, 74),
        "openai-service-account-key": lambda: "sk-svcacct-" + _s(rng, URLSAFE, 64),
        "openai-admin-key": lambda: "sk-admin-" + _s(rng, URLSAFE, 64),
        "openai-legacy-key": lambda: "sk-" + _s(rng, ALNUM, 20) + "T3BlbkFJ" + _s(rng, ALNUM, 20),
        "anthropic-api-key": lambda: "sk-ant-api03-" + _s(rng, URLSAFE, 93) + "AA",
        "anthropic-admin-key": lambda: "sk-ant-admin01-" + _s(rng, URLSAFE, 93) + "AA",
        "groq-api-key": lambda: "gsk_" + _s(rng, ALNUM, 52),
        "nvidia-api-key": lambda: "nvapi-" + _s(rng, URLSAFE, 64),
        "openrouter-api-key": lambda: "sk-or-v1-" + _s(rng, HEX, 64),
        "circle-api-key": lambda: rng.choice(("TEST", "LIVE", "SAND")) + "_API_KEY:" + _s(rng, HEX, 32) + ":"
        + _s(rng, HEX, 32),
        "stripe-secret-key": lambda: rng.choice(("sk_live_", "rk_live_", "sk_test_")) + _s(rng, ALNUM, 99),
        "aws-access-key-id": lambda: rng.choice(("AKIA", "ASIA", "ABIA", "ACCA")) + _s(rng, UPPER32, 16),
        "github-token": lambda: "gh" + rng.choice("pousr") + "_" + _s(rng, ALNUM, 36),
        "github-fine-grained-pat": lambda: "github_pat_" + _s(rng, ALNUM, 22) + "_" + _s(rng, ALNUM, 59),
        "huggingface-token": lambda: "hf_" + _s(rng, string.ascii_letters, 34),
        "google-api-key": lambda: "AIza" + _s(rng, URLSAFE, 35),
        "xai-api-key": lambda: "xai-" + _s(rng, ALNUM, 80),
        "replicate-api-token": lambda: "r8_" + _s(rng, ALNUM, 37),
        "perplexity-api-key": lambda: "pplx-" + _s(rng, ALNUM, 48),
        "slack-token": lambda: rng.choice((
            "xoxb-" + _s(rng, "0123456789", 12) + "-" + _s(rng, "0123456789", 13) + "-" + _s(rng, ALNUM, 24),
            "xoxp-" + _s(rng, "0123456789", 12) + "-" + _s(rng, "0123456789", 12) + "-"
            + _s(rng, "0123456789", 13) + "-" + _s(rng, HEX, 32),
        )),
        "telegram-bot-token": lambda: _s(rng, "123456789", 1) + _s(rng, "0123456789", rng.randint(5, 10)) + ":A"
        + _s(rng, URLSAFE, 34),
        "discord-token": lambda: base64.b64encode(
            (_s(rng, "123456789", 1) + _s(rng, "0123456789", 17)).encode()
        ).decode().rstrip("=") + "." + _s(rng, URLSAFE, 6) + "." + _s(rng, URLSAFE, 38),
        "url-credentials": lambda: _s(rng, ALNUM, 12) + rng.choice("!*-_~") + _s(rng, ALNUM, 6),
        "circle-entity-secret": lambda: _s(rng, HEX, 64),
        "aws-secret-access-key": lambda: _s(rng, ALNUM + "/+", 40),
        "generic-secret": lambda: _s(rng, ALNUM, 32),
        "private-key": lambda: pem(rng),
    }
    return makers[rule_id]()


def pem(rng: random.Random, label: str = "RSA PRIVATE KEY") -> str:
    body = base64.b64encode(rng.randbytes(600)).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----"])


# How each rule's secret is written in a file (assignment rules need their names).
def in_context(rule_id: str, secret: str) -> tuple[str, str]:
    """(text, path) with the secret placed the way it is usually written."""
    if rule_id == "circle-entity-secret":
        return f"CIRCLE_ENTITY_SECRET={secret}\n", ".env"
    if rule_id == "aws-secret-access-key":
        return f"[default]\naws_secret_access_key = {secret}\n", "credentials"
    if rule_id == "generic-secret":
        return f'DB_PASSWORD = "{secret}"\n', "settings.py"
    if rule_id == "private-key":
        return secret + "\n", "id_rsa"
    if rule_id == "url-credentials":
        return f"DATABASE_URL=postgres://app_user:{secret}@db.internal:5432/app\n", ".env"
    return f'API_KEY = "{secret}"\n', "config.py"


TOKEN_RULES = (
    "openai-project-key", "openai-service-account-key", "openai-admin-key", "openai-legacy-key",
    "anthropic-api-key", "anthropic-admin-key", "groq-api-key", "nvidia-api-key", "openrouter-api-key",
    "circle-api-key", "stripe-secret-key", "aws-access-key-id", "github-token", "github-fine-grained-pat",
    "huggingface-token", "google-api-key", "xai-api-key", "replicate-api-token", "perplexity-api-key",
    "slack-token", "telegram-bot-token", "discord-token",
)
ALL_RULES = (
    *TOKEN_RULES, "url-credentials", "circle-entity-secret", "aws-secret-access-key", "generic-secret", "private-key"
)


@st.composite
def rule_and_secret(draw: st.DrawFn) -> tuple[str, str]:
    rule_id = draw(st.sampled_from(ALL_RULES))
    seed = draw(st.integers(min_value=0, max_value=2**32 - 1))
    rng = random.Random(seed)
    key = make_key(rule_id, rng)
    # A random body can spell a stand-in word by chance (an AWS id holding FAKE, about once in 80,000 ids): the
    # rules treat those as placeholders on purpose, so draw again; the property is about keys that look random.
    while any(w in key or w.upper() in key for w in _STAND_IN_WORDS):
        key = make_key(rule_id, rng)
    return rule_id, key


_STAND_IN_WORDS = ("xxxx", "example", "placeholder", "dummy", "your", "redacted", "changeme", "sample", "insert",
                   "replace", "fake", "notreal", "here")
