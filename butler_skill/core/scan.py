"""Credential rules: find keys, tokens and private keys in text, without ever keeping the secret.

Pure: no I/O, no clock, no environment. Callers hand in text and a path (the path only chooses how strict
the generic rule is: in source code a secret must be a quoted literal, in config files it may be bare).

Each rule is a keyword prefilter (cheap substring test over the whole text), an anchored pattern, an
entropy floor over the part of the match that is random, and a placeholder check. Findings carry a
fingerprint (a truncated SHA-256 over rule id and secret) and a redacted preview (the format's public prefix
and the length), never the secret itself.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from itertools import pairwise
from typing import Literal
from urllib.parse import unquote

from pydantic import BaseModel, ConfigDict, Field

ALLOW_MARKER = "butler:allow"
ALLOW_NEXT_LINE_MARKER = "butler:allow-next-line"
FINGERPRINT_VERSION = "butler-scan/v1"
ELLIPSIS = "…"


class Confidence(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"


class Rule(BaseModel):
    """One credential shape.

    `kind` says how `pattern` is used: `token` rules search it anywhere (the key carries its own prefix);
    `assignment` rules apply it to the value assigned to a name that `name_pattern` accepts; `block` is the
    multi-line private-key rule.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(description="Stable rule id (SARIF ruleId, baseline entries).")
    description: str
    confidence: Confidence
    kind: Literal["token", "assignment", "block", "url", "discord", "anchored"]
    keywords: tuple[str, ...] = Field(description="Prefilter: the rule runs only if one of these occurs.")
    keywords_ignore_case: bool = False
    gate: str = Field(default="", description="Substring of every keyword, shared by several rules: tested once.")
    pattern: str = Field(description="Token/block rules: the shape searched for. Assignment rules: the value.")
    name_pattern: str | None = Field(default=None, description="Assignment rules: accepted (normalized) names.")
    name_deny: str | None = Field(default=None, description="Assignment rules: names that look close but are not.")
    entropy: float = Field(description="Floor in bits per character over the random part of the secret.")
    visible: int = Field(default=0, description="Leading characters that are format, not secret (previewed).")
    free_value: bool = Field(default=False, description="Value is free text: apply the stricter heuristics.")
    always: bool = Field(
        default=False,
        description="No fixed substring to prefilter on (Discord bot tokens): the pattern runs on every text. "
        "The keywords then only gate the log filter.",
    )
    env_key_names: bool = Field(
        default=False, description="Also accept UPPER_SNAKE names ending in _KEY (environment variables)."
    )


class Finding(BaseModel):
    """One credential found. Holds no key material: only a fingerprint and a redacted preview."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rule_id: str
    description: str
    confidence: Confidence
    path: str
    line: int = Field(ge=1, description="1-based line of the first character of the secret.")
    column: int = Field(ge=1, description="1-based column (Unicode code points).")
    end_line: int = Field(ge=1)
    end_column: int = Field(ge=1, description="1-based column just past the secret.")
    fingerprint: str = Field(description="sha256(rule id, secret) truncated to 32 hex; stable across runs.")
    preview: str = Field(description="Redacted: the format prefix, then the secret's length.")
    length: int = Field(ge=1, description="Length of the secret in characters.")
    commit: str | None = Field(default=None, description="History scans: the commit that added the line.")
    allowed: bool = Field(default=False, description="Suppressed by an inline butler:allow comment.")


# ---------------------------------------------------------------------------------------------------------
# The rules. Facts about key shapes come from the providers' documentation; see docs/scanner.md.

_GENERIC_NAMES = (
    r"(?:^|_)(?:secret|secrets|token|password|passwd|pwd|pass|passphrase|apikey|credential|credentials"
    r"|authorization|accesstoken|secretkey)(?:_|$)"
    r"|(?:^|_)auth$"
    r"|(?:^|_)(?:api|access|private|secret|auth|signing|encryption|master|client|app)_(?:key|secret)(?:_|$)"
)
_GENERIC_DENY = (
    r"(?:^|_)(?:max|min|num|page|next|prev|cursor|tokenizer|tokens|count|csrf|xsrf|public|pub)(?:_|$)"
    r"|_(?:url|uri|endpoint|path|file|filename|dir|type|length|len|size|name|names|field|label|id|ids|hash"
    r"|env|var|prefix|policy|ttl|expiry|expires|expiration|timeout|format|regex|pattern|version|mode"
    r"|enabled|required|param|header|lifetime|location|arn|ref|kind|provider|store|manager|rotation"
    r"|ciphertext|encrypted|limit|usage|budget|estimate|schema|key_id|keyid|fingerprint|digest|sha\d*|md5|crc\d*"
    r"|checksum|hashed|source|spec|used|last_used|changed|created|updated|at|date|time|count|marker|state|scope"
    r"|address|addr|account|contract|mint|decimals|symbol|balance|amount)$"
    # LLM token accounting and paging/idempotency tokens: numbers, opaque ids, not credentials.
    r"|(?:^|_)(?:per|cost|price|request|change|action|continuation|idempotency|pagination|resume|sync|cancel"
    r"|output|input|lifecycle|completion|prompt|reasoning|cached)_tokens?(?:_|$)"
)

RULES: tuple[Rule, ...] = (
    Rule(
        id="private-key", description="Private key block (PEM / OpenSSH)", confidence=Confidence.HIGH,
        kind="block", keywords=("PRIVATE KEY-----",),
        pattern=r"-----BEGIN[ A-Z0-9]{0,32}PRIVATE KEY(?: BLOCK)?-----",
        entropy=4.0,
    ),
    Rule(
        id="openai-project-key", description="OpenAI project API key (sk-proj-)", confidence=Confidence.HIGH,
        kind="token", keywords=("sk-proj-",), gate="sk-", pattern=r"sk-proj-[A-Za-z0-9_-]{40,250}(?![A-Za-z0-9_-])",
        entropy=3.5, visible=8,
    ),
    Rule(
        id="openai-service-account-key", description="OpenAI service-account key (sk-svcacct-)",
        confidence=Confidence.HIGH, kind="token", keywords=("sk-svcacct-",), gate="sk-",
        pattern=r"sk-svcacct-[A-Za-z0-9_-]{40,250}(?![A-Za-z0-9_-])", entropy=3.5, visible=11,
    ),
    Rule(
        id="openai-admin-key", description="OpenAI admin key (sk-admin-)", confidence=Confidence.HIGH,
        kind="token", keywords=("sk-admin-",), gate="sk-", pattern=r"sk-admin-[A-Za-z0-9_-]{40,250}(?![A-Za-z0-9_-])",
        entropy=3.5, visible=9,
    ),
    Rule(
        id="openai-legacy-key", description="OpenAI user API key (legacy sk-...T3BlbkFJ...)",
        confidence=Confidence.HIGH, kind="token", keywords=("T3BlbkFJ",),
        pattern=r"sk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}(?![A-Za-z0-9])", entropy=3.2, visible=3,
    ),
    Rule(
        id="anthropic-api-key", description="Anthropic API key (sk-ant-api03-)", confidence=Confidence.HIGH,
        kind="token", keywords=("sk-ant-api03-",), gate="sk-",
        pattern=r"sk-ant-api03-[A-Za-z0-9_-]{80,120}(?![A-Za-z0-9_-])", entropy=3.5, visible=13,
    ),
    Rule(
        id="anthropic-admin-key", description="Anthropic admin key (sk-ant-admin01-)",
        confidence=Confidence.HIGH, kind="token", keywords=("sk-ant-admin01-",), gate="sk-",
        pattern=r"sk-ant-admin01-[A-Za-z0-9_-]{80,120}(?![A-Za-z0-9_-])", entropy=3.5, visible=15,
    ),
    Rule(
        id="groq-api-key", description="Groq API key (gsk_)", confidence=Confidence.HIGH, kind="token",
        keywords=("gsk_",), pattern=r"gsk_[A-Za-z0-9]{52}(?![A-Za-z0-9])", entropy=3.5, visible=4,
    ),
    Rule(
        id="nvidia-api-key", description="NVIDIA NIM API key (nvapi-)", confidence=Confidence.HIGH,
        kind="token", keywords=("nvapi-",), pattern=r"nvapi-[A-Za-z0-9_-]{64}(?![A-Za-z0-9_-])",
        entropy=3.5, visible=6,
    ),
    Rule(
        id="openrouter-api-key", description="OpenRouter API key (sk-or-v1-)", confidence=Confidence.HIGH,
        kind="token", keywords=("sk-or-v1-",), gate="sk-", pattern=r"sk-or-v1-[a-f0-9]{64}(?![A-Za-z0-9])",
        entropy=3.0, visible=9,
    ),
    Rule(
        id="circle-api-key", description="Circle API key (TEST_/LIVE_/SAND_API_KEY:)",
        confidence=Confidence.HIGH, kind="token", keywords=("_API_KEY:",),
        pattern=r"(?:TEST|LIVE|SAND)_API_KEY:[a-fA-F0-9]{32}:[a-fA-F0-9]{32}(?![A-Za-z0-9])",
        entropy=3.0, visible=13,
    ),
    Rule(
        id="stripe-secret-key", description="Stripe secret or restricted key (sk_/rk_ live or test)",
        confidence=Confidence.HIGH, kind="token", keywords=("k_live_", "k_test_"),
        pattern=r"[sr]k_(?:live|test)_[A-Za-z0-9]{10,247}(?![A-Za-z0-9])", entropy=3.0, visible=8,
    ),
    Rule(
        id="aws-access-key-id", description="AWS access key id (AKIA/ASIA/ABIA/ACCA)",
        confidence=Confidence.HIGH, kind="token", keywords=("AKIA", "ASIA", "ABIA", "ACCA"),
        pattern=r"(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Za-z0-9])", entropy=2.5, visible=4,
    ),
    Rule(
        id="github-token", description="GitHub token (ghp_/gho_/ghu_/ghs_/ghr_)", confidence=Confidence.HIGH,
        kind="token", keywords=("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
        pattern=r"gh[pousr]_[A-Za-z0-9]{36}(?![A-Za-z0-9])", entropy=3.5, visible=4,
    ),
    Rule(
        id="github-fine-grained-pat", description="GitHub fine-grained personal access token (github_pat_)",
        confidence=Confidence.HIGH, kind="token", keywords=("github_pat_",),
        pattern=r"github_pat_[A-Za-z0-9_]{82}(?![A-Za-z0-9_])", entropy=3.5, visible=11,
    ),
    Rule(
        id="huggingface-token", description="Hugging Face access token (hf_ / api_org_)",
        confidence=Confidence.HIGH, kind="token", keywords=("hf_", "api_org_"),
        pattern=r"(?:hf_|api_org_)[A-Za-z]{34}(?![A-Za-z0-9_])", entropy=3.5, visible=3,
    ),
    Rule(
        id="google-api-key", description="Google API key (AIza)", confidence=Confidence.HIGH, kind="token",
        keywords=("AIza",), pattern=r"AIza[A-Za-z0-9_-]{35}(?![A-Za-z0-9_-])", entropy=3.5, visible=4,
    ),
    Rule(
        id="xai-api-key", description="xAI API key (xai-)", confidence=Confidence.HIGH, kind="token",
        keywords=("xai-",), pattern=r"xai-[A-Za-z0-9_]{80}(?![A-Za-z0-9_-])", entropy=3.5, visible=4,
    ),
    Rule(
        id="replicate-api-token", description="Replicate API token (r8_)", confidence=Confidence.HIGH,
        kind="token", keywords=("r8_",), pattern=r"r8_[A-Za-z0-9]{37}(?![A-Za-z0-9_-])", entropy=3.5, visible=3,
    ),
    Rule(
        id="perplexity-api-key", description="Perplexity API key (pplx-)", confidence=Confidence.HIGH,
        kind="token", keywords=("pplx-",), pattern=r"pplx-[A-Za-z0-9]{48}(?![A-Za-z0-9_-])", entropy=3.5, visible=5,
    ),
    Rule(
        id="slack-token", description="Slack token (xoxb-/xoxp-/xoxa-/xoxr-/xoxs-/xoxe-, xapp-) or webhook URL",
        confidence=Confidence.HIGH, kind="token", keywords=("xox", "xapp-", "hooks.slack.com/"),
        pattern=(
            r"xox(?:[abposr]|e(?:\.xox[bp])?)-(?:[0-9]{1,16}-){0,4}[A-Za-z0-9]{16,256}(?:-[A-Za-z0-9]{1,64}){0,2}"
            r"(?![A-Za-z0-9-])|xapp-\d-[A-Z0-9]{8,16}-\d{8,16}-[a-z0-9]{32,80}(?![A-Za-z0-9])"
            r"|hooks\.slack\.com/(?:services|workflows|triggers)/T[A-Z0-9]{6,12}/[A-Za-z0-9+/]{30,120}"
            r"(?![A-Za-z0-9+/])"
        ),
        entropy=3.0, visible=5,
    ),
    Rule(
        id="telegram-bot-token", description="Telegram bot token (bot id : A + 34)", confidence=Confidence.HIGH,
        kind="anchored", keywords=(":A",),
        pattern=r"(?<![A-Za-z0-9_])[0-9]{5,16}:A[A-Za-z0-9_-]{34}(?![A-Za-z0-9_-])", entropy=3.5, visible=0,
    ),
    Rule(
        # Medium: a bot token has no fixed substring, so the log filter's keyword gate cannot see it.
        id="discord-token", description="Discord bot token (base64 user id . timestamp . HMAC) or webhook URL",
        confidence=Confidence.MEDIUM, kind="discord", keywords=("/api/webhooks/",), always=True,
        pattern=(
            r"(?<![A-Za-z0-9_.-])[MNO][A-Za-z0-9]{23,27}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,38}(?![A-Za-z0-9_.-])"
        ),
        entropy=3.5, visible=0,
    ),
    Rule(
        id="url-credentials", description="Password inside a URL (scheme://user:password@host)",
        confidence=Confidence.MEDIUM, kind="url", keywords=("://",),
        # Matched from just after each `://` (found with str.find); the scheme before it is checked apart.
        pattern=(
            r"(?P<user>[^\s:/?#@\"'`<>\\()\[\]{}]{0,128})"
            r":(?P<secret>[^\s:/?#@\"'`<>\\]{1,256})@(?=[A-Za-z0-9\[_-])"
        ),
        entropy=2.5,
    ),
    Rule(
        id="circle-entity-secret", description="Circle entity secret (32 bytes hex) assigned to an entity-secret name",
        confidence=Confidence.HIGH, kind="assignment", keywords=("entity",), keywords_ignore_case=True,
        pattern=r"[a-fA-F0-9]{64}", name_pattern=r"(?:^|_)entity_?secret(?:_|$)",
        name_deny=r"_(?:ciphertext|encrypted|path|file|env|name)$", entropy=3.0,
    ),
    Rule(
        id="aws-secret-access-key", description="AWS secret access key assigned to an AWS secret name",
        confidence=Confidence.HIGH, kind="assignment", keywords=("aws", "secretaccesskey", "secret_access_key"),
        keywords_ignore_case=True, pattern=r"[A-Za-z0-9/+]{40}",
        name_pattern=r"(?:^|_)aws(?:_[a-z0-9]+)*_secret(?:_|$)|(?:^|_)secret_access_key$",
        name_deny=r"_(?:path|file|env|name|arn|id)$", entropy=3.5,
    ),
    Rule(
        id="generic-secret", description="High-entropy value assigned to a secret-looking name",
        confidence=Confidence.MEDIUM, kind="assignment",
        # Every accepted name contains one of these (they are also the anchors names are found from).
        keywords=("secret", "token", "pass", "pwd", "key", "credential", "auth"),
        keywords_ignore_case=True, pattern=r"[\s\S]{8,256}", name_pattern=_GENERIC_NAMES,
        name_deny=_GENERIC_DENY, entropy=3.0, free_value=True, env_key_names=True,
    ),
)

RULES_BY_ID: dict[str, Rule] = {r.id: r for r in RULES}

_COMPILED: dict[str, re.Pattern[str]] = {r.id: re.compile(r.pattern) for r in RULES}
_NAME_RE: dict[str, re.Pattern[str]] = {r.id: re.compile(r.name_pattern) for r in RULES if r.name_pattern}
_NAME_DENY_RE: dict[str, re.Pattern[str]] = {r.id: re.compile(r.name_deny) for r in RULES if r.name_deny}

# Public example keys from provider documentation: shaped right, never real.
KNOWN_EXAMPLES: frozenset[str] = frozenset({
    "AKIAIOSFODNN7EXAMPLE",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
    "sk_test_BQokikJOvBiI2HlWgH4olfQ2",
})
# Example credentials published in standards and vendor documentation (RFC 5849 / 6749 / 6750, OpenID
# Connect Core, the Azure storage emulator's documented account key), kept as SHA-256 prefixes so that the
# repository holds no key-shaped literal. They are public and shared by every copy of those documents.
KNOWN_EXAMPLE_DIGESTS: frozenset[str] = frozenset({
    "0011cc25eb4320717494d2703e8cba85", "6c96130f130ab0d6d158397e24d2bcc1", "00cf4c781dc37003f7c7dd7d4c9a6ef1",
    "b8e148545b13c78bc74da2f1a7275dd7", "ad71fb4165536675d80a8bbfe957697e", "ca7459e2b26776de081b9a07e40227fd",
    "9d03b692e941d5ace207a9f804883443", "cb87c87e4a138d9a72259d2a01bab156", "649e1f5c769e718ba10d1a702a36499a",
    "4c20e6f5cc11b93731e74cbe20739821", "bb9b1163338b2a51495834ad5c654204", "b87dad10a32a2d81aa2e36e31e258b36",
    "9e309cccd311ea64d04133daf7760f71", "a35b81a7d7927b70ec99270dd2362b88", "5435a2f13f1e85e32fed9f30d49e0971",
})

# Words that mark a value as a stand-in. Checked in lower and UPPER case (exact), so a random key
# hits one only by a one-in-millions accident.
_PLACEHOLDER_WORDS = (
    "xxxx", "example", "placeholder", "dummy", "your", "redacted", "changeme", "change_me", "sample",
    "insert", "replace", "fake", "notreal", "not_real", "...", ELLIPSIS, "****", "<", ">", "${", "{{", "}}",
    "here",
)
# Extra stand-in words for free-text values (generic rule only).
_FREE_WORDS = (
    "test", "mock", "secret", "password", "passwd", "token", "apikey", "api_key", "api-key", "demo",
    "qwerty", "letmein", "admin", "default", "none", "null", "undefined", "string", "p@ss", "hunter2",
    "foobar", "lorem", "abc123", "1234", "todo", "stub", "bogus", "invalid", "my-", "my_",
    "process.env", "os.environ", "getenv", "env(", "vault:", "secretkeyref", "arn:aws",
    # Words of a label, not of a secret ("m2m-client-credentials", "auth-basic-password").
    "credential", "client", "bearer", "session", "_key", "-key",
    # Keyboard rows typed as filler ("asdf", "qwer"); shorter rows count only when typed twice (below).
    "asdf", "qwer", "zxcv", "hjkl",
)
# Three keys of a keyboard row: filler when typed twice ("sdf0o9823sjdfsdf", "asdasd"). Once is chance: a random
# 18-character password holds one of these about once in a thousand draws.
_KEYBOARD_TRIGRAMS = ("asd", "sdf", "qwe", "zxc", "jkl")
_CODE_EXTS = frozenset({
    ".py", ".pyi", ".ipynb", ".js", ".mjs", ".cjs", ".jsx", ".ts", ".tsx", ".mts", ".cts", ".go", ".java",
    ".kt", ".kts", ".scala", ".groovy", ".rb", ".php", ".cs", ".fs", ".swift", ".rs", ".c", ".h", ".cc",
    ".cpp", ".hpp", ".m", ".mm", ".dart", ".lua", ".r", ".jl", ".ex", ".exs", ".erl", ".clj", ".vue",
    ".svelte", ".elm", ".hs", ".ml", ".zig", ".nim", ".cr", ".v", ".sol",
})

_WORD_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_NAME_CHARS = _WORD_CHARS | frozenset("_.-")
_NAME_MAX = 80

# After a name: an optional closing quote/bracket, an optional type annotation, a separator, an optional
# opening quote and an optional auth scheme. The value itself is matched separately.
_TAIL_CONFIG = re.compile(
    r"""(?P<close>\\?["'`])?\]?[ \t]{0,4}(?P<sep>:=|=>|==|!=|=|:|,|>|[ \t])"""
    r"""[ \t]{0,4}(?P<open>\\?["'`])?(?P<scheme>(?i:bearer|token|basic)[ \t]+)?"""
)
# Source code also has typed declarations: `api_key: str = "..."`, `const token: string = '...'`.
_TAIL_CODE = re.compile(
    r"""(?P<close>\\?["'`])?\]?[ \t]{0,4}"""
    r"""(?:(?P<annot>:[ \t]*[A-Za-z_][\w\[\]., |]{0,40}?[ \t]*=)|(?P<sep>:=|=>|==|!=|=|:|,|>|[ \t]))"""
    r"""[ \t]{0,4}(?P<open>\\?["'`])?(?P<scheme>(?i:bearer|token|basic)[ \t]+)?"""
)
_QUOTED_VALUE = re.compile(r"""[^\s"'`\\]{1,257}""")
_BARE_VALUE = re.compile(r"""[^\s"'`\\,;<>(){}\[\]]{1,257}(?=$|[\s,;#<)\]}\\"'`])""")
_CAMEL_1 = re.compile(r"([a-z0-9])([A-Z])")
_CAMEL_2 = re.compile(r"([A-Z]+)([A-Z][a-z])")
_NAME_SPLIT = re.compile(r"[_.\-]+")
# Words, not randomness: snake_case, UPPER_CASE, kebab, dotted, camelCase, PascalCase, Title-Words.
_IDENTIFIER_LIKE = re.compile(
    r"[a-z]+(?:[_\-./][a-z]+)*\d{0,4}|[A-Z]+(?:[_\-./][A-Z]+)*\d{0,4}|[a-z]+(?:[A-Z][a-z]+)+\d{0,4}"
    r"|(?:[A-Z][a-z]+)+\d{0,4}|[A-Za-z][a-z]+(?:[_\-./ ][A-Za-z][a-z]+)+\d{0,4}"
)
# Not literals: $VAR / ${VAR} / %VAR% / %(name)s, YAML tags and anchors (!secret, &x, *x), decorators and
# scoped names (@org/pkg), file paths (/etc/x, ./x, ~/x, ../x).
_REFERENCE = re.compile(
    r"\$[A-Za-z_]\w*|\$\{[^}]*\}.*|\$\(.*|%[A-Za-z_]\w*%|%\(?[A-Za-z_]*\)?[sdr]|[!&*@][A-Za-z_][\w./-]*"
)
_REFERENCE_START = re.compile(r"\$(?:[A-Za-z_{(])|%\(")
# printf-style slots (%s, %d, %(name)s) stand for a value; %S or %st inside random text do not.
_FORMAT_SLOT = re.compile(r"%(?:\([A-Za-z_]\w*\))?[sd](?![A-Za-z0-9])")
_PATH = re.compile(r"(?:~|\.{1,2})?/[\w.\-]+(?:/[\w.\-]+)*/?")
# One word of an identifier: lower, Capitalized, UPPER, an acronym before a Capitalized word, or a number.
# Possessive runs: the same words as `(?:[a-z]{2,}|[A-Z][a-z]+|[A-Z]{2,}(?![a-z]))+`, which tried every way of
# cutting a long letter run into words before failing (a 40-letter run followed by five digits took seconds, a
# 60-letter one hours); an acronym before a Capitalized word (HTTPServer) is the one cut kept.
_WORD_PART = re.compile(
    r"(?:[a-z]{2,}+|[A-Z][a-z]++|[A-Z]{2,}+(?![a-z])|[A-Z]{2,}(?=[A-Z][a-z]))++[0-9]{0,4}|[A-Za-z]?[0-9]{1,4}"
)
_SPLIT_PARTS = re.compile(r"[_\-./:\s\[\]()#@$]+")
_NUMBER = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[T ][0-9:.]+Z?)?")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_FILE_EXT = re.compile(r"\.[a-z][a-z0-9]{0,5}$")
# A file name (`client.py`, `02_setup.ipynb`), a format template (`{user}`, f"{key}"), a key prefix on its own.
_FILENAME = re.compile(r"[\w\-.]+\.[a-z][a-z0-9]{0,4}")
_TEMPLATE = re.compile(r"\{[A-Za-z_][\w.]*\}")
_KEY_PREFIXES = (
    "sk-", "sk_live_", "sk_test_", "rk_live_", "rk_test_", "gsk_", "nvapi-", "ghp_", "gho_", "ghu_", "ghs_",
    "ghr_", "github_pat_", "AKIA", "ASIA", "xox", "TEST_API_KEY", "LIVE_API_KEY", "SAND_API_KEY",
)
# A 20-byte EVM address is public; a 32-byte private key (0x + 64 hex) is not, and stays a finding.
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")


def shannon_entropy(value: str) -> float:
    """Bits per character of the value's own character distribution."""
    if not value:
        return 0.0
    n = len(value)
    return -sum((c / n) * math.log2(c / n) for c in Counter(value).values())


def fingerprint(rule_id: str, secret: str) -> str:
    """Stable, one-way id of a secret under a rule: what baselines and SARIF partialFingerprints store."""
    digest = hashlib.sha256(f"{FINGERPRINT_VERSION}\0{rule_id}\0{secret}".encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:32]


def preview(secret: str, visible: int) -> str:
    """`gsk_…(56 chars)`: the format's public prefix (or up to 3 characters of a free value) and the length."""
    if visible <= 0:
        visible = min(3, len(secret) // 8)
    visible = min(visible, len(secret) // 2)
    return f"{secret[:visible]}{ELLIPSIS}({len(secret)} chars)"


def _max_run(value: str) -> int:
    best = run = 1 if value else 0
    for a, b in pairwise(value):
        run = run + 1 if a == b else 1
        best = max(best, run)
    return best


def _max_step_run(value: str) -> int:
    """Longest run of characters that go up (or down) by one code point: abcdef, 123456, 987654."""
    best = 1 if value else 0
    up = down = 1
    for a, b in pairwise(value):
        d = ord(b) - ord(a)
        up = up + 1 if d == 1 else 1
        down = down + 1 if d == -1 else 1
        best = max(best, up, down)
    return best


def _is_periodic(value: str) -> bool:
    """abcabcabc..., a1b2a1b2...: a short unit repeated fills the whole value."""
    return any(value[p:] == value[:-p] for p in range(1, min(16, len(value) // 3) + 1))


def _has_word(value: str, words: Iterable[str]) -> bool:
    """A stand-in word written in one case (none, NONE, None): random mixed case (RnoNe) does not count."""
    return any(w in value or w.upper() in value or w.capitalize() in value for w in words)


def _typed_filler(value: str) -> bool:
    lower = value.lower()
    return any(lower.count(t) >= 2 for t in _KEYBOARD_TRIGRAMS)


def _has_word_exact_case(value: str, words: Iterable[str]) -> bool:
    return any(w in value or w.upper() in value for w in words)


def is_placeholder(body: str, *, free: bool = False) -> bool:
    """Stand-ins that have a key's shape but no key's randomness: xxxx, your-key, abcdef..., 000000."""
    if not body or _FORMAT_SLOT.search(body):
        return True
    if free:
        if _has_word(body, _PLACEHOLDER_WORDS) or _has_word(body, _FREE_WORDS) or _typed_filler(body):
            return True
    elif _has_word_exact_case(body, _PLACEHOLDER_WORDS):
        return True
    return _is_fill(body)


def _is_fill(body: str) -> bool:
    """000000..., abcdefg..., abcabcabc...: a run, a sequence or a repeated unit that fills the value."""
    # A stand-in is mostly its run (000000..., abcdefg...); a random 64-character key holds a run of six now and
    # then (about once in 18,000 hex keys), so the run must also fill a quarter of the value.
    if _max_run(body) >= max(6, len(body) // 4) or _max_step_run(body) >= max(7, len(body) // 4):
        return True
    return _is_periodic(body)


def _entropy_floor(rule: Rule, body: str) -> float:
    # Short strings cannot reach a high per-character entropy: cap the floor by what the length allows.
    return min(rule.entropy, math.log2(max(len(body), 2)) - 1.0)


def _char_classes(value: str) -> int:
    return (
        any(c.islower() for c in value)
        + any(c.isupper() for c in value)
        + any(c.isdigit() for c in value)
        + any(not c.isalnum() for c in value)
    )


def is_identifier_like(value: str) -> bool:
    """Words joined the ways code joins them: snake, kebab, dotted, camel, Pascal, UPPER, with short numbers.

    `_tracingSpan`, `DistributionList.NextMarker`, `__validator_config__`, `OpenAI-Beta`, `RSA_4096`,
    `onboarding.formBody.resetPassword`. A random key breaks this at its first lone letter or mixed run.
    """
    parts = [p for p in _SPLIT_PARTS.split(value) if p]
    return bool(parts) and all(_WORD_PART.fullmatch(p) for p in parts) and not reads_random(value)


# Safari / iCloud Keychain's generated passwords (xunbyc-0Ciqfu-hamkos): three groups of six letters and digits
# with a capital and a digit among them. Its syllables read as words; no identifier is written this way.
_KEYCHAIN_PASSWORD = re.compile(r"(?=[^A-Z]*[A-Z])(?=[^0-9]*[0-9])[a-zA-Z0-9]{6}-[a-zA-Z0-9]{6}-[a-zA-Z0-9]{6}")
_WORD_TOKEN = re.compile(r"[A-Z]{2,}(?![a-z])|[A-Z]?[a-z]+|[0-9]+|[A-Z]")
_CONSONANTS_5 = re.compile(r"[bcdfghjklmnpqrstvwxzBCDFGHJKLMNPQRSTVWXZ]{5,}")
_VOWELS = frozenset("aeiouyAEIOUY")
# Abbreviations code writes without vowels (HtmlCssModule, test_ctx_mgr, srv.recvfrom): words, not randomness.
_ABBREVIATIONS = frozenset({
    "html", "xhtml", "http", "https", "css", "js", "jsx", "ts", "tsx", "ctx", "cfg", "src", "dst", "msg", "msgs",
    "pkg", "pkgs", "cmd", "std", "tmp", "str", "ptr", "mgr", "svc", "srv", "btn", "img", "jpg", "png", "svg", "xml",
    "sql", "rgb", "hsl", "dll", "fs", "db", "tls", "ssl", "crt", "pkcs", "rsa", "cls", "pwd", "cwd", "dns", "tcp",
    "grpc", "npm", "nvm", "sdk", "cdn", "lng", "lst", "vnd", "wss", "rpc", "mtx", "rgx", "txn", "nth", "mkdir",
    "rmtree", "recv", "recvfrom", "ctrl", "sync", "hmac", "jwt", "jwk", "mfa", "kms", "crc", "lfs", "gcc", "stdlib",
})


def reads_random(value: str) -> bool:
    """Letters that only look like words by their case pattern: a Keychain password, or two or more "words" with
    no vowel or five consonants in a row (`HEYZmsfZFEoBgQZ1`: Zmsf, Bg; `hihth-dsfpt-dvbdf-jrvbl`).

    Acronyms in capitals and common abbreviations (`ctx`, `Html`, `Css`) do not count. Measured on names from the
    stdlib and webpack, and on random 16-character alphanumerics that the word pattern accepts: see
    docs/scanner.md."""
    if _KEYCHAIN_PASSWORD.fullmatch(value):
        return True
    odd = 0
    for t in _WORD_TOKEN.findall(value):
        if len(t) < 2 or not t[0].isalpha() or t.isupper() or t.lower() in _ABBREVIATIONS:
            continue
        if _VOWELS.isdisjoint(t) or _CONSONANTS_5.search(t):
            odd += 1
            if odd >= 2:
                return True
    return False


def _free_value_ok(value: str) -> bool:
    """Heuristics for a value assigned to a secret-looking name: is it a credential or just a word?"""
    n = len(value)
    if n < 8 or n > 256:
        return False
    if value[0] in "{<([" or "://" in value or value.isdigit():
        return False
    if _REFERENCE.fullmatch(value) and not (value[0] in "!*" and not is_identifier_like(value[1:])):
        return False  # $VAR, %VAR%, *alias, !tag, &anchor, @scope/pkg, @host; not random text after * or ! (*pAio0…)
    if value.startswith("#/") or _REFERENCE_START.match(value):
        return False  # a JSON pointer (#/components/...), $VAR/... or ${VAR}... followed by more text
    if not value.isascii() or _NUMBER.fullmatch(value) or _DATE.fullmatch(value):
        return False  # translations ("Contraseña"), prices per token (1.25e-06), timestamps
    if is_identifier_like(value):
        return False
    if _PATH.fullmatch(value) and (value.lower() == value or _FILE_EXT.search(value) or value.startswith("/")):
        return False
    if _FILENAME.fullmatch(value) or _TEMPLATE.search(value):
        return False
    if n < 20 and value.startswith(_KEY_PREFIXES):
        return False  # "sk-or-v1-" + ...: a key's prefix alone, or a truncated stand-in
    if _IDENTIFIER_LIKE.fullmatch(value) and not reads_random(value):
        return False
    if _EMAIL.fullmatch(value) or _ADDRESS.fullmatch(value):
        return False
    classes = _char_classes(value)
    if n < 16:
        return classes >= 3 and shannon_entropy(value) >= 2.5
    return classes >= 2


def _known_example(secret: str) -> bool:
    if secret in KNOWN_EXAMPLES:
        return True
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()[:32] in KNOWN_EXAMPLE_DIGESTS


# ---------------------------------------------------------------------------------------------------------
# Candidate extraction.


@dataclass(frozen=True, slots=True)
class _Candidate:
    order: int
    rule: Rule
    start: int
    end: int
    secret: str


def _normalize_name(name: str) -> str:
    spaced = _CAMEL_2.sub(r"\1_\2", _CAMEL_1.sub(r"\1_\2", name))
    return "_".join(p for p in _NAME_SPLIT.split(spaced.lower()) if p)


_DISCORD_MID = re.compile(r"\.[A-Za-z0-9_-]{6}\.")
_DISCORD_WEBHOOK = re.compile(r"discord(?:app)?\.com/api/webhooks/[0-9]{17,20}/[A-Za-z0-9_-]{60,68}(?![A-Za-z0-9_-])")


def _discord_candidates(rule: Rule, order: int, text: str, validate: bool) -> list[_Candidate]:
    """Bot tokens found from their `.xxxxxx.` middle (a literal the regex engine finds fast), then webhooks."""
    out: list[_Candidate] = []
    full = _COMPILED[rule.id]
    last_end = -1
    for mid in _DISCORD_MID.finditer(text):
        lo = max(0, mid.start() - 28)
        if mid.start() < last_end:
            continue  # inside the token just found
        m = full.search(text, lo, mid.end() + 64)
        if m is None or m.start() > mid.start():
            continue
        last_end = m.end()
        secret = m.group(0)
        if validate and (not _discord_ok(secret) or shannon_entropy(secret) < rule.entropy):
            continue
        out.append(_Candidate(order, rule, m.start(), m.end(), secret))
    if "/api/webhooks/" in text:
        for m in _DISCORD_WEBHOOK.finditer(text):
            out.append(_Candidate(order, rule, m.start(), m.end(), m.group(0)))
    return out


_ANCHOR_BACK = 20


def _anchored_candidates(rule: Rule, order: int, text: str, validate: bool) -> list[_Candidate]:
    """Token rules whose pattern starts with a character class: found from their literal keyword (str.find),
    then matched in a window around it, so the regex never walks the whole text."""
    out: list[_Candidate] = []
    pattern = _COMPILED[rule.id]
    anchor = rule.keywords[0]
    i = text.find(anchor)
    last_end = -1
    while i != -1:
        if i >= last_end:
            m = pattern.search(text, max(0, i - _ANCHOR_BACK), i + 300)
            if m is not None and m.start() <= i < m.end():
                last_end = m.end()
                secret = m.group(0)
                body = secret[rule.visible:]
                if not validate or not (
                    _known_example(secret) or is_placeholder(body) or shannon_entropy(body) < _entropy_floor(rule, body)
                ):
                    out.append(_Candidate(order, rule, m.start(), m.end(), secret))
        i = text.find(anchor, i + 1)
    return out


def _discord_ok(secret: str) -> bool:
    """A Discord bot token starts with the bot's user id (a snowflake: decimal digits) in base64."""
    head = secret.split(".", 1)[0]
    try:
        decoded = base64.b64decode(head + "=" * (-len(head) % 4), validate=True)
    except ValueError:
        return False
    return 17 <= len(decoded) <= 20 and decoded.isdigit()


def _prefilter(rule: Rule, text: str, lower: str | None, gates: dict[str, bool]) -> bool:
    if rule.always:
        return True
    haystack = lower if rule.keywords_ignore_case else text
    if haystack is None:
        return False
    if rule.gate:
        open_ = gates.get(rule.gate)
        if open_ is None:
            open_ = gates[rule.gate] = rule.gate in haystack
        if not open_:
            return False
    return any(k in haystack for k in rule.keywords)


def _token_candidates(rule: Rule, order: int, text: str, validate: bool) -> list[_Candidate]:
    out: list[_Candidate] = []
    for m in _COMPILED[rule.id].finditer(text):
        start, end = m.span()
        secret = m.group(0)
        if validate:
            if start > 0 and text[start - 1] in _WORD_CHARS:
                continue
            body = secret[rule.visible:]
            if _known_example(secret) or is_placeholder(body):
                continue
            if shannon_entropy(body) < _entropy_floor(rule, body):
                continue
        out.append(_Candidate(order, rule, start, end, secret))
    return out


def _url_candidates(rule: Rule, order: int, text: str, validate: bool) -> list[_Candidate]:
    """The password of `scheme://user:password@host`: a value a person wrote, so the free-text checks apply."""
    out: list[_Candidate] = []
    pattern = _COMPILED[rule.id]
    i = text.find("://")
    while i != -1:
        m = pattern.match(text, i + 3)
        j = i
        i = text.find("://", i + 3)
        if m is None or j == 0 or not text[j - 1].isalnum():
            continue  # no password, or no scheme before `://`
        start, end = m.span("secret")
        secret = m.group("secret")
        if validate and not _url_password_ok(secret, m.group("user")):
            continue
        out.append(_Candidate(order, rule, start, end, secret))
    return out


def _url_password_ok(secret: str, user: str) -> bool:
    """The password part of a URL's userinfo is a password by where it stands: its style (words, a passphrase of
    letter groups, a pronounceable generated one such as `xunbyc-0Ciqfu-hamkos`) says nothing against it, so the
    generic rule's identifier test does not apply here. What stays quiet is what stands in for a password:
    references and templates (`${DB_PASS}`, `$PASS`, `<password>`, `{pw}`, `%s`), names in capitals
    (`DB_PASS`), fill (`xxxxxxxx`, `********`), the user name again (`postgres:postgres`), and values made only of
    stand-in words (`password`, `mysecretpassword`, `P@ssw0rd`, `testuser123`, `masterkey`)."""
    if len(secret) < 6 or secret.isdigit() or _known_example(secret) or set(secret) <= {"*", "x", "X"}:
        return False
    if secret[0] in "{<[" or _URL_REFERENCE.match(secret) or _URL_NAME.fullmatch(secret):
        return False  # {password}, <password>, [password], ${DB_PASS}, $(pass), %(password)s, %PASS%, DB_PASS
    dollar = _DOLLAR_NAME.fullmatch(secret)
    if dollar is not None and (dollar.group(1).isupper() or dollar.group(1).islower()):
        return False  # $PASS, $db_password: a shell or compose variable (a random $kN6fMzYMS is not)
    plain = unquote(secret) if "%" in secret else secret
    if plain.lower() == user.lower() or _FORMAT_SLOT.search(secret) or _is_fill(plain):
        return False
    if any(f in plain for f in _FILL_INSIDE) or _stand_in_words(plain, user):
        return False
    return len(plain) >= 6 and shannon_entropy(secret) >= 2.3


# A name written where a value belongs: DB_PASS, SAS_KEY, POSTGRES_PASSWORD (capitals joined by underscores).
_URL_NAME = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+")
_URL_REFERENCE = re.compile(r"\$[{(]|%\(|%[A-Za-z_]\w*%$")
_DOLLAR_NAME = re.compile(r"\$([A-Za-z_]\w*)")
_NOT_LETTERS = re.compile(r"[^a-z]+")
# Leetspeak spellings of stand-ins (P@ssw0rd, s3cr3t, l3tm31n).
_LEET = str.maketrans("@$0134579!", "asoieastgi")
# Stand-ins written inside a longer value (mysecretpassword, a%20secret): long enough that random letters never
# spell them by chance (26^6 and more).
_STAND_IN_INSIDE = ("password", "passwd", "secret", "changeme", "changeit", "example", "placeholder", "redacted",
                    "dummy", "sample", "notreal", "letmein", "qwerty")
# Words a stand-in password is made of (`testuser123`, `my_db_pass`, `scott-tiger`, `masterkey`, `minioadmin`).
# Only a value whose letters are *all* such words is a stand-in: random letters almost never split that way
# (no word here is shorter than two letters), while words outside this list (`bluebird`) are a real password.
_STAND_IN_VOCAB = frozenset({
    "pass", "passw", "password", "passwd", "pwd", "pw", "pword", "passphrase", "secret", "secrets", "change",
    "changeme", "changeit", "it", "me", "my", "mine", "your", "yours", "our", "own", "test", "testing", "tests",
    "tester", "demo", "example", "sample", "dummy", "fake", "mock", "placeholder", "user", "users", "username",
    "usr", "name", "admin", "administrator", "root", "toor", "guest", "default", "foo", "bar", "baz", "qux",
    "quux", "db", "database", "app", "redacted", "none", "null", "nil", "todo", "tbd", "xx", "xxx", "letmein",
    "let", "in", "qwerty", "asdf", "hunter", "tiger", "scott", "master", "key", "keys", "super", "top", "very",
    "strong", "pg", "postgres", "postgresql", "mysql", "mongo", "mongodb", "redis", "rabbit", "rabbitmq",
    "minio", "dev", "local", "localhost", "the", "word", "welcome", "abc", "xyz", "token", "api", "auth",
    "access", "login", "pat", "creds", "credential", "credentials", "oauth", "client", "service", "svc",
    "account", "bot", "deploy", "ci", "git", "host", "server", "some", "here", "insert", "replace", "real",
    "not", "new", "old", "hello", "world", "value", "string", "env", "process", "config", "settings", "var",
    "os", "environ", "private", "public", "temp", "tmp", "one", "two", "sa", "foobar", "proxy", "bitnami",
    "anonymous", "elastic", "kibana", "correct", "horse", "battery", "staple",
})
_VOCAB_MAX = max(len(w) for w in _STAND_IN_VOCAB)
_VOCAB_LONG = tuple(w for w in _STAND_IN_VOCAB if len(w) >= 4)
# Fill written into a value (glpat-xxxxxxxxxxxx, pass****, secret...).
_FILL_INSIDE = ("xxxx", "XXXX", "****", ELLIPSIS)


def _stand_in_words(value: str, user: str = "") -> bool:
    """True when the value's letters, as written or read as leetspeak, are only stand-in words (digits and
    punctuation aside) and the user's name (`jdoe:jdoe123`), or hold a long stand-in word: `mypassword`,
    `P@ssw0rd`, `Password123!`, `my-db-pass`."""
    if _has_word(value, _STAND_IN_INSIDE) or _has_word(value.translate(_LEET), _STAND_IN_INSIDE):
        return True
    lower = value.lower()
    name = _NOT_LETTERS.sub("", user.lower())
    for letters in (_NOT_LETTERS.sub("", lower), _NOT_LETTERS.sub("", lower.translate(_LEET))):
        if len(name) >= 3 and name in letters:
            letters = letters.replace(name, "")
            if not letters:
                return True  # the user's name and digits: jdoe:jdoe123
        if not letters:
            continue
        # Word break: ok[i] says letters[:i] splits into vocabulary words.
        ok = [True] + [False] * len(letters)
        for i in range(1, len(letters) + 1):
            ok[i] = any(ok[j] and letters[j:i] in _STAND_IN_VOCAB for j in range(max(0, i - _VOCAB_MAX), i - 1))
        # Two- and three-letter words alone stand in only for six letters or more: the few letters of a mostly
        # symbolic password (`0.TO6P9pG`: top+pg) spell short words by chance.
        if ok[-1] and (len(letters) >= 6 or any(w in letters for w in _VOCAB_LONG)):
            return True
    return False


_PEM_END = re.compile(r"-----END[ A-Z0-9]{0,32}PRIVATE KEY(?: BLOCK)?-----")
_PEM_LINE = re.compile(r"(?:[ \t]*(?:\\r)?(?:\\n|\r?\n)[ \t]*[A-Za-z0-9+/=]{1,128}[ \t]*)+")
_PEM_MAX = 16384


def _pem_material(body: str) -> str:
    """The base64 of a PEM body: escaped newlines undone, header lines (Proc-Type: ...) dropped."""
    lines = body.replace("\\r", "\n").replace("\\n", "\n").splitlines()
    return "".join(re.sub(r"[^A-Za-z0-9+/=]", "", ln) for ln in lines if ":" not in ln)


def _block_candidates(rule: Rule, order: int, text: str, validate: bool) -> list[_Candidate]:
    out: list[_Candidate] = []
    for m in _COMPILED[rule.id].finditer(text):
        start, header_end = m.span()
        end_m = _PEM_END.search(text, header_end, min(len(text), header_end + _PEM_MAX))
        nxt = text.find("-----BEGIN", header_end, end_m.start() if end_m else header_end + _PEM_MAX)
        if end_m is not None and nxt == -1:
            end, body = end_m.end(), text[header_end:end_m.start()]
        else:
            # No END (a truncated block, a diff hunk): take the base64 lines that follow the header.
            lines = _PEM_LINE.match(text, header_end)
            end = lines.end() if lines else header_end
            body = text[header_end:end]
        material = _pem_material(body)
        if validate and (
            len(material) < 64 or is_placeholder(material) or shannon_entropy(material) < rule.entropy
        ):
            continue
        secret = m.group(0) + material
        out.append(_Candidate(order, rule, start, end, secret))
    return out


_NAME_FWD = re.compile(r"[A-Za-z0-9_.\-]{0,80}")  # _NAME_MAX


def _name_start(text: str, pos: int) -> int:
    s = pos
    lo = max(0, pos - _NAME_MAX)
    while s > lo and text[s - 1] in _NAME_CHARS:
        s -= 1
    while s < pos and text[s] in "-.":
        s += 1
    return s


# getenv("X", "v"), os.environ.get('X', 'v'), setdefault("X", "v"), env("X", default="v"): a name and its
# value as the first two arguments of an environment lookup. Any other two adjacent strings are not a pair.
_ENV_CALL = re.compile(r"(?:getenv|get|setdefault|setenv|putenv|env|environ|Env)[ \t]*\([ \t]*\\?[\"'`]$")
_YAML_BLOCK = re.compile(
    r"[|>][-+0-9]{0,2}[ \t]*(?:#[^\n]*)?\r?\n(?P<indent>[ \t]+)(?P<value>[^\s\"'`]{8,256})[ \t]*(?:\r?\n|$)"
)
_AWS_CONFIGURE = re.compile(r"configure[ \t]+set[ \t]+(?:--[a-z-]+[ \t]+\S+[ \t]+)*$")


def _assignment_values(text: str, name_start: int, name_end: int, code: bool) -> tuple[int, int] | None:
    """Locate the literal assigned at name_end, or None if what follows is not a literal assignment."""
    t = (_TAIL_CODE if code else _TAIL_CONFIG).match(text, name_end)
    if t is None:
        return None
    sep = t.group("sep")
    if sep in ("==", "!="):
        return None
    close, opening, scheme = t.group("close"), t.group("open"), t.group("scheme")
    if sep == "," and (not close or not _ENV_CALL.search(text, max(0, name_start - 40), name_start)):
        return None  # positional pairs only as an environment lookup's name and default
    if sep is not None and sep in " \t" and not (
        scheme or _flag_before(text, name_end) or _AWS_CONFIGURE.search(text, max(0, name_start - 120), name_start)
    ):
        return None  # whitespace separates only CLI flags (--token VALUE) and `aws configure set NAME VALUE`
    pos = t.end()
    if sep == ":" and not opening and not code:
        block = _YAML_BLOCK.match(text, pos)
        if block is not None:
            return block.span("value")  # YAML block scalar: `password: |` then the value, indented
    if opening:
        v = _QUOTED_VALUE.match(text, pos)
        if v is None:
            return None
        after = text[v.end():v.end() + len(opening)]
        if after != opening and not (scheme and after[:1] in "\"'`\\"):
            return None
        return v.span()
    if code and not scheme:
        return None  # in source code only a literal is a secret: api_key = get_key() is not
    v = _BARE_VALUE.match(text, pos)
    return v.span() if v else None


def _flag_before(text: str, name_end: int) -> bool:
    s = name_end
    while s > 0 and text[s - 1] in _NAME_CHARS:
        s -= 1
    return text.startswith("--", s)


class _Kind(StrEnum):
    """What kind of file a text is, for the assignment rules: where names and values mean something else."""

    PLAIN = "plain"
    MINIFIABLE = "minifiable"  # JS/CSS: a line of thousands of characters is built output, not a config
    GENERATED = "generated"  # source maps, translation catalogs: names and strings copied from elsewhere
    DOCS = "docs"  # prose: example values are short and made up


_GENERATED_SUFFIXES = (".map", ".po", ".pot", ".mo", ".xlf", ".xliff", ".strings", ".resx")
_MINIFIABLE_SUFFIXES = (".js", ".mjs", ".cjs", ".css", ".jsx", ".ts", ".tsx")
_DOCS_SUFFIXES = (".md", ".markdown", ".rst", ".txt", ".adoc", ".html", ".htm")
_MINIFIED_LINE = 500


def _file_kind(path: str) -> _Kind:
    name = path.replace("\\", "/").rsplit("/", 1)[-1].lower()
    if name.endswith(_GENERATED_SUFFIXES) or ".min." in name:
        return _Kind.GENERATED
    if name.endswith(_MINIFIABLE_SUFFIXES):
        return _Kind.MINIFIABLE
    if name.endswith(_DOCS_SUFFIXES):
        return _Kind.DOCS
    return _Kind.PLAIN


def _skip_in_kind(kind: _Kind, text: str, ns: int, vs: int, ve: int) -> bool:
    if kind is _Kind.GENERATED:
        return True
    if kind is _Kind.MINIFIABLE:
        line_start = text.rfind("\n", 0, ns) + 1
        line_end = text.find("\n", ve)
        return (len(text) if line_end == -1 else line_end) - line_start > _MINIFIED_LINE
    # Docs: a query parameter (badge.svg?token=...) or a short value is an illustration, not a leak.
    return ve - vs < 16 or text[ns - 1:ns] in ("?", "&")


def _assignment_candidates(
    rules: Sequence[tuple[int, Rule]], text: str, lower: str, code: bool, validate: bool, kind: _Kind
) -> list[_Candidate]:
    anchors: set[int] = set()
    for _, rule in rules:
        for kw in rule.keywords:
            i = lower.find(kw)
            while i != -1:
                anchors.add(i)
                i = lower.find(kw, i + 1)
    out: list[_Candidate] = []
    examined_to = -1
    for pos in sorted(anchors):
        if pos < examined_to:
            continue  # another keyword of a name already examined
        ne = _NAME_FWD.match(text, pos).end()  # type: ignore[union-attr]
        examined_to = ne
        ns = _name_start(text, pos)
        span = _assignment_values(text, ns, ne, code)  # most anchors stop here, before any Python loop
        if span is None:
            continue
        if not (text[ns].isalpha() or text[ns] == "_") or _FILENAME.fullmatch(text, ns, ne):
            continue  # "01_token_plan.py", "token.txt": file names, not variables
        vs, ve = span
        if kind is not _Kind.PLAIN and _skip_in_kind(kind, text, ns, vs, ve):
            continue
        value = text[vs:ve]
        raw_name = text[ns:ne]
        name = _normalize_name(raw_name)
        for order, rule in rules:
            if not _NAME_RE[rule.id].search(name) and not (rule.env_key_names and _env_key_name(raw_name, name)):
                continue
            deny = _NAME_DENY_RE.get(rule.id)
            if deny is not None and deny.search(name):
                continue
            if not _COMPILED[rule.id].fullmatch(value):
                continue
            if validate and not _value_ok(rule, value, rule.free_value and (
                _PASSWORD_NAME.search(name) is not None or _AUTH_SCHEME.search(text, max(0, vs - 12), vs) is not None
            )):
                continue
            out.append(_Candidate(order, rule, vs, ve, value))
            break
    return out


_ENV_KEY_DENY = re.compile(
    r"(?:^|_)(?:public|pub|cache|sort|partition|primary|foreign|idempotency|dedup|dedupe|lookup|object|s3|gpg"
    r"|pgp|ssh|hot|hash|map|row|range|index|redis|kms|license|licence|site|recaptcha_site|stripe_publishable)_key$"
)


def _env_key_name(raw: str, name: str) -> bool:
    """OPENAI_KEY, MAPBOX_KEY: environment-variable style names that end in _KEY."""
    return raw.isupper() and name.endswith("_key") and not _ENV_KEY_DENY.search(name)


# Names that say "a password" and nothing else (not a key, token or setting that may hold an identifier).
_PASSWORD_NAME = re.compile(r"(?:^|_)(?:password|passwd|pwd|passphrase)(?:_|$)")
# The value of an Authorization header after its scheme (Bearer, Basic, token): a credential by position too.
_AUTH_SCHEME = re.compile(r"(?i:bearer|basic|token)[ \t]+$")
# The free-text words of five characters or more (and `env(`): a random value spells them only by a rare accident,
# unlike `my-`, `test` or `demo` (a Keychain password holds one of those about once in seventy).
_FREE_WORDS_LONG = (*(w for w in _FREE_WORDS if len(w) >= 5), "env(")
# From this length a value under a password name is judged by stand-in words, not the free-text word list.
_STYLE_FREE_LENGTH = 16


def _value_ok(rule: Rule, value: str, password_name: bool = False) -> bool:
    """`password_name`: the value is assigned to a password name, or follows an Authorization header's scheme
    (`Bearer …`, `Basic …`). From 16 characters such a value is checked for stand-ins as a URL's password is
    (fill, references, values made only of stand-in words such as `my-db-password`) and by the free-text words of
    five letters or more, not by their short fragments (`my-`, `test`, `demo`), which a generated password holds
    by chance (`dexiky-4awomy-rejate`). Identifier-shaped values stay quiet as under every name
    (`ProductionDatabase`)."""
    if _known_example(value):
        return False
    if password_name and len(value) >= _STYLE_FREE_LENGTH:
        if is_placeholder(value) or _typed_filler(value) or _has_word(value, _FREE_WORDS_LONG):
            return False
        if _stand_in_words(value) or not _free_value_ok(value):
            return False
        return shannon_entropy(value) >= rule.entropy
    if is_placeholder(value, free=rule.free_value):
        return False
    if rule.free_value and not _free_value_ok(value):
        return False
    floor = _entropy_floor(rule, value) if not rule.free_value else (rule.entropy if len(value) >= 16 else 2.5)
    return shannon_entropy(value) >= floor


def _is_code_path(path: str) -> bool:
    name = path.replace("\\", "/").rsplit("/", 1)[-1].lower()
    dot = name.rfind(".")
    return dot > 0 and name[dot:] in _CODE_EXTS


def _candidates(text: str, path: str, rules: Sequence[Rule], validate: bool) -> list[_Candidate]:
    lower: str | None = None
    found: list[_Candidate] = []
    assignment: list[tuple[int, Rule]] = []
    gates: dict[str, bool] = {}
    for order, rule in enumerate(rules):
        if rule.keywords_ignore_case and lower is None:
            lower = text.lower()
        if not _prefilter(rule, text, lower, gates):
            continue
        if rule.kind == "token":
            found.extend(_token_candidates(rule, order, text, validate))
        elif rule.kind == "block":
            found.extend(_block_candidates(rule, order, text, validate))
        elif rule.kind == "anchored":
            found.extend(_anchored_candidates(rule, order, text, validate))
        elif rule.kind == "discord":
            found.extend(_discord_candidates(rule, order, text, validate))
        elif rule.kind == "url":
            found.extend(_url_candidates(rule, order, text, validate))
        else:
            assignment.append((order, rule))
    if assignment and lower is not None:
        found.extend(
            _assignment_candidates(assignment, text, lower, _is_code_path(path), validate, _file_kind(path))
        )
    if len(found) <= 1:
        return found
    # Overlaps: the earlier rule (more specific) wins.
    found.sort(key=lambda c: (c.order, c.start))
    kept: list[_Candidate] = []
    for c in found:
        if all(c.end <= k.start or c.start >= k.end for k in kept):
            kept.append(c)
    kept.sort(key=lambda c: (c.start, c.order))
    return kept


class _Lines:
    """Offset → (line, column) for one text, built only when something was found."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.starts = [0]
        i = text.find("\n")
        while i != -1:
            self.starts.append(i + 1)
            i = text.find("\n", i + 1)

    def locate(self, offset: int) -> tuple[int, int]:
        idx = bisect_right(self.starts, offset) - 1
        return idx + 1, offset - self.starts[idx] + 1

    def line_text(self, line: int) -> str:
        if line < 1 or line > len(self.starts):
            return ""
        start = self.starts[line - 1]
        end = self.starts[line] - 1 if line < len(self.starts) else len(self.text)
        return self.text[start:end]


def _allowed(lines: _Lines, line: int) -> bool:
    if ALLOW_MARKER in lines.line_text(line):
        return True
    return ALLOW_NEXT_LINE_MARKER in lines.line_text(line - 1)


def scan_text(
    text: str,
    path: str,
    *,
    include_allowed: bool = False,
    line_offset: int = 0,
    rules: Sequence[Rule] = RULES,
) -> list[Finding]:
    """Every credential in `text`, in order of position. `path` is recorded and chooses code vs config.

    Lines carrying `butler:allow` (or preceded by a line carrying `butler:allow-next-line`) are dropped,
    or kept with allowed=True when include_allowed is set. `line_offset` shifts reported line numbers
    (for texts that are a slice of a file, such as a diff hunk).
    """
    candidates = _candidates(text, path, rules, validate=True)
    if not candidates:
        return []
    lines = _Lines(text)
    findings: list[Finding] = []
    for c in candidates:
        line, col = lines.locate(c.start)
        end_line, end_col = lines.locate(c.end)
        allowed = _allowed(lines, line)
        if allowed and not include_allowed:
            continue
        findings.append(
            Finding(
                rule_id=c.rule.id,
                description=c.rule.description,
                confidence=c.rule.confidence,
                path=path,
                line=line + line_offset,
                column=col,
                end_line=end_line + line_offset,
                end_column=end_col,
                fingerprint=fingerprint(c.rule.id, c.secret),
                preview=_preview_for(c),
                length=len(c.secret),
                allowed=allowed,
            )
        )
    return findings


def _preview_for(c: _Candidate) -> str:
    if c.rule.kind == "block":
        header = c.secret.split("-----", 2)
        label = f"-----{header[1]}-----" if len(header) > 2 else ""
        return f"{label}{ELLIPSIS}({len(c.secret)} chars)"
    return preview(c.secret, c.rule.visible)


# ---------------------------------------------------------------------------------------------------------
# Redaction for logs and outputs.

_HIGH_RULES: tuple[Rule, ...] = tuple(r for r in RULES if r.confidence is Confidence.HIGH)
_HIGH_KEYWORDS: tuple[str, ...] = tuple(
    sorted({k for r in _HIGH_RULES if not r.keywords_ignore_case for k in r.keywords})
)
_HIGH_KEYWORDS_CI: tuple[str, ...] = tuple(
    sorted({k for r in _HIGH_RULES if r.keywords_ignore_case for k in r.keywords})
)


def redact_secrets(text: str) -> str:
    """Mask every match of a high-confidence rule with its redacted preview.

    Masks the shape whether or not the value looks like a placeholder: for a log filter a false mask is
    harmless and a missed one is a leak. Text with none of the rules' keywords returns at once.
    """
    if not any(k in text for k in _HIGH_KEYWORDS):
        if not _HIGH_KEYWORDS_CI:
            return text
        lower = text.lower()
        if not any(k in lower for k in _HIGH_KEYWORDS_CI):
            return text
    found = _candidates(text, "", _HIGH_RULES, validate=False)
    if not found:
        return text
    parts: list[str] = []
    pos = 0
    for c in sorted(found, key=lambda c: c.start):
        if c.start < pos:
            continue
        parts.append(text[pos:c.start])
        parts.append(_preview_for(c))
        pos = c.end
    parts.append(text[pos:])
    return "".join(parts)
