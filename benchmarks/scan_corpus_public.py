"""A second labelled corpus, written from other people's published descriptions of each credential, not from
Butler's rules. Kept apart from benchmarks/scan_corpus.py (the corpus the rules were written with): nothing here
imports Butler or that module, and the shapes and contexts below were taken from the sources named beside them.

Sources (formats are facts; no code was copied):
  - vendors' documentation: AWS IAM user guide and CLI reference (access key pairs, `aws configure set`, the
    credentials file, the IAM console's CSV download, STS JSON), GitHub's "About authentication" token prefixes,
    Stripe API keys, Slack token types and incoming webhooks, Telegram Bot API ("Authorizing your bot"),
    Discord developer docs (bot token, webhooks), Hugging Face user access tokens, Google Cloud API keys,
    OpenAI / Anthropic / Groq / NVIDIA / OpenRouter / xAI / Replicate / Perplexity / Circle API key pages,
    Google service-account JSON, Jupyter's nbformat, Ansible Vault, Kubernetes Secret manifests,
    docker-compose environment lists;
  - standards: RFC 3986 userinfo (`scheme://user:password@host`), RFC 7468 PEM, OpenSSH's key format;
  - other scanners' public rule descriptions and test cases (gitleaks' rule generators and sample secrets,
    Kingfisher and detect-secrets examples, Sonar's secrets rules): the contexts they test keys in
    (`telegram: <token>`, `<name>_api_token = "<secret>"`, `password = '...'` in many languages) and their
    false-positive cases (placeholders, env references, hashes, UUIDs, ids).

Every secret is random, made from a fixed seed at run time. Labels are per line:
{"path": "files/...", "line": 3, "kind": "telegram-bot-token", "positive": true}.

    python benchmarks/scan_corpus_public.py OUT_DIR
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
from pathlib import Path

SEED = 7_468_3986  # RFC 7468 and RFC 3986: just a number
LOWER = string.ascii_lowercase
UPPER = string.ascii_uppercase
DIGITS = string.digits
ALNUM = string.ascii_letters + DIGITS
B64URL = ALNUM + "-_"


class R:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def s(self, alphabet: str, n: int) -> str:
        return "".join(self.rng.choice(alphabet) for _ in range(n))

    def one(self, items: tuple[str, ...] | list[str]) -> str:
        return self.rng.choice(items)

    def password(self) -> str:
        """What password managers generate: 16-24 characters over letters, digits and symbols."""
        while True:
            pw = self.s(ALNUM + "!#%&*+-=?^_~", self.rng.randint(16, 24))
            if any(c in DIGITS for c in pw) and any(c in UPPER for c in pw) and any(c in LOWER for c in pw):
                return pw


# ---- the secrets, as each vendor describes them ----------------------------------------------------------

def snowflake(r: R) -> str:
    return str(r.rng.randint(10**17, 2 * 10**18))


SECRETS: dict[str, Callable[[R], str]] = {
    # AWS: 20-character access key id starting AKIA (long-term) / ASIA (temporary); 40-character secret.
    "aws-access-key-id": lambda r: r.one(("AKIA", "ASIA")) + r.s(UPPER + "234567", 16),
    "aws-secret-access-key": lambda r: r.s(ALNUM + "/+", 40),
    # GitHub: ghp_ (classic PAT), gho_ (OAuth), ghu_/ghs_ (app user/server), ghr_ (refresh); github_pat_ (fine).
    "github-token": lambda r: r.one(("ghp_", "gho_", "ghu_", "ghs_", "ghr_")) + r.s(ALNUM, 36),
    "github-fine-grained-pat": lambda r: "github_pat_" + r.s(ALNUM, 22) + "_" + r.s(ALNUM, 59),
    # Stripe: secret keys sk_live_/sk_test_, restricted rk_live_.
    "stripe-secret-key": lambda r: r.one(("sk_live_", "sk_test_", "rk_live_")) + r.s(ALNUM, r.rng.choice((24, 99))),
    # Slack: bot xoxb-, user xoxp-, app-level xapp-, incoming webhook URLs.
    "slack-token": lambda r: r.one((
        f"xoxb-{r.s(DIGITS, 11)}-{r.s(DIGITS, 13)}-{r.s(ALNUM, 24)}",
        f"xoxp-{r.s(DIGITS, 11)}-{r.s(DIGITS, 11)}-{r.s(DIGITS, 13)}-{r.s('0123456789abcdef', 32)}",
        f"xapp-1-A{r.s(UPPER + DIGITS, 10)}-{r.s(DIGITS, 13)}-{r.s('0123456789abcdef', 64)}",
        f"https://hooks.slack.com/services/T{r.s(UPPER + DIGITS, 8)}/B{r.s(UPPER + DIGITS, 8)}/{r.s(ALNUM, 24)}",
    )),
    # Telegram: "<bot id>:<35 characters>", e.g. the docs' 123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11.
    "telegram-bot-token": lambda r: f"{r.rng.randint(10**7, 10**10)}:A{r.s(B64URL, 34)}",
    # Discord: base64(user id) . 6 characters . 27 or 38 characters; webhook URLs.
    "discord-token": lambda r: r.one((
        base64.b64encode(snowflake(r).encode()).decode().rstrip("=") + "." + r.s(B64URL, 6) + "."
        + r.s(B64URL, r.rng.choice((27, 38))),
        f"https://discord.com/api/webhooks/{snowflake(r)}/{r.s(B64URL, 68)}",
    )),
    # Hugging Face: hf_ + 34 letters. Google: AIza + 35. xAI: xai- + 80. Replicate: r8_ + 37. Perplexity: pplx- + 48.
    "huggingface-token": lambda r: "hf_" + r.s(string.ascii_letters, 34),
    "google-api-key": lambda r: "AIza" + r.s(B64URL, 35),
    "xai-api-key": lambda r: "xai-" + r.s(ALNUM, 80),
    "replicate-api-token": lambda r: "r8_" + r.s(ALNUM, 37),
    "perplexity-api-key": lambda r: "pplx-" + r.s(ALNUM, 48),
    # LLM providers Butler manages keys for, as their key pages show them.
    "openai-project-key": lambda r: "sk-proj-" + r.s(B64URL, 156),
    "anthropic-api-key": lambda r: "sk-ant-api03-" + r.s(B64URL, 95),
    "groq-api-key": lambda r: "gsk_" + r.s(ALNUM, 52),
    "nvidia-api-key": lambda r: "nvapi-" + r.s(B64URL, 64),
    "openrouter-api-key": lambda r: "sk-or-v1-" + r.s("0123456789abcdef", 64),
    "circle-api-key": lambda r: "TEST_API_KEY:" + r.s("0123456789abcdef", 32) + ":" + r.s("0123456789abcdef", 32),
    # Passwords people and generators write.
    "password": lambda r: r.password(),
}


def pem_lines(r: R, label: str) -> list[str]:
    """RFC 7468: BEGIN line, base64 in 64-character lines, END line."""
    body = base64.b64encode(r.rng.randbytes(r.rng.choice((1190, 1218, 121)))).decode()
    return [f"-----BEGIN {label}-----", *[body[i:i + 64] for i in range(0, len(body), 64)], f"-----END {label}-----"]


# ---- files -----------------------------------------------------------------------------------------------

class File:
    def __init__(self, path: str) -> None:
        self.path = path
        self.lines: list[str] = []
        self.labels: list[dict[str, object]] = []

    def add(self, line: str, kind: str | None = None, positive: bool = True) -> None:
        self.lines.append(line)
        if kind is not None:
            self.labels.append({"path": f"files/{self.path}", "line": len(self.lines), "kind": kind,
                                "positive": positive})

    def extend(self, lines: list[str]) -> None:
        self.lines.extend(lines)


ENV = {"aws-access-key-id": "AWS_ACCESS_KEY_ID", "aws-secret-access-key": "AWS_SECRET_ACCESS_KEY",
       "github-token": "GITHUB_TOKEN", "github-fine-grained-pat": "GH_TOKEN", "stripe-secret-key": "STRIPE_API_KEY",
       "slack-token": "SLACK_TOKEN", "telegram-bot-token": "TELEGRAM_TOKEN", "discord-token": "DISCORD_TOKEN",
       "huggingface-token": "HF_TOKEN", "google-api-key": "GOOGLE_API_KEY", "xai-api-key": "XAI_API_KEY",
       "replicate-api-token": "REPLICATE_API_TOKEN", "perplexity-api-key": "PPLX_API_KEY",
       "openai-project-key": "OPENAI_API_KEY", "anthropic-api-key": "ANTHROPIC_API_KEY",
       "groq-api-key": "GROQ_API_KEY", "nvidia-api-key": "NVIDIA_API_KEY", "openrouter-api-key": "OPENROUTER_API_KEY",
       "circle-api-key": "CIRCLE_API_KEY", "password": "DB_PASSWORD"}
TOKEN_KINDS = [k for k in SECRETS if k not in ("aws-secret-access-key", "password")]
# Contexts a key is pasted into, as other scanners' tests and the vendors' quick-starts write them.
NEUTRAL_CONTEXTS: tuple[Callable[[str, str], str], ...] = (
    lambda n, v: f"{n}={v}",
    lambda n, v: f'export {n}="{v}"',
    lambda n, v: f"    {n.lower()}: {v}",
    lambda n, v: f'  "{n.lower()}": "{v}",',
    lambda n, v: f'{n.lower()} = "{v}"',
    lambda n, v: f"client = Client(token='{v}')",
    lambda n, v: f"curl -H \"Authorization: Bearer {v}\" https://api.example.test/v1/models",
    lambda n, v: f"      - {n}={v}",
    lambda n, v: f"const key = '{v}';",
    lambda n, v: f"# the key: {v}",
    lambda n, v: f"{n.split('_')[0].lower()}: {v}",
)


def token_files(r: R, per_kind: int) -> list[File]:
    files = []
    for kind in TOKEN_KINDS:
        f = File(f"tokens/{kind}.txt")
        for _ in range(per_kind):
            ctx = r.rng.choice(NEUTRAL_CONTEXTS)
            f.add(ctx(ENV[kind], SECRETS[kind](r)), kind)
            f.add("")
        files.append(f)
    return files


def url_file(r: R, n: int) -> File:
    """RFC 3986 userinfo in connection strings, as database and broker docs write them."""
    f = File("config/urls.env")
    schemes = ("postgres", "postgresql", "mysql", "mongodb+srv", "amqp", "redis", "https", "ftp", "mssql+pyodbc")
    for i in range(n):
        user = r.one(("app", "admin", "svc_orders", "deploy", "root", ""))
        pw = r.password().replace("@", "").replace("/", "").replace("#", "").replace("?", "").replace(":", "")
        host = r.one(("db.internal", "cluster0.a1b2c.mongodb.net", "10.0.3.7:5432", "rabbitmq", "cache:6379"))
        line = r.one((
            f"DATABASE_URL={r.one(schemes)}://{user}:{pw}@{host}/app{i}",
            f'engine = create_engine("{r.one(schemes)}://{user}:{pw}@{host}/db")',
            f"  url: {r.one(schemes)}://{user}:{pw}@{host}",
            f"git remote add origin https://{user or 'bot'}:{pw}@git.example.test/team/repo.git",
        ))
        f.add(line, "url-password")
    return f


def aws_files(r: R, n: int) -> list[File]:
    out = []
    for i in range(n):
        kid, sec = SECRETS["aws-access-key-id"](r), SECRETS["aws-secret-access-key"](r)
        form = i % 6
        if form == 0:  # ~/.aws/credentials
            f = File(f"aws/credentials{i}")
            f.add("[default]")
            f.add(f"aws_access_key_id = {kid}", "aws-access-key-id")
            f.add(f"aws_secret_access_key = {sec}", "aws-secret-access-key")
        elif form == 1:  # aws configure set (CLI reference)
            f = File(f"aws/setup{i}.sh")
            f.add(f"aws configure set aws_access_key_id {kid}", "aws-access-key-id")
            f.add(f"aws configure set aws_secret_access_key {sec} --profile ci", "aws-secret-access-key")
        elif form == 2:  # IAM console CSV download
            f = File(f"aws/accessKeys{i}.csv")
            f.add("Access key ID,Secret access key")
            f.add(f"{kid},{sec}", "aws-secret-access-key")
        elif form == 3:  # STS / create-access-key JSON
            f = File(f"aws/sts{i}.json")
            f.extend(["{", '  "Credentials": {'])
            f.add(f'    "AccessKeyId": "{kid}",', "aws-access-key-id")
            f.add(f'    "SecretAccessKey": "{sec}",', "aws-secret-access-key")
            f.extend(['    "Expiration": "2026-01-01T00:00:00Z"', "  }", "}"])
        elif form == 4:  # boto3 keyword arguments
            f = File(f"aws/client{i}.py")
            f.add("s3 = boto3.client(")
            f.add("    's3',")
            f.add(f"    aws_access_key_id='{kid}',", "aws-access-key-id")
            f.add(f"    aws_secret_access_key='{sec}',", "aws-secret-access-key")
            f.add(")")
        else:  # Terraform provider block
            f = File(f"aws/main{i}.tf")
            f.add('provider "aws" {')
            f.add(f'  access_key = "{kid}"', "aws-access-key-id")
            f.add(f'  secret_key = "{sec}"', "aws-secret-access-key")
            f.add("}")
        out.append(f)
    return out


def password_files(r: R, n: int) -> list[File]:
    """Secret-named values in the forms detect-secrets' and gitleaks' keyword tests use, plus YAML blocks."""
    f = File("app/settings_mixed.py")
    y = File("deploy/values.yaml")
    for i in range(n):
        pw = r.password().replace("'", "").replace('"', "").replace("\\", "")
        f.add(r.one((
            f'PASSWORD = "{pw}"', f"db_password = '{pw}'", f'conn = connect(host="db", password="{pw}")',
            f'os.environ["DB_PASSWORD"] = "{pw}"', f'api_secret: str = "{pw}"', f'self.client_secret = "{pw}"',
        )), "password")
        y.add(f"svc{i}:")
        if i % 2:
            y.add("  password: |")
            y.add(f"    {pw}", "password")
        else:
            y.add(f"  client_secret: '{pw}'", "password")
    k8s = File("deploy/secret.yaml")
    k8s.extend(["apiVersion: v1", "kind: Secret", "metadata:", "  name: app", "stringData:"])
    for _ in range(n // 4):
        k8s.add(f"  DB_PASSWORD: {r.password()}", "password")
    return [f, y, k8s]


def key_files(r: R, n: int) -> list[File]:
    """Private keys: PEM files, service-account JSON, notebooks, escaped and triple-quoted in code."""
    out = []
    labels = ("RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY")
    for i in range(n):
        lines = pem_lines(r, labels[i % len(labels)])
        form = i % 5
        if form == 0:
            f = File(f"keys/id_{i}.pem")
            f.add(lines[0], "private-key")
            f.extend(lines[1:])
        elif form == 1:
            f = File(f"keys/sa-{i}.json")
            doc = {"type": "service_account", "project_id": f"proj-{i}", "private_key_id": r.s("0123456789abcdef", 40),
                   "private_key": "\n".join(lines) + "\n", "client_email": f"svc@proj-{i}.iam.gserviceaccount.com"}
            text = json.dumps(doc, indent=2).split("\n")
            for ln in text:
                f.add(ln, "private-key" if '"private_key"' in ln else None)
        elif form == 2:
            f = File(f"keys/notebook{i}.ipynb")
            src = ["key = \"\"\"" + lines[0] + "\n", *[ln + "\n" for ln in lines[1:-1]], lines[-1] + "\"\"\"\n"]
            nb = {"cells": [{"cell_type": "code", "execution_count": 1, "metadata": {}, "outputs": [],
                             "source": src}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
            for ln in json.dumps(nb, indent=1).split("\n"):
                f.add(ln, "private-key" if "BEGIN" in ln else None)
        elif form == 3:
            f = File(f"keys/signer{i}.py")
            f.add('SIGNING_KEY = "' + "\\n".join(lines) + '\\n"', "private-key")
        else:
            f = File(f"keys/deploy{i}.yaml")
            f.add("tls:")
            f.add("  key: |")
            f.add("    " + lines[0], "private-key")
            f.extend(["    " + ln for ln in lines[1:]])
        out.append(f)
    return out


def negative_file(r: R, n: int) -> File:
    """False-positive cases other scanners test against, and what real trees are full of."""
    f = File("negatives/mixed.txt")
    cases: tuple[Callable[[], str], ...] = (
        lambda: "OPENAI_API_KEY=sk-...",
        lambda: "SLACK_BOT_TOKEN=xoxb-your-bot-token",
        lambda: "HF_TOKEN=hf_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        lambda: 'password = os.environ["DB_PASSWORD"]',
        lambda: "api_key: ${{ secrets.API_KEY }}",
        lambda: "token = get_token(user)",
        lambda: "DATABASE_URL=postgres://user:password@localhost:5432/app",
        lambda: "DATABASE_URL=postgres://${DB_USER}:${DB_PASS}@db:5432/app",
        lambda: "mongodb://<username>:<password>@cluster0.example.mongodb.net",
        lambda: "see https://user@example.test/path and http://localhost:8080/x",
        lambda: f'"ClientRequestToken": "{uuid.UUID(int=r.rng.getrandbits(128), version=4)}",',
        lambda: f'"input_cost_per_token": {r.rng.randint(1, 99) / 10}e-0{r.rng.randint(5, 7)},',
        lambda: f'checksum_sha256 = "{r.s("0123456789abcdef", 64)}"',
        lambda: f'"integrity": "sha512-{base64.b64encode(r.rng.randbytes(64)).decode()}"',
        lambda: 'PASSWORD_FIELD_KEY = "_passwordField"',
        lambda: '"output_token": "Reservations[-1].NextToken",',
        lambda: 'password: !vault |\n          $ANSIBLE_VAULT;1.1;AES256',
        lambda: 'msgid "Password"\nmsgstr "Mot de passe"',
        lambda: f"commit {r.s('0123456789abcdef', 40)}",
        lambda: "aws_secret_access_key = YOUR_SECRET_ACCESS_KEY",
        lambda: "-----BEGIN PUBLIC KEY-----",
        lambda: 'token_url = "https://oauth2.example.test/token"',
        lambda: 'password = input("Password: ")',
        lambda: f"user_id: {r.rng.randint(10**17, 10**18)}",
    )
    for _ in range(n):
        text = r.rng.choice(cases)()
        for k, ln in enumerate(text.split("\n")):
            f.add(ln, "negative" if k == 0 else None, positive=False)
    return f


def generate(out: Path, seed: int = SEED, per_kind: int = 40) -> list[dict[str, object]]:
    """Write OUT/files/... and OUT/labels.json; return the labels."""
    r = R(seed)
    if out.exists():
        shutil.rmtree(out)
    files = [*token_files(r, per_kind), url_file(r, per_kind * 2), *aws_files(r, per_kind),
             *password_files(r, per_kind), *key_files(r, per_kind), negative_file(r, per_kind * 10)]
    labels: list[dict[str, object]] = []
    for f in files:
        path = out / "files" / f.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(f.lines) + "\n", encoding="utf-8")
        labels.extend(f.labels)
    (out / "labels.json").write_text(json.dumps(labels, indent=1), encoding="utf-8")
    return labels


ALL_KINDS = (*TOKEN_KINDS, "url-password", "aws-secret-access-key", "password", "private-key")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    labels = generate(args.out, args.seed)
    print(f"{len(labels)} labelled lines in {args.out}")


if __name__ == "__main__":
    main()
