"""What makes a Butler set-up leak or fail, decided from facts gathered elsewhere (files, git, env).

Each finding has a level (error: fix it before trusting Butler; warning: a risk; ok: checked and fine),
a stable id, what is wrong, and the command or edit that fixes it. No finding ever quotes a secret.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

Level = Literal["ok", "warning", "error"]


class FileFacts(BaseModel):
    path: str
    exists: bool
    mode: int | None = None
    git: str | None = None  # None: not in a work tree or ignored; else "tracked by git" / "... not ignored"


class KeyFacts(BaseModel):
    key_id: str
    provider: str
    enabled: bool
    inline_secret: bool
    key_env: str | None
    env_set: bool
    prefix_ok: bool | None  # None: the provider has no known key shape, or there is no secret to look at
    has_base_url: bool
    secret_fingerprint: str | None  # a hash, to find one secret used under two ids


class LedgerFacts(BaseModel):
    """Which ledger is in use and what it says: never a password (the location is shown without it)."""

    backend: Literal["sqlite", "postgres"]
    location: str
    exists: bool = True  # False: a SQLite file not created yet (the first command creates it)
    error: str | None = None  # cannot connect, cannot read, or a BUTLER_DATABASE_URL Butler cannot use
    schema_version: int | None = None
    expected_version: int = 0


class SetupFacts(BaseModel):
    keys_file: FileFacts
    keys_error: str | None = None
    state_files: list[FileFacts] = []
    keys: list[KeyFacts] = []
    mcp_on_path: bool = True
    ledger: LedgerFacts | None = None


class Finding(BaseModel):
    level: Level
    check: str
    subject: str
    message: str
    fix: str | None = None


def _file_findings(f: FileFacts, what: str, check: str) -> list[Finding]:
    out: list[Finding] = []
    if f.mode is not None and f.mode & 0o077:
        out.append(Finding(level="error", check=f"{check}.mode", subject=f.path,
                           message=f"{what} is readable by other users (mode {f.mode:04o})",
                           fix=f"chmod 600 {f.path}"))
    else:
        out.append(Finding(level="ok", check=f"{check}.mode", subject=f.path, message=f"{what} is private (0600)"))
    if f.git == "tracked by git":
        out.append(Finding(level="error", check=f"{check}.git", subject=f.path,
                           message=f"{what} is tracked by git: its contents are in your history",
                           fix=f"git rm --cached {f.path} && echo '{f.path.rsplit('/', 1)[-1]}' >> .gitignore, "
                               "then rotate every key it held"))
    elif f.git:
        out.append(Finding(level="error", check=f"{check}.git", subject=f.path,
                           message=f"{what} is {f.git}: one `git add .` from a leak",
                           fix=f"echo '{f.path.rsplit('/', 1)[-1]}' >> .gitignore"))
    else:
        out.append(Finding(level="ok", check=f"{check}.git", subject=f.path, message=f"{what} is not exposed to git"))
    return out


def ledger_findings(lf: LedgerFacts) -> list[Finding]:
    name = "PostgreSQL" if lf.backend == "postgres" else "SQLite"
    if lf.error:
        fix = ("check BUTLER_DATABASE_URL, that the server is up and that this user may connect"
               if lf.backend == "postgres" else "check the state file's path and permissions")
        return [Finding(level="error", check="ledger.connect", subject=lf.location,
                        message=f"the {name} ledger cannot be used: {lf.error}", fix=fix)]
    if not lf.exists:
        return [Finding(level="ok", check="ledger.backend", subject=lf.location,
                        message=f"{name} ledger, not created yet (the first command creates it)")]
    version = lf.schema_version or 0
    if version > lf.expected_version:
        return [Finding(level="error", check="ledger.schema", subject=lf.location,
                        message=f"{name} ledger at schema {version}, newer than this Butler knows "
                                f"({lf.expected_version})", fix="upgrade Butler on this host")]
    if version < lf.expected_version:
        return [Finding(level="warning", check="ledger.schema", subject=lf.location,
                        message=f"{name} ledger at schema {version} of {lf.expected_version}: "
                                f"{lf.expected_version - version} migration(s) apply on the next command",
                        fix="run any butler command (for example `butler status`) to apply them")]
    shared = ", shared by every host that uses this URL" if lf.backend == "postgres" else ", this host only"
    return [Finding(level="ok", check="ledger.backend", subject=lf.location,
                    message=f"{name} ledger{shared}: connected, schema {version} (current)")]


def diagnose(facts: SetupFacts) -> list[Finding]:
    out: list[Finding] = []
    if facts.ledger is not None:
        out += ledger_findings(facts.ledger)
    kf = facts.keys_file
    if not kf.exists:
        return [*out, Finding(level="error", check="keys.exists", subject=kf.path, message="no keys file",
                              fix="butler init   (or set BUTLER_KEYS_PATH)")]
    out += _file_findings(kf, "the keys file", "keys")
    if facts.keys_error:
        out.append(Finding(level="error", check="keys.valid", subject=kf.path, message=facts.keys_error,
                           fix="correct the field named above"))
        return out
    for sf in facts.state_files:
        if sf.exists:
            out += _file_findings(sf, "the ledger database", "state")
    seen: dict[str, str] = {}
    for k in facts.keys:
        if not k.enabled:
            continue
        if k.inline_secret:
            out.append(Finding(level="warning", check="key.inline", subject=k.key_id,
                               message="the secret is written in the keys file",
                               fix=f"move it to an environment variable and use \"key_env\" for {k.key_id}"))
        elif k.key_env and not k.env_set:
            out.append(Finding(level="error", check="key.env", subject=k.key_id,
                               message=f"{k.key_env} is not set: calls with this key will fail",
                               fix=f"export {k.key_env}=...   (or disable the key)"))
        elif not k.key_env and k.provider != "demo":
            out.append(Finding(level="error", check="key.secret", subject=k.key_id, message="the key has no secret",
                               fix=f"add \"key_env\" to {k.key_id}"))
        if k.prefix_ok is False:
            out.append(Finding(level="warning", check="key.shape", subject=k.key_id,
                               message=f"the secret does not look like a {k.provider} key",
                               fix=f"check that {k.key_id} holds the {k.provider} key, not another provider's"))
        if not k.has_base_url:
            out.append(Finding(level="error", check="key.base_url", subject=k.key_id,
                               message="a custom provider without base_url", fix=f"add \"base_url\" to {k.key_id}"))
        if k.secret_fingerprint:
            if k.secret_fingerprint in seen:
                out.append(Finding(level="warning", check="key.duplicate", subject=k.key_id,
                                   message=f"holds the same secret as {seen[k.secret_fingerprint]}: "
                                           "its budget would be counted twice",
                                   fix=f"remove one of {seen[k.secret_fingerprint]} and {k.key_id}"))
            seen.setdefault(k.secret_fingerprint, k.key_id)
    if not any(f.check.startswith("key.") and f.level != "ok" for f in out):
        out.append(Finding(level="ok", check="key.all", subject=kf.path,
                           message=f"{sum(1 for k in facts.keys if k.enabled)} enabled keys resolve"))
    if not facts.mcp_on_path:
        out.append(Finding(level="warning", check="mcp.path", subject="butler-mcp",
                           message="butler-mcp is not on PATH: OpenClaw cannot start the tools",
                           fix="uv tool install butler-skill   (or add the venv's bin folder to PATH)"))
    return out
