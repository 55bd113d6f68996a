"""Scan findings as text (for people), JSON and SARIF 2.1.0. Pure: values in, strings and dicts out.

Nothing here sees a secret: findings carry only fingerprints and redacted previews.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from butler_skill.core.scan import RULES, Confidence, Finding, Rule

SARIF_SCHEMA_URI = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
SARIF_VERSION = "2.1.0"
TOOL_NAME = "butler-scan"
FINGERPRINT_KEY = "butlerSecretHash/v1"

_LEVELS = {Confidence.HIGH: "error", Confidence.MEDIUM: "warning"}
_PRECISION = {Confidence.HIGH: "very-high", Confidence.MEDIUM: "high"}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if v)


def format_text(
    findings: Sequence[Finding],
    *,
    files_scanned: int,
    files_skipped: Mapping[str, int] | None = None,
    suppressed: Mapping[str, int] | None = None,
) -> str:
    """One line per finding (`path:line:col: rule preview`), then a summary line."""
    lines: list[str] = []
    for f in findings:
        where = f"{f.commit[:12]}:{f.path}" if f.commit else f.path
        lines.append(
            f"{where}:{f.line}:{f.column}: {f.rule_id} {f.preview} ({f.description}) fingerprint={f.fingerprint}"
        )
    files_with = len({(f.commit, f.path) for f in findings})
    head = (
        f"butler scan: {_plural(len(findings), 'secret')} found in {_plural(files_with, 'file')}"
        if findings
        else "butler scan: no secrets found"
    )
    details = [f"{_plural(files_scanned, 'file')} scanned"]
    skipped = _counts(files_skipped or {})
    if skipped:
        details.append(f"skipped: {skipped}")
    quiet = _counts(suppressed or {})
    if quiet:
        details.append(f"suppressed: {quiet}")
    lines.append(f"{head} ({'; '.join(details)})")
    return "\n".join(lines) + "\n"


def json_report(findings: Sequence[Finding], summary: Mapping[str, Any]) -> dict[str, Any]:
    """The machine-readable report: the summary fields, then every finding as a plain dict."""
    return {
        "ok": True,
        **summary,
        "clean": not findings,
        "findings": [f.model_dump(mode="json", exclude={"allowed"}) for f in findings],
    }


def _sarif_rule(rule: Rule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "name": "".join(p.capitalize() for p in rule.id.split("-")),
        "shortDescription": {"text": rule.description},
        "fullDescription": {"text": f"{rule.description}. Confidence: {rule.confidence.value}."},
        "help": {
            "text": (
                "Revoke the credential at its provider, remove it from the file (and from history), and load "
                "it from the environment or a secret store. If it is not a secret, add a `butler:allow` "
                "comment on the line or accept its fingerprint in a baseline (--write-baseline)."
            )
        },
        "defaultConfiguration": {"level": _LEVELS[rule.confidence]},
        "properties": {"tags": ["security", "secret"], "precision": _PRECISION[rule.confidence]},
    }


def _uri(path: str) -> str:
    return quote(path.replace("\\", "/"), safe="/:@!$&'()*+,;=-._~")


def sarif_report(
    findings: Sequence[Finding], *, tool_version: str, rules: Sequence[Rule] = RULES
) -> dict[str, Any]:
    """A SARIF 2.1.0 log with one run; every rule is listed so ruleIndex is stable across runs."""
    index = {r.id: i for i, r in enumerate(rules)}
    results: list[dict[str, Any]] = []
    for f in findings:
        result: dict[str, Any] = {
            "ruleId": f.rule_id,
            "level": _LEVELS[f.confidence],
            "message": {"text": f"{f.description}: {f.preview}"},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": _uri(f.path), "uriBaseId": "%SRCROOT%"},
                        "region": {
                            "startLine": f.line,
                            "startColumn": f.column,
                            "endLine": f.end_line,
                            "endColumn": f.end_column,
                        },
                    }
                }
            ],
            "partialFingerprints": {FINGERPRINT_KEY: f.fingerprint},
        }
        if f.rule_id in index:
            result["ruleIndex"] = index[f.rule_id]
        if f.commit:
            result["properties"] = {"commit": f.commit}
        results.append(result)
    return {
        "$schema": SARIF_SCHEMA_URI,
        "version": SARIF_VERSION,
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": TOOL_NAME,
                        "version": tool_version,
                        "semanticVersion": tool_version,
                        "rules": [_sarif_rule(r) for r in rules],
                    }
                },
                "columnKind": "unicodeCodePoints",
                "results": results,
            }
        ],
    }
