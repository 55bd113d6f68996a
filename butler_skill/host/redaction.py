"""Defence in depth: nothing that leaves Butler may carry key material.

Two nets: the exact secrets Butler knows (from the keys file and the environment variables it reads),
and the shape of credentials in general (the scanner's rules). Handlers should never put a secret in
an output; this layer makes sure a mistake does not become a leak.
"""

from __future__ import annotations

import json
import logging
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from butler_skill.host.context import Context

MASK = "[REDACTED]"
# Secrets held in these environment variables are masked even if no key references them.
SECRET_ENV_VARS = ("CIRCLE_API_KEY", "CIRCLE_ENTITY_SECRET", "OPENROUTER_MANAGEMENT_KEY")
MIN_SECRET_LENGTH = 8


def known_secrets(ctx: Context | None) -> list[str]:
    if ctx is None:
        return []
    found: set[str] = {v for name in SECRET_ENV_VARS if (v := ctx.env.get(name))}
    try:
        cfg = ctx.config
    except Exception:
        cfg = None
    if cfg is not None:
        for k in cfg.keys:
            secret = cfg.secret_for(k.id)
            if secret:
                found.add(secret)
    return sorted((s for s in found if len(s) >= MIN_SECRET_LENGTH), key=len, reverse=True)


# The keywords of the scanner's high-confidence rules (core/scan.py; a test keeps the two equal). Text with
# none of them cannot hold a credential shape, so the scanner, costly to import, is not loaded for it.
SHAPE_KEYWORDS = (":A", "ABIA", "ACCA", "AIza", "AKIA", "ASIA", "PRIVATE KEY-----", "T3BlbkFJ",
                  "_API_KEY:", "api_org_", "gho_", "ghp_", "ghr_", "ghs_", "ghu_", "github_pat_", "gsk_", "hf_",
                  "hooks.slack.com/", "k_live_", "k_test_", "nvapi-", "pplx-", "r8_", "sk-admin-",
                  "sk-ant-admin01-", "sk-ant-api03-", "sk-or-v1-", "sk-proj-", "sk-svcacct-", "xai-", "xapp-", "xox")
SHAPE_KEYWORDS_CI = ("aws", "entity", "secret_access_key", "secretaccesskey")


def may_hold_credential(text: str) -> bool:
    if any(k in text for k in SHAPE_KEYWORDS):
        return True
    lower = text.lower()
    return any(k in lower for k in SHAPE_KEYWORDS_CI)


def redact_text(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    if not may_hold_credential(text):
        return text
    from butler_skill.core.scan import redact_secrets

    return redact_secrets(text)


def redact_value(value: Any, ctx: Context | None) -> Any:
    """The same value with every string masked (inputs: a secret pasted into a field is never stored)."""
    text = json.dumps(value)
    clean = redact_text(text, known_secrets(ctx))
    return value if clean == text else json.loads(clean)


def redact_payload(payload: dict[str, Any], ctx: Context | None) -> dict[str, Any]:
    text = json.dumps(payload, sort_keys=False)
    clean = redact_text(text, known_secrets(ctx))
    return payload if clean == text else dict(json.loads(clean))


class RedactingFilter(logging.Filter):
    """Masks credentials in every record of the `butler` logger tree."""

    def __init__(self, secrets: list[str] | None = None) -> None:
        super().__init__()
        self.secrets = secrets or []

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact_text(message, self.secrets)
        if record.exc_info and record.exc_info[1] is not None:
            clean_exc = redact_text(logging.Formatter().formatException(record.exc_info), self.secrets)
            record.exc_info = None
            record.exc_text = clean_exc
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
    redactor = RedactingFilter(known_secrets(ctx))
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
