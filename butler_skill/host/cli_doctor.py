"""`butler doctor`: gathers the facts of this set-up (files, modes, git, environment) for core/doctor."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from butler_skill.config import git_exposure, keys_path_from, parse_keys, resolve_key, state_path_from
from butler_skill.core.doctor import FileFacts, KeyFacts, LedgerFacts, SetupFacts, diagnose
from butler_skill.errors import ConfigError
from butler_skill.registry import PROVIDERS
from butler_skill.store.backend import inspect_ledger

MARKS = {"ok": "✓", "warning": "!", "error": "✗"}


def _file(path: Path) -> FileFacts:
    if not path.exists():
        return FileFacts(path=str(path), exists=False)
    return FileFacts(path=str(path), exists=True, mode=path.stat().st_mode & 0o777, git=git_exposure(path))


def gather(env: dict[str, str], keys_path: Path | None = None, state_path: Path | None = None) -> SetupFacts:
    kp = keys_path_from(env, keys_path)
    sp = state_path_from(env, kp, state_path)
    facts = SetupFacts(keys_file=_file(kp), mcp_on_path=shutil.which("butler-mcp", path=env.get("PATH")) is not None,
                       ledger=LedgerFacts.model_validate(inspect_ledger(sp, env)))
    if not kp.exists():
        return facts
    try:
        from butler_skill.safe_read import read_text

        keys = parse_keys(read_text(kp, "keys", label="keys file"), str(kp))
    except ConfigError as exc:
        return facts.model_copy(update={"keys_error": exc.message})
    facts.state_files = [_file(Path(f"{sp}{suffix}")) for suffix in ("", "-wal", "-shm")]
    for k in keys:
        secret = k.key.get_secret_value() if k.key else (env.get(k.key_env) if k.key_env else None)
        prefixes = PROVIDERS[k.provider].key_prefixes if k.provider in PROVIDERS else ()
        facts.keys.append(KeyFacts(
            key_id=k.id, provider=k.provider, enabled=k.enabled, inline_secret=k.key is not None,
            key_env=k.key_env, env_set=bool(k.key_env and env.get(k.key_env)),
            prefix_ok=secret.startswith(prefixes) if secret and prefixes else None,
            has_base_url=bool(resolve_key(k).base_url),
            secret_fingerprint=hashlib.sha256(secret.encode()).hexdigest()[:16] if secret else None,
        ))
    return facts


def register(sub: Any) -> None:
    p = sub.add_parser("doctor", help="check this set-up for leaks and mistakes, each with its fix")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_doctor)


def run_doctor(args: argparse.Namespace) -> int:
    facts = gather(dict(os.environ), Path(args.keys) if args.keys else None,
                   Path(args.state) if args.state else None)
    findings = diagnose(facts)
    if args.json:
        print(json.dumps({"ok": not any(f.level == "error" for f in findings),
                          "findings": [f.model_dump() for f in findings]}, indent=2))
    else:
        for f in findings:
            print(f"{MARKS[f.level]} {f.subject}: {f.message}")
            if f.fix and f.level != "ok":
                print(f"    fix: {f.fix}")
        errors = sum(1 for f in findings if f.level == "error")
        warnings = sum(1 for f in findings if f.level == "warning")
        print(f"\n{errors} error(s), {warnings} warning(s)", file=sys.stderr if errors else sys.stdout)
    return 1 if any(f.level == "error" for f in findings) else 0
