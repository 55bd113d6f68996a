"""Defence in depth: nothing that leaves Butler, or that Butler keeps, may carry key material.

Two nets: the exact secrets Butler knows (from the keys file and the environment variables it reads),
and the shape of credentials in general (the scanner's rules). Handlers should never put a secret in
an output; this layer makes sure a mistake does not become a leak.

The known-secret net masks each secret in every form a provider might echo:
- whole, and without its well-known prefix (the random body of `nvapi-…`, `sk-proj-…`, `gsk_…`);
- any run of at least `MIN_RUN` (= 2*RUN_K - 1) consecutive characters of a body (a truncated or
  half-masked echo), found cheaply: every RUN_K-gram of every body goes in a dict, and the text is probed
  only at positions 0, RUN_K, 2*RUN_K, ... . A run of 2k-1 characters always covers one probed window
  whole, so the probe finds it; from the hit the match is grown both ways and masked if long enough. The
  cost is len(text)/k dict look-ups, whatever the number of secrets.
- the same for the base64 of the body (an echoed `Authorization: Basic …` or a base64-encoded header
  dump), at the three byte alignments.

RUN_K = 6, so MIN_RUN = 11: eleven characters of a base62 key body are about 65 bits, far more than any
word or id shares with a random key by chance (false positives would corrupt stored ids), while a provider
that shows "the last four characters" (sk-…abcd, the industry habit) is left alone. Runs shorter than 11
characters separated by other text are not caught; no provider echoes a key that way by accident.

One `Redactor` is built per context (`redactor_for`) and used on every channel: tool inputs and outputs
(`dispatch`), logs (`RedactingFilter`), and every text parameter of every write statement (the Context
installs it as `Database.redact`, so tasks, attempts, events, alerts and treasury rows are covered).
"""

from __future__ import annotations

import base64
import logging
import os
import re
from collections.abc import Iterable, Sequence
from contextlib import suppress
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from butler_skill.host.context import Context

MASK = "[REDACTED]"
# Secrets held in these environment variables are masked even if no key references them.
SECRET_ENV_VARS = ("CIRCLE_API_KEY", "CIRCLE_ENTITY_SECRET", "OPENROUTER_MANAGEMENT_KEY")
MIN_SECRET_LENGTH = 8
RUN_K = 6
MIN_RUN = 2 * RUN_K - 1
_MEMO_MAX_LEN = 96
_MEMO_SIZE = 4096
# Well-known key prefixes: what a provider may strip before echoing the rest. Longest match wins.
KEY_PREFIXES = ("sk-ant-api03-", "sk-ant-admin01-", "sk-ant-", "sk-or-v1-", "sk-proj-", "sk-svcacct-",
                "sk-admin-", "sk_live_", "sk_test_", "rk_live_", "rk_test_", "sk-", "nvapi-", "gsk_",
                "github_pat_", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "xai-", "pplx-", "hf_", "r8_",
                "TEST_API_KEY:", "LIVE_API_KEY:", "Bearer ")


def secret_body(secret: str) -> str:
    """The secret without its well-known prefix (the part a provider echoes when it strips the prefix)."""
    for prefix in sorted(KEY_PREFIXES, key=len, reverse=True):
        if secret.startswith(prefix) and len(secret) - len(prefix) >= MIN_SECRET_LENGTH:
            return secret[len(prefix):]
    return secret


def _b64_forms(body: str) -> list[str]:
    """The base64 text of the body as it appears inside a longer encoded string, at each byte alignment.

    The body starts 0, 1 or 2 bytes past a 3-byte group boundary; skipping that many bytes (0, 2 or 1)
    reaches the next boundary, from which whole groups encode the same way whatever surrounds them.
    """
    raw = body.encode("utf-8")
    forms = []
    for skip in range(3):
        part = raw[skip:]
        form = base64.b64encode(part[: len(part) // 3 * 3]).decode("ascii")
        if len(form) >= MIN_RUN:
            forms.append(form)
    return forms


class Redactor:
    """Masks the given secrets (whole, bare body, long runs, base64 runs) and any credential shape."""

    def __init__(self, secrets: Iterable[str]) -> None:
        found = {s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}
        wholes: set[str] = set()
        short: set[str] = set()
        bodies: set[str] = set()
        for secret in found:
            body = secret_body(secret)
            bodies.add(body)
            bodies.update(_b64_forms(body))
            # A secret whose body has MIN_RUN characters always shows up in the gram probe, so its whole forms
            # need only be looked for after a hit; shorter ones are looked for in every text.
            (wholes if len(body) >= MIN_RUN else short).update((secret, body))
        # Longest first: a body inside its whole secret must not leave the prefix behind as the match.
        self.wholes: tuple[str, ...] = tuple(sorted(wholes, key=len, reverse=True))
        self.short: tuple[str, ...] = tuple(sorted(short, key=len, reverse=True))
        self._memo: dict[str, str] = {}
        self.grams: dict[str, list[tuple[str, int]]] = {}
        for body in bodies:
            if len(body) < MIN_RUN:
                continue
            for i in range(len(body) - RUN_K + 1):
                self.grams.setdefault(body[i:i + RUN_K], []).append((body, i))

    def __bool__(self) -> bool:
        return bool(self.wholes or self.short)

    def __call__(self, text: str) -> str:
        return self.redact(text)

    def clean(self, texts: Sequence[str]) -> bool:
        """True only if `redact` would return every one of `texts` unchanged: one pass over all of them at once.

        Each test below looks for a superset of what `redact` looks for in each text, over the texts joined by
        NUL, so False says only "maybe", and the caller then redacts each text. `redact` changes a text only for
        a whole secret or a run of at least MIN_RUN = 2*RUN_K - 1 characters of a body: such a run covers a whole
        probe window wherever it starts, so the joined text's probe sees it too; a short secret or a credential
        keyword inside one text is inside the joined text (and `str.lower` maps ASCII letters one to one, so a
        keyword in a lowered text is in the lowered joined text). A property test keeps `redact_params` equal
        to redacting each text.
        """
        joined = texts[0] if len(texts) == 1 else "\0".join(texts)
        grams = self.grams
        if grams and not grams.keys().isdisjoint([joined[p:p + RUN_K]
                                                  for p in range(0, len(joined) - RUN_K + 1, RUN_K)]):
            return False
        for secret in self.short:
            if secret in joined:
                return False
        return not may_hold_credential(joined)

    def redact_params(self, params: Sequence[Any]) -> Sequence[Any]:
        """A statement's parameters with every str redacted; the same sequence when none needs it.

        Texts the memo already knows to be clean (key ids, days, a timestamp used twice) cost a look-up; the
        others are tested together by `clean`, and remembered when short. Only when that test finds something
        is each text redacted on its own."""
        memo = self._memo
        fresh = [v for v in params if isinstance(v, str) and memo.get(v) != v]
        if not fresh:
            return params
        if self.clean(fresh):
            if len(memo) + len(fresh) > _MEMO_SIZE:
                memo.clear()
            for v in fresh:
                if len(v) <= _MEMO_MAX_LEN:
                    memo[v] = v
            return params
        return tuple(self.redact(v) if isinstance(v, str) else v for v in params)

    def redact(self, text: str) -> str:
        # Short values repeat (key ids, days, timestamps, kinds in every ledger write): remember their answer.
        if len(text) <= _MEMO_MAX_LEN:
            done = self._memo.get(text)
            if done is None:
                if len(self._memo) >= _MEMO_SIZE:
                    self._memo.clear()
                done = self._memo[text] = self._redact(text)
            return done
        return self._redact(text)

    def _redact(self, text: str) -> str:
        n = len(text)
        # The probe: windows at multiples of RUN_K; a set test in C decides whether any run can be there.
        if self.grams and n >= MIN_RUN and not self.grams.keys().isdisjoint(
                [text[p:p + RUN_K] for p in range(0, n - RUN_K + 1, RUN_K)]):
            for secret in self.wholes:
                if secret in text:
                    text = text.replace(secret, MASK)
            text = self._mask_runs(text)
        for secret in self.short:
            if secret in text:
                text = text.replace(secret, MASK)
        if not may_hold_credential(text):
            return text
        from butler_skill.core.scan import redact_secrets

        return redact_secrets(text)

    def _mask_runs(self, text: str) -> str:
        spans: list[tuple[int, int]] = []
        n = len(text)
        grams = self.grams
        for p in range(0, n - RUN_K + 1, RUN_K):
            hits = grams.get(text[p:p + RUN_K])
            if not hits:
                continue
            for body, i in hits:
                left = 0
                while p - left > 0 and i - left > 0 and text[p - left - 1] == body[i - left - 1]:
                    left += 1
                right = RUN_K
                while p + right < n and i + right < len(body) and text[p + right] == body[i + right]:
                    right += 1
                if left + right >= MIN_RUN:
                    spans.append((p - left, p + right))
        if not spans:
            return text
        spans.sort()
        out: list[str] = []
        pos = 0
        end = -1
        for start, stop in spans:
            if start > end:
                if end >= 0:
                    out.append(MASK)
                out.append(text[pos:start])
                end = stop
            else:
                end = max(end, stop)
            pos = end
        out.append(MASK)
        out.append(text[pos:])
        return "".join(out)

    def value(self, value: Any) -> Any:
        """The same JSON-like value with every string (keys included) redacted; unchanged objects are reused."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {self.redact(k) if isinstance(k, str) else k: self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.value(v) for v in value)
        return value


def known_secrets(ctx: Context | None) -> list[str]:
    if ctx is None:
        return []
    found: set[str] = {v for name in SECRET_ENV_VARS if (v := ctx.env.get(name))}
    # The keys' secrets, read without pydantic when the keys file allows it (Context.key_secrets); none while
    # the keys file cannot be read.
    with suppress(Exception):
        found.update(ctx.key_secrets())
    return sorted((s for s in found if len(s) >= MIN_SECRET_LENGTH), key=len, reverse=True)


def redactor_for(ctx: Context | None) -> Redactor:
    """The context's redactor (built once; rebuilt while the keys file cannot be read yet)."""
    if ctx is None:
        return _cached_redactor(())
    cached = ctx.__dict__.get("_butler_redactor")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    redactor = _cached_redactor(tuple(known_secrets(ctx)))
    if "config" in ctx.__dict__ or "keybook" in ctx.__dict__:  # the keys file was read: the secrets are final
        ctx.__dict__["_butler_redactor"] = redactor
    return redactor


@lru_cache(maxsize=32)
def _cached_redactor(secrets: tuple[str, ...]) -> Redactor:
    return Redactor(secrets)


# The keywords of the scanner's high-confidence rules (core/scan.py; a test keeps the two equal). Text with
# none of them cannot hold a credential shape, so the scanner, costly to import, is not loaded for it.
SHAPE_KEYWORDS = (":A", "ABIA", "ACCA", "AIza", "AKIA", "ASIA", "PRIVATE KEY-----", "T3BlbkFJ",
                  "_API_KEY:", "api_org_", "gho_", "ghp_", "ghr_", "ghs_", "ghu_", "github_pat_", "gsk_", "hf_",
                  "hooks.slack.com/", "k_live_", "k_test_", "nvapi-", "pplx-", "r8_", "sk-admin-",
                  "sk-ant-admin01-", "sk-ant-api03-", "sk-or-v1-", "sk-proj-", "sk-svcacct-", "xai-", "xapp-", "xox")
SHAPE_KEYWORDS_CI = ("aws", "entity", "secret_access_key", "secretaccesskey")


# One search in C instead of a Python loop over the keywords (`in` for each: the same answer, a test checks it).
_SHAPE_RE = re.compile("|".join(re.escape(k) for k in SHAPE_KEYWORDS))
_SHAPE_CI_RE = re.compile("|".join(re.escape(k) for k in SHAPE_KEYWORDS_CI))


def may_hold_credential(text: str) -> bool:
    """True when `text` contains one of the scanner's keywords (the case-insensitive ones in `text.lower()`)."""
    return _SHAPE_RE.search(text) is not None or _SHAPE_CI_RE.search(text.lower()) is not None


def redact_text(text: str, secrets: Iterable[str]) -> str:
    """`text` with these secrets (in every form `Redactor` knows) and any credential shape masked."""
    return _cached_redactor(tuple(sorted(set(secrets)))).redact(text)


def redact_value(value: Any, ctx: Context | None) -> Any:
    """The same value with every string masked (inputs: a secret pasted into a field is never stored)."""
    return redactor_for(ctx).value(value)


def redact_payload(payload: dict[str, Any], ctx: Context | None) -> dict[str, Any]:
    return dict(redactor_for(ctx).value(payload))


class RedactingFilter(logging.Filter):
    """Masks credentials in every log record (message, arguments and traceback text)."""

    def __init__(self, secrets: Iterable[str] | Redactor | None = None) -> None:
        super().__init__()
        if not isinstance(secrets, Redactor):
            secrets = _cached_redactor(tuple(sorted(set(secrets or ()))))
        self.redactor = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not drop the record, nor leak its arguments
            message = str(record.msg)
        clean = self.redactor.redact(message)
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.redactor.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = self.redactor.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redactor.redact(record.stack_info)
        record.msg, record.args = clean, ()
        return True


def install_log_redaction(ctx: Context | None, stream: Any = None) -> list[logging.Handler]:
    """Route every log record (Butler's, httpx's, the MCP SDK's) through the redaction filter.

    Handlers go on the root logger, because a filter on a logger does not see its children's records and
    libraries log under their own names. `BUTLER_LOG_LEVEL` (default WARNING) sets the level;
    `BUTLER_LOG_FILE` adds a file (created 0600) beside the stream.
    """
    env = ctx.env if ctx is not None else {}
    level = getattr(logging, str(env.get("BUTLER_LOG_LEVEL", "WARNING")).upper(), logging.WARNING)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "butler_redacting", False)]:
        root.removeHandler(old)
        old.close()
    redactor = RedactingFilter(redactor_for(ctx))
    handlers: list[logging.Handler] = [logging.StreamHandler(stream)]
    if env.get("BUTLER_LOG_FILE"):
        path = env["BUTLER_LOG_FILE"]
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        handlers.append(logging.FileHandler(path, encoding="utf-8"))
    for handler in handlers:
        handler.butler_redacting = True  # type: ignore[attr-defined]
        handler.addFilter(redactor)
        handler.setFormatter(logging.Formatter("%(asctime)s butler %(levelname)s %(name)s: %(message)s"))
        handler.setLevel(level)
        root.addHandler(handler)
    root.setLevel(level)
    return handlers
