"""Baselines: fingerprints of findings a repository has accepted, so the gate can be adopted gradually.

A baseline stores fingerprints (one-way hashes), rule ids and paths: never a secret, never a preview.
It has no timestamps and a fixed order, so rewriting it after no change yields the same bytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from butler_skill.core.scan import Finding
from butler_skill.errors import InvalidInput

BASELINE_VERSION = 1
_FINGERPRINT = re.compile(r"[0-9a-f]{32}")


def baseline_document(findings: Iterable[Finding]) -> dict[str, Any]:
    """The JSON document for these findings: one entry per (fingerprint, path), sorted."""
    entries = sorted({(f.path, f.rule_id, f.fingerprint) for f in findings})
    return {
        "version": BASELINE_VERSION,
        "tool": "butler-scan",
        "note": "Accepted findings: sha256(rule id, secret) fingerprints. Regenerate with --write-baseline.",
        "entries": [{"fingerprint": fp, "rule_id": rule, "path": path} for path, rule, fp in entries],
    }


def parse_baseline(doc: Any) -> frozenset[str]:
    """Fingerprints from a baseline document; InvalidInput when it is not one."""
    if not isinstance(doc, dict) or not isinstance(doc.get("entries"), list):
        raise InvalidInput("baseline must be a JSON object with an 'entries' list")
    version = doc.get("version")
    if version != BASELINE_VERSION:
        raise InvalidInput(f"unsupported baseline version: {version!r}", version=version)
    found: set[str] = set()
    for i, entry in enumerate(doc["entries"]):
        fp = entry.get("fingerprint") if isinstance(entry, dict) else None
        if not isinstance(fp, str) or not _FINGERPRINT.fullmatch(fp):
            raise InvalidInput(f"baseline entry {i} has no valid fingerprint", entry=i)
        found.add(fp)
    return frozenset(found)


def load_baseline(path: Path) -> frozenset[str]:
    from butler_skill.safe_read import read_text

    # Regular files only, size-capped, never blocking (a FIFO or /dev/zero as a baseline is refused).
    text = read_text(path, "baseline", label="baseline", path=str(path))
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"baseline {path} is not valid JSON: {exc.msg} (line {exc.lineno})", path=str(path)) from exc
    return parse_baseline(doc)


def write_baseline(path: Path, findings: Iterable[Finding]) -> int:
    """Write the baseline; returns how many entries it holds."""
    doc = baseline_document(findings)
    try:
        path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot write baseline {path}: {exc.strerror}", path=str(path)) from exc
    return len(doc["entries"])
