"""A labelled corpus for the credential scanner, synthesized from a fixed seed. No real key is in it.

Positives: random keys with the right shapes for every rule, written where keys really turn up (.env files,
JSON and YAML config, Python, JavaScript, shell history, Jupyter notebooks). Negatives that look close:
placeholders, environment references, UUIDs, git SHAs and content hashes, base64 images, package-lock
integrity strings, test fixtures, public keys and addresses. Every interesting line is labelled with its
kind (a Butler rule id for positives, a category for negatives); unlabelled lines are boilerplate.

    python benchmarks/scan_corpus.py OUT_DIR          # writes OUT_DIR/files/... and OUT_DIR/labels.json
    python benchmarks/scan_corpus.py OUT_DIR --tree MB  # also a large mixed tree for throughput

Labels: {"path": "files/...", "line": 12, "kind": "groq-api-key", "positive": true}.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import shutil
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SEED = 20251124
ALNUM = string.ascii_letters + string.digits
URLSAFE = ALNUM + "-_"
HEX = "0123456789abcdef"
B64 = ALNUM + "+/"
UPPER32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
PASSWORD_CHARS = ALNUM + "!@#%^&*-_=+?"


class Gen:
    """Random material from one seeded generator, so a corpus is the same on every machine."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def s(self, alphabet: str, n: int) -> str:
        return "".join(self.rng.choice(alphabet) for _ in range(n))

    def pick(self, items: list[str] | tuple[str, ...]) -> str:
        return self.rng.choice(items)

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def b64(self, nbytes: int) -> str:
        return base64.b64encode(self.rng.randbytes(nbytes)).decode()

    def password(self) -> str:
        while True:
            pw = self.s(PASSWORD_CHARS, self.rng.randint(14, 24))
            classes = (any(c.islower() for c in pw) + any(c.isupper() for c in pw) + any(c.isdigit() for c in pw)
                       + any(not c.isalnum() for c in pw))
            if classes >= 3:
                return pw


# ---------------------------------------------------------------------------------------------------------
# Key shapes (public facts: prefixes and lengths from the providers' documentation).


def key_for(kind: str, g: Gen) -> str:
    if kind == "openai-project-key":
        return "sk-proj-" + g.s(URLSAFE, 74) + "T3BlbkFJ" + g.s(URLSAFE, 74)
    if kind == "openai-service-account-key":
        return "sk-svcacct-" + g.s(URLSAFE, 74) + "T3BlbkFJ" + g.s(URLSAFE, 74)
    if kind == "openai-admin-key":
        return "sk-admin-" + g.s(URLSAFE, 74) + "T3BlbkFJ" + g.s(URLSAFE, 74)
    if kind == "openai-legacy-key":
        return "sk-" + g.s(ALNUM, 20) + "T3BlbkFJ" + g.s(ALNUM, 20)
    if kind == "anthropic-api-key":
        return "sk-ant-api03-" + g.s(URLSAFE, 93) + "AA"
    if kind == "anthropic-admin-key":
        return "sk-ant-admin01-" + g.s(URLSAFE, 93) + "AA"
    if kind == "groq-api-key":
        return "gsk_" + g.s(ALNUM, 52)
    if kind == "nvidia-api-key":
        return "nvapi-" + g.s(URLSAFE, 64)
    if kind == "openrouter-api-key":
        return "sk-or-v1-" + g.s(HEX, 64)
    if kind == "circle-api-key":
        return g.pick(("TEST", "LIVE", "SAND")) + "_API_KEY:" + g.s(HEX, 32) + ":" + g.s(HEX, 32)
    if kind == "stripe-secret-key":
        prefix = g.pick(("sk_live_", "rk_live_", "sk_test_"))
        return prefix + (g.s(ALNUM, 99) if g.rng.random() < 0.7 else g.s(ALNUM, 24))
    if kind == "aws-access-key-id":
        return g.pick(("AKIA", "ASIA", "ABIA", "ACCA")) + g.s(UPPER32, 16)
    if kind == "github-token":
        return g.pick(("ghp_", "gho_", "ghu_", "ghs_", "ghr_")) + g.s(ALNUM, 36)
    if kind == "github-fine-grained-pat":
        return "github_pat_" + g.s(ALNUM, 22) + "_" + g.s(ALNUM, 59)
    if kind == "circle-entity-secret":
        return g.s(HEX, 64)
    if kind == "aws-secret-access-key":
        return g.s(ALNUM + "/+", 40)
    if kind == "generic-secret":
        return g.pick((
            g.s(HEX, 32), g.s(HEX, 40), g.s(HEX, 64), g.b64(24), g.b64(32), g.s(ALNUM, 32), g.s(URLSAFE, 43),
            g.password(), "xoxb-" + g.s("0123456789", 12) + "-" + g.s("0123456789", 13) + "-" + g.s(ALNUM, 24),
            "SG." + g.s(URLSAFE, 22) + "." + g.s(URLSAFE, 43),
        ))
    raise ValueError(kind)


TOKEN_KINDS = (
    "openai-project-key", "openai-service-account-key", "openai-admin-key", "openai-legacy-key",
    "anthropic-api-key", "anthropic-admin-key", "groq-api-key", "nvidia-api-key", "openrouter-api-key",
    "circle-api-key", "stripe-secret-key", "aws-access-key-id", "github-token", "github-fine-grained-pat",
)
ASSIGNMENT_KINDS = ("circle-entity-secret", "aws-secret-access-key", "generic-secret")
ALL_KINDS = (*TOKEN_KINDS, *ASSIGNMENT_KINDS, "private-key", "url-credentials", "generated-password")

ENV_NAMES = {
    "openai-project-key": ("OPENAI_API_KEY", "OPENAI_KEY"),
    "openai-service-account-key": ("OPENAI_API_KEY", "OPENAI_SERVICE_KEY"),
    "openai-admin-key": ("OPENAI_ADMIN_KEY",),
    "openai-legacy-key": ("OPENAI_API_KEY",),
    "anthropic-api-key": ("ANTHROPIC_API_KEY", "CLAUDE_KEY"),
    "anthropic-admin-key": ("ANTHROPIC_ADMIN_KEY",),
    "groq-api-key": ("GROQ_API_KEY",),
    "nvidia-api-key": ("NVIDIA_API_KEY", "NIM_API_KEY"),
    "openrouter-api-key": ("OPENROUTER_API_KEY", "OR_KEY"),
    "circle-api-key": ("CIRCLE_API_KEY",),
    "stripe-secret-key": ("STRIPE_SECRET_KEY", "STRIPE_API_KEY", "STRIPE_KEY"),
    "aws-access-key-id": ("AWS_ACCESS_KEY_ID",),
    "github-token": ("GITHUB_TOKEN", "GH_TOKEN"),
    "github-fine-grained-pat": ("GITHUB_PAT", "GITHUB_TOKEN"),
    "circle-entity-secret": ("CIRCLE_ENTITY_SECRET", "ENTITY_SECRET"),
    "aws-secret-access-key": ("AWS_SECRET_ACCESS_KEY",),
    "generic-secret": ("DB_PASSWORD", "API_SECRET", "SECRET_KEY", "JWT_SECRET", "SLACK_BOT_TOKEN",
                       "SENDGRID_API_KEY", "MAPBOX_KEY", "SESSION_SECRET", "AUTH_TOKEN", "CLIENT_SECRET",
                       "REDIS_PASSWORD", "WEBHOOK_SECRET", "ENCRYPTION_KEY"),
}
CODE_NAMES = {
    "circle-entity-secret": ("entity_secret", "entitySecret", "circle_entity_secret"),
    "aws-secret-access-key": ("aws_secret_access_key", "awsSecretAccessKey"),
    "generic-secret": ("password", "api_secret", "client_secret", "apiKey", "secretKey", "access_token",
                       "auth_token", "db_password", "webhookSecret", "signing_key", "api_key", "refreshToken"),
}
SDK = {
    "openai-project-key": "OpenAI", "openai-service-account-key": "OpenAI", "openai-admin-key": "OpenAI",
    "openai-legacy-key": "OpenAI", "anthropic-api-key": "Anthropic", "anthropic-admin-key": "Anthropic",
    "groq-api-key": "Groq", "nvidia-api-key": "OpenAI", "openrouter-api-key": "OpenAI",
}


def upper_snake(name: str) -> str:
    """apiKey -> API_KEY, awsSecretAccessKey -> AWS_SECRET_ACCESS_KEY."""
    out = []
    for i, c in enumerate(name):
        if c.isupper() and i and (name[i - 1].islower() or name[i - 1].isdigit()):
            out.append("_")
        out.append(c.upper())
    return "".join(out)


def env_name(kind: str, g: Gen) -> str:
    return g.pick(ENV_NAMES[kind])


def code_name(kind: str, g: Gen) -> str:
    if kind in CODE_NAMES:
        return g.pick(CODE_NAMES[kind])
    return g.pick(("api_key", "apiKey", "token", "key", "secret", "KEY"))


def private_key_lines(g: Gen) -> list[str]:
    label = g.pick(("RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY"))
    body = g.b64(g.pick((121, 228, 1190)))
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return [f"-----BEGIN {label}-----", *lines, f"-----END {label}-----"]


# ---------------------------------------------------------------------------------------------------------
# Negatives: close to the rules, not secrets.


def placeholder_for(kind: str, g: Gen) -> str:
    real = key_for(kind, g) if kind != "private-key" else ""
    prefix = {
        "openai-project-key": "sk-proj-", "openai-service-account-key": "sk-svcacct-", "openai-admin-key": "sk-admin-",
        "openai-legacy-key": "sk-", "anthropic-api-key": "sk-ant-api03-", "anthropic-admin-key": "sk-ant-admin01-",
        "groq-api-key": "gsk_", "nvidia-api-key": "nvapi-", "openrouter-api-key": "sk-or-v1-",
        "circle-api-key": "TEST_API_KEY:", "stripe-secret-key": "sk_live_", "aws-access-key-id": "AKIA",
        "github-token": "ghp_", "github-fine-grained-pat": "github_pat_",
    }.get(kind, "")
    rest = len(real) - len(prefix)
    options = [
        prefix + "...",
        prefix + "x" * rest,
        prefix + "X" * rest,
        prefix + ("your-key-here" * 20)[:rest] if rest > 0 else "your-key-here",
        prefix + ("0123456789abcdef" * 20)[:rest] if rest > 0 else "0123456789abcdef",
        prefix + "*" * 8,
        "<your-" + kind.split("-")[0] + "-key>",
        "${" + ENV_NAMES.get(kind, ("API_KEY",))[0] + "}",
        prefix + "xxxx",
        prefix + ("a" * rest),
        prefix + ("abc123" * 40)[:rest],
    ]
    if kind == "aws-access-key-id":
        options += ["AKIAIOSFODNN7EXAMPLE", "AKIA" + "EXAMPLEKEY00" + "ABCD"]
    if kind == "stripe-secret-key":
        options += ["sk_test_4eC39HqLyjWDarjtT1zdp7dc", "sk_test_" + "1234567890"]
    if kind == "circle-api-key":
        options += ["TEST_API_KEY:" + "0" * 32 + ":" + "0" * 32, "TEST_API_KEY:<key-id>:<key-secret>"]
    if kind in ("circle-entity-secret", "generic-secret", "aws-secret-access-key"):
        options = ["<your-entity-secret>", "${CIRCLE_ENTITY_SECRET}", "0" * 64, "changeme", "your-secret-here",
                   "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "REPLACE_ME", "********", "<secret>",
                   "test-secret-do-not-use", "dummy-password", "example_token_123"]
    return g.pick(options)


@dataclass
class Builder:
    """Lines of one file plus the labels of the lines that matter."""

    path: str
    lines: list[str] = field(default_factory=list)
    labels: list[tuple[int, str, bool]] = field(default_factory=list)

    def add(self, line: str, kind: str | None = None, positive: bool = False) -> None:
        self.lines.append(line)
        if kind is not None:
            self.labels.append((len(self.lines), kind, positive))

    def add_block(self, lines: list[str], kind: str, positive: bool) -> None:
        self.labels.append((len(self.lines) + 1, kind, positive))
        self.lines.extend(lines)


# Context renderers: one item → lines in that context's syntax. `value` is the secret or the decoy.

def render_env(name: str, value: str, g: Gen) -> str:
    style = g.rng.randint(0, 3)
    if style == 0:
        return f"{name}={value}"
    if style == 1:
        return f'{name}="{value}"'
    if style == 2:
        return f"export {name}={value}"
    return f"{name}='{value}'"


def render_yaml(name: str, value: str, g: Gen, indent: int = 2) -> str:
    style = g.rng.randint(0, 2)
    pad = " " * indent
    if style == 0:
        return f"{pad}{name}: {value}"
    if style == 1:
        return f'{pad}{name}: "{value}"'
    return f"{pad}- {name}={value}"


def render_python(kind: str, name: str, value: str, g: Gen) -> str:
    style = g.rng.randint(0, 4)
    if style == 0 and kind in SDK:
        return f'client = {SDK[kind]}(api_key="{value}")'
    if style == 1:
        return f'os.environ["{upper_snake(name)}"] = "{value}"'
    if style == 2:
        return f'{name} = "{value}"'
    if style == 3:
        return f"    {name}: str = '{value}'"
    return f'settings = {{"{name}": "{value}", "timeout": 30}}'


def render_js(kind: str, name: str, value: str, g: Gen) -> str:
    style = g.rng.randint(0, 3)
    if style == 0:
        return f'const {name} = "{value}";'
    if style == 1:
        return f"  {name}: '{value}',"
    if style == 2:
        return f"export const {upper_snake(name)} = `{value}`;"
    return f'const client = new {SDK.get(kind, "Client")}({{ {name}: "{value}" }});'


def render_history(kind: str, name: str, value: str, g: Gen) -> str:
    style = g.rng.randint(0, 3)
    if style == 0:
        return f"export {name}={value}"
    if style == 1 and kind in TOKEN_KINDS:
        return f'curl https://api.example.com/v1/models -H "Authorization: Bearer {value}"'
    if style == 2:
        return f"{name}={value} python run.py --model gpt-4o"
    return f"echo 'export {name}={value}' >> ~/.bashrc"


def render_nb_source(kind: str, name: str, value: str, g: Gen) -> str:
    return render_python(kind, name, value, g)


# ---------------------------------------------------------------------------------------------------------
# Files.

PY_BOILER = [
    "import os", "import json", "from pathlib import Path", "", "", "def main() -> None:",
    '    data = json.loads(Path("input.json").read_text())', '    print(len(data["items"]))', "",
    'if __name__ == "__main__":', "    main()",
]
JS_BOILER = [
    "import fetch from 'node-fetch';", "", "export async function list(base) {",
    "  const res = await fetch(`${base}/v1/models`);", "  return res.json();", "}",
]


def _negatives_common(g: Gen) -> list[tuple[str, str, str]]:
    """(category, name, value) decoys that fit any key=value context."""
    sha40 = g.s(HEX, 40)
    return [
        ("uuid", "request_id", g.uuid()),
        ("uuid", "idempotencyKey", g.uuid()),
        ("uuid", "session_id", g.uuid()),
        ("git-sha", "commit", sha40),
        ("git-sha", "GIT_SHA", g.s(HEX, 40)),
        ("hash", "sha256", g.s(HEX, 64)),
        ("hash", "checksum", "sha256:" + g.s(HEX, 64)),
        ("hash", "etag", g.s(HEX, 32)),
        ("hash", "content_md5", g.s(HEX, 32)),
        ("id", "trace_id", g.s(HEX, 32)),
        ("id", "completion_id", "chatcmpl-" + g.s(ALNUM, 29)),
        ("id", "request", "req_" + g.s(ALNUM, 24)),
        ("fixture", "password", g.pick(("password123", "hunter2", "changeme", "admin", "P@ssw0rd"))),
        ("fixture", "api_key", g.pick(("test-api-key", "dummy", "fake-key-for-tests", "sk-test", "your_api_key"))),
        ("fixture", "token", g.pick(("fake-token", "abc", "TOKEN", "test_token_123", "mock-token-value"))),
        ("fixture", "secret", g.pick(("my-secret", "not-a-real-secret", "s3cr3t", "supersecret"))),
        ("reference", "OPENAI_API_KEY", "${OPENAI_API_KEY}"),
        ("reference", "api_key", "$API_KEY"),
        ("reference", "password", "{{ .Values.db.password }}"),
        ("config", "max_tokens", str(g.pick(("4096", "8192", "128000")))),
        ("config", "tokenizer", g.pick(("cl100k_base", "o200k_base", "gpt2"))),
        ("config", "secret_name", "prod/db/" + g.pick(("password", "credentials"))),
        ("config", "token_url", "https://auth.example.com/oauth/token"),
        ("address", "token_address", "0x" + g.s(HEX + "ABCDEF", 40)),
        ("public-key", "stripe_publishable_key", "pk_live_" + g.s(ALNUM, 99)),
        ("public-key", "public_key", g.b64(32)),
        ("placeholder", "OPENAI_API_KEY", g.pick(("sk-...", "sk-xxxx", "<your-key>", "sk-proj-..."))),
        ("placeholder", "password", "********"),
        ("reference", "DB_PASSWORD", "${{ secrets.DB_PASSWORD }}"),
        ("config", "token_type", "Bearer"),
        ("config", "auth_token_ttl", str(g.rng.randint(60, 86400))),
        ("config", "secret_version", f"projects/{g.s('0123456789', 12)}/secrets/db/versions/latest"),
        ("hash", "password_sha256", g.s(HEX, 64)),
        ("hash", "api_key_hash", g.s(HEX, 64)),
        ("id", "api_key_id", "key_" + g.s(ALNUM, 16)),
        ("id", "cache_key", "user:" + g.s(HEX, 24)),
        ("id", "partition_key", g.s(HEX, 32)),
        ("id", "nonce", g.s(HEX, 32)),
        ("base64", "thumbnail", g.b64(96)),
    ]


def build_env(g: Gen, idx: int, positives: list[str]) -> Builder:
    b = Builder(f"files/env/project{idx}/.env")
    b.add("# local settings: do not commit")
    b.add("APP_ENV=development")
    b.add("PORT=8080")
    for kind in positives:
        b.add(render_env(env_name(kind, g), key_for(kind, g), g), kind, True)
        b.add(render_env(env_name(kind, g), placeholder_for(kind, g), g), "placeholder")
    for cat, name, value in g.rng.sample(_negatives_common(g), 6):
        b.add(render_env(upper_snake(name), value, g), cat)
    b.add("LOG_LEVEL=debug")
    return b


def build_json(g: Gen, idx: int, positives: list[str]) -> Builder:
    b = Builder(f"files/json/service{idx}/config.json")
    b.add("{")
    b.add(f'  "name": "service-{idx}",')
    b.add(f'  "version": "1.{idx}.0",')
    entries: list[tuple[str, str, str | None, bool]] = []
    for kind in positives:
        entries.append((code_name(kind, g), key_for(kind, g), kind, True))
        entries.append((code_name(kind, g), placeholder_for(kind, g), "placeholder", False))
    for cat, name, value in g.rng.sample(_negatives_common(g), 6):
        entries.append((name, value, cat, False))
    icon = "data:image/png;base64," + g.b64(g.rng.randint(600, 3000))
    entries.append(("icon", icon, "base64-image", False))
    g.rng.shuffle(entries)
    for name, value, kind, pos in entries:
        b.add(f"  {json.dumps(name)}: {json.dumps(value)},", kind, pos)
    b.add('  "debug": false')
    b.add("}")
    return b


def build_service_account(g: Gen, idx: int) -> Builder:
    b = Builder(f"files/json/gcp{idx}/service-account.json")
    pk = "\n".join(private_key_lines(g)) + "\n"
    b.add("{")
    b.add('  "type": "service_account",')
    b.add(f'  "project_id": "demo-{idx}",')
    b.add(f'  "private_key_id": "{g.s(HEX, 40)}",', "id")
    b.add(f'  "private_key": {json.dumps(pk)},', "private-key", True)
    b.add(f'  "client_email": "svc@demo-{idx}.iam.gserviceaccount.com",')
    b.add(f'  "client_id": "{g.s("0123456789", 21)}"')
    b.add("}")
    return b


def build_yaml(g: Gen, idx: int, positives: list[str]) -> Builder:
    b = Builder(f"files/yaml/deploy{idx}/{g.pick(('values.yaml', 'docker-compose.yml', 'config.yml'))}")
    b.add("version: '3.9'")
    b.add("services:")
    b.add("  api:")
    b.add(f"    image: ghcr.io/example/api@sha256:{g.s(HEX, 64)}", "hash")
    b.add("    environment:")
    for kind in positives:
        b.add(render_yaml(env_name(kind, g), key_for(kind, g), g, 6), kind, True)
        b.add(render_yaml(env_name(kind, g), placeholder_for(kind, g), g, 6), "placeholder")
    for cat, name, value in g.rng.sample(_negatives_common(g), 6):
        b.add(f"      {name}: {value}", cat)
    b.add("repos:")
    b.add("  - repo: https://github.com/astral-sh/ruff-pre-commit")
    b.add(f"    rev: {g.s(HEX, 40)}", "git-sha")
    return b


def build_python(g: Gen, idx: int, positives: list[str]) -> Builder:
    b = Builder(f"files/python/pkg{idx}/{g.pick(('settings.py', 'client.py', 'test_api.py', 'conftest.py'))}")
    for line in PY_BOILER[:3]:
        b.add(line)
    b.add("")
    for kind in positives:
        b.add(render_python(kind, code_name(kind, g), key_for(kind, g), g), kind, True)
        b.add(f'{code_name(kind, g)} = os.environ.get("{env_name(kind, g)}", "")', "reference")
        b.add(f'{code_name(kind, g)} = "{placeholder_for(kind, g)}"', "placeholder")
    for cat, name, value in g.rng.sample(_negatives_common(g), 6):
        b.add(f'{name} = "{value}"', cat)
    b.add('api_key = os.getenv("OPENAI_API_KEY")', "reference")
    b.add("token = request.headers['Authorization']", "reference")
    for line in PY_BOILER[3:]:
        b.add(line)
    return b


def build_js(g: Gen, idx: int, positives: list[str]) -> Builder:
    b = Builder(f"files/js/app{idx}/{g.pick(('config.js', 'index.ts', 'api.mjs', 'client.test.js'))}")
    for line in JS_BOILER[:2]:
        b.add(line)
    for kind in positives:
        b.add(render_js(kind, code_name(kind, g), key_for(kind, g), g), kind, True)
        b.add(f"const {code_name(kind, g)} = process.env.{env_name(kind, g)};", "reference")
        b.add(f"const {code_name(kind, g)} = '{placeholder_for(kind, g)}';", "placeholder")
    for cat, name, value in g.rng.sample(_negatives_common(g), 6):
        b.add(f"  {name}: '{value}',", cat)
    b.add(f"const logo = 'data:image/png;base64,{g.b64(g.rng.randint(600, 3000))}';", "base64-image")
    for line in JS_BOILER[2:]:
        b.add(line)
    return b


def build_history(g: Gen, idx: int, positives: list[str]) -> Builder:
    b = Builder(f"files/home/user{idx}/{g.pick(('.bash_history', '.zsh_history'))}")
    b.add("ls -la")
    b.add("git status")
    for kind in positives:
        b.add(render_history(kind, env_name(kind, g), key_for(kind, g), g), kind, True)
        b.add(f"export {env_name(kind, g)}={placeholder_for(kind, g)}", "placeholder")
        b.add(f"git checkout {g.s(HEX, 40)}", "git-sha")
    b.add(f"docker pull python@sha256:{g.s(HEX, 64)}", "hash")
    b.add(f"curl -H 'X-Request-Id: {g.uuid()}' https://api.example.com/health", "uuid")
    b.add("pytest -q")
    return b


def build_notebook(g: Gen, idx: int, positives: list[str]) -> Builder:
    b = Builder(f"files/notebooks/nb{idx}/analysis.ipynb")
    b.add("{")
    b.add(' "cells": [')
    b.add("  {")
    b.add('   "cell_type": "code",')
    b.add('   "execution_count": 1,')
    b.add('   "metadata": {},')
    b.add('   "outputs": [],')
    b.add('   "source": [')
    b.add('    "import os\\n",')
    for kind in positives:
        src = render_nb_source(kind, code_name(kind, g), key_for(kind, g), g) + "\n"
        b.add(f"    {json.dumps(src)},", kind, True)
        ph = f'{code_name(kind, g)} = "{placeholder_for(kind, g)}"\n'
        b.add(f"    {json.dumps(ph)},", "placeholder")
    b.add(f'    {json.dumps("request_id = " + repr(g.uuid()) + chr(10))},', "uuid")
    b.add('    "print(\\"ok\\")"')
    b.add("   ]")
    b.add("  },")
    b.add("  {")
    b.add('   "cell_type": "code",')
    b.add('   "execution_count": 2,')
    b.add('   "metadata": {},')
    b.add('   "outputs": [')
    b.add("    {")
    b.add('     "data": {')
    b.add(f'      "image/png": "{g.b64(g.rng.randint(1500, 4000))}",', "base64-image")
    b.add('      "text/plain": ["<Figure size 640x480>"]')
    b.add("     },")
    b.add('     "metadata": {},')
    b.add('     "output_type": "display_data"')
    b.add("    }")
    b.add("   ],")
    b.add('   "source": ["plt.plot(xs, ys)"]')
    b.add("  }")
    b.add(" ],")
    b.add(' "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},')
    b.add(' "nbformat": 4,')
    b.add(' "nbformat_minor": 5')
    b.add("}")
    return b


def build_pem(g: Gen, idx: int) -> Builder:
    b = Builder(f"files/keys/host{idx}/{g.pick(('id_rsa', 'server.key', 'deploy_key.pem'))}")
    b.add_block(private_key_lines(g), "private-key", True)
    return b


def build_pem_decoys(g: Gen, idx: int) -> Builder:
    b = Builder(f"files/docs/keys{idx}.md")
    b.add("# Configuring TLS")
    b.add("")
    b.add("Put your key in `server.key`; it looks like this:")
    b.add("```")
    b.add_block(["-----BEGIN PRIVATE KEY-----", "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC...", "...",
                 "-----END PRIVATE KEY-----"], "placeholder", False)
    b.add("```")
    b.add("The public half:")
    b.add("```")
    pub = g.b64(270)
    b.add_block(["-----BEGIN PUBLIC KEY-----", *[pub[i:i + 64] for i in range(0, len(pub), 64)],
                 "-----END PUBLIC KEY-----"], "public-key", False)
    b.add("```")
    b.add(f"Verify with `ssh-keygen -lf` — fingerprint SHA256:{g.b64(32).rstrip('=')}", "hash")
    return b


def build_lockfile(g: Gen, idx: int, packages: int = 60) -> Builder:
    b = Builder(f"files/js/app{idx}/package-lock.json")
    b.add("{")
    b.add(f'  "name": "app{idx}",')
    b.add('  "lockfileVersion": 3,')
    b.add('  "packages": {')
    for p in range(packages):
        name = "".join(g.rng.choice(string.ascii_lowercase) for _ in range(g.rng.randint(3, 10)))
        b.add(f'    "node_modules/{name}": {{')
        b.add(f'      "version": "{g.rng.randint(0, 9)}.{g.rng.randint(0, 20)}.{g.rng.randint(0, 30)}",')
        b.add(f'      "resolved": "https://registry.npmjs.org/{name}/-/{name}-1.0.0.tgz",')
        b.add(f'      "integrity": "sha512-{g.b64(64)}"', "integrity")
        b.add("    }," if p < packages - 1 else "    }")
    b.add("  }")
    b.add("}")
    return b


def generate(out: Path, seed: int = SEED, per_kind: int = 48) -> list[dict[str, object]]:
    """Write the corpus under out/files and out/labels.json; returns the labels."""
    g = Gen(seed)
    if out.exists():
        shutil.rmtree(out)
    builders: list[Builder] = []
    contexts: list[Callable[[Gen, int, list[str]], Builder]] = [
        build_env, build_json, build_yaml, build_python, build_js, build_history, build_notebook,
    ]
    # Every kind appears per_kind times, spread over every context, two to four kinds per file.
    queue = [k for k in (*TOKEN_KINDS, *ASSIGNMENT_KINDS) for _ in range(per_kind)]
    g.rng.shuffle(queue)
    idx = 0
    while queue:
        take = min(len(queue), g.rng.randint(2, 4))
        batch, queue = queue[:take], queue[take:]
        builders.append(contexts[idx % len(contexts)](g, idx, batch))
        idx += 1
    for i in range(per_kind // 2):
        builders.append(build_pem(g, i))
        builders.append(build_service_account(g, i))
        builders.append(build_pem_decoys(g, i))
    for i in range(4):
        builders.append(build_lockfile(g, i))
    # Added after the rest (December 2026), so the files above are drawn exactly as before.
    for i in range(per_kind // 8):
        builders.append(build_url_credentials(g, i))
        builders.append(build_generated_passwords(g, i))
    labels: list[dict[str, object]] = []
    for b in builders:
        path = out / b.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(b.lines) + "\n", encoding="utf-8")
        labels.extend({"path": b.path, "line": n, "kind": kind, "positive": pos} for n, kind, pos in b.labels)
    (out / "labels.json").write_text(json.dumps(labels, indent=1), encoding="utf-8")
    return labels


# ---------------------------------------------------------------------------------------------------------
# Generated passwords (a real miss: their letter groups read as words) in URLs and under password names.

def keychain_password(g: Gen) -> str:
    """Safari / iCloud Keychain: three groups of six letters (syllables), one capital, one digit ending a group."""
    groups = [[g.pick("bcdfghjkmnpqrstvwxz" if i % 3 != 1 else "aeiouy") for i in range(6)] for _ in range(3)]
    digit = (g.rng.randrange(3), g.pick((0, 5)))
    capital = g.rng.choice([(a, b) for a in range(3) for b in range(6) if (a, b) != digit])
    groups[digit[0]][digit[1]] = g.pick(string.digits)
    groups[capital[0]][capital[1]] = groups[capital[0]][capital[1]].upper()
    return "-".join("".join(x) for x in groups)


def generated_password(g: Gen, passphrase: bool) -> str:
    style = g.rng.randrange(4 if passphrase else 3)
    if style == 0:
        return keychain_password(g)
    if style == 1:
        return g.s(ALNUM, 16)
    if style == 2:
        return g.password().replace("@", "").replace("#", "").replace("?", "")
    return "-".join(g.s(string.ascii_lowercase, 5) for _ in range(4))  # letter groups, every one a "word"


URL_PLACEHOLDERS = (
    "password", "changeme", "${DB_PASSWORD}", "<password>", "%(password)s", "********", "mysecretpassword",
    "P@ssw0rd", "DB_PASSWORD", "your-password-here", "guest", "s3cr3t", "minioadmin", "$POSTGRES_PASSWORD",
)


def build_url_credentials(g: Gen, idx: int) -> Builder:
    b = Builder(f"files/urls/svc{idx}/{g.pick(('.env', 'settings.py', 'compose.yml', 'deploy.sh'))}")
    schemes = ("postgres", "postgresql", "mysql+pymysql", "mongodb+srv", "amqp", "redis", "https")
    for _ in range(8):
        user = g.pick(("app", "admin", "svc_orders", "deploy", ""))
        host = g.pick(("db.internal", "10.0.3.7:5432", "rabbitmq", "cache:6379", "cluster0.a1b2c.mongodb.net"))
        for value, positive in ((generated_password(g, True), True), (g.pick(URL_PLACEHOLDERS), False)):
            url = f"{g.pick(schemes)}://{user or 'guest'}:{value}@{host}/app"
            line = g.pick((f"DATABASE_URL={url}", f'engine = create_engine("{url}")', f"    url: {url}"))
            b.add(line, "url-credentials" if positive else "placeholder", positive)
    return b


def build_generated_passwords(g: Gen, idx: int) -> Builder:
    form = g.rng.randrange(3)
    b = Builder(f"files/env/generated{idx}/{('.env', 'values.yaml', 'settings.py')[form]}")
    for _ in range(8):
        pw = generated_password(g, False)
        name = g.pick(("DB_PASSWORD", "REDIS_PASSWORD", "ADMIN_PASSWORD", "SMTP_PASSWORD"))
        b.add((f"{name}={pw}", f"{name.lower()}: {pw}", f'{name.lower()} = "{pw}"')[form], "generated-password", True)
    return b


# ---------------------------------------------------------------------------------------------------------
# A large mixed tree for throughput: ordinary project files with a rare key.

LOREM = [
    "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "while", "budget", "keeps", "every", "token",
    "accounted", "for", "and", "ledger", "settles", "usage", "after", "each", "call", "to", "provider",
]


def _py_module(g: Gen, n_funcs: int) -> str:
    out = ['"""Generated module."""', "", "from __future__ import annotations", "", "import os", ""]
    for i in range(n_funcs):
        words = [g.pick(LOREM) for _ in range(4)]
        out += [
            f"def {words[0]}_{words[1]}_{i}(items: list[dict], limit: int = {g.rng.randint(1, 999)}) -> int:",
            f'    """{" ".join(g.pick(LOREM) for _ in range(10))}."""',
            "    total = 0",
            "    for item in items:",
            f'        if item.get("{words[2]}") and total < limit:',
            f'            total += int(item["{words[3]}"])',
            f'    max_tokens = {g.rng.randint(100, 9000)}  # token budget',
            '    api_key = os.environ.get("SERVICE_API_KEY")',
            "    return total",
            "",
        ]
    return "\n".join(out) + "\n"


def _js_bundle(g: Gen, size: int) -> str:
    parts = []
    while sum(len(p) for p in parts) < size:
        fn, word, lit = g.s(string.ascii_letters, 6), g.pick(LOREM), g.s(ALNUM, 12)
        parts.append(f'function {fn}(a,b){{return a.{word}(b)+"{lit}"}};')
    return "".join(parts) + "\n"


def _json_data(g: Gen, rows: int) -> str:
    items = [{"id": g.uuid(), "name": " ".join(g.pick(LOREM) for _ in range(3)), "tokens": g.rng.randint(1, 5000),
              "sha": g.s(HEX, 40), "cost": round(g.rng.random(), 6)} for _ in range(rows)]
    return json.dumps({"items": items}, indent=2) + "\n"


def _markdown(g: Gen, paras: int) -> str:
    out = [f"# {' '.join(g.pick(LOREM) for _ in range(4)).title()}", ""]
    for _ in range(paras):
        out += [" ".join(g.pick(LOREM) for _ in range(60)), ""]
        if g.rng.random() < 0.2:
            out += ["```bash", "export OPENAI_API_KEY=sk-...", "butler scan --staged", "```", ""]
    return "\n".join(out) + "\n"


def _yaml_cfg(g: Gen, keys: int) -> str:
    out = ["config:"]
    for i in range(keys):
        out.append(f"  {g.pick(LOREM)}_{i}: {g.pick(('true', 'false', str(g.rng.randint(0, 9999)), g.pick(LOREM)))}")
    return "\n".join(out) + "\n"


def generate_tree(out: Path, megabytes: int, seed: int = SEED + 1) -> int:
    """A mixed project tree of about `megabytes` MB; returns its size in bytes."""
    g = Gen(seed)
    if out.exists():
        shutil.rmtree(out)
    target = megabytes * 1024 * 1024
    total = 0
    n = 0
    while total < target:
        kind = g.rng.random()
        d = out / f"pkg{n // 50:03d}"
        d.mkdir(parents=True, exist_ok=True)
        if kind < 0.40:
            name, text = f"mod{n}.py", _py_module(g, g.rng.randint(10, 120))
        elif kind < 0.55:
            name, text = f"bundle{n}.min.js", _js_bundle(g, g.rng.randint(20_000, 400_000))
        elif kind < 0.75:
            name, text = f"data{n}.json", _json_data(g, g.rng.randint(20, 400))
        elif kind < 0.90:
            name, text = f"README{n}.md", _markdown(g, g.rng.randint(5, 60))
        else:
            name, text = f"cfg{n}.yaml", _yaml_cfg(g, g.rng.randint(20, 300))
        if g.rng.random() < 0.02:  # a rare real-looking key, so the scanner does some work after the prefilter
            kind_k = g.pick(TOKEN_KINDS)
            text += f"\n# {env_name(kind_k, g)}={key_for(kind_k, g)}\n"
        data = text.encode()
        (d / name).write_bytes(data)
        total += len(data)
        n += 1
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--tree", type=int, metavar="MB", help="also write a mixed tree of about MB megabytes")
    args = parser.parse_args()
    labels = generate(args.out / "corpus", args.seed)
    pos = sum(1 for label in labels if label["positive"])
    print(f"corpus: {pos} positives, {len(labels) - pos} labelled negatives in {args.out / 'corpus'}")
    if args.tree:
        size = generate_tree(args.out / "tree", args.tree)
        print(f"tree: {size / 1e6:.1f} MB in {args.out / 'tree'}")


if __name__ == "__main__":
    main()
