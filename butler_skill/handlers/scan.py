"""scan_secrets: find credentials in files, a directory, the staged git diff or recent history."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from butler_skill.core.scan import Finding, scan_text
from butler_skill.errors import InvalidInput, NotFound
from butler_skill.handlers.bounds import MAX_PATHS, PathText
from butler_skill.scanning.baseline import load_baseline
from butler_skill.scanning.sources import (
    DEFAULT_MAX_BYTES,
    ScanStats,
    TextUnit,
    iter_files,
    iter_history,
    iter_staged,
)

REVISION = r"^[^-\s\x00][^\s\x00]*$"  # a branch, tag or commit id: no option-like or spaced text reaches git


class ScanSecretsInput(BaseModel):
    # staged and since are two different diffs: the schema says "not both" so a client learns it first.
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "not": {"required": ["staged", "since"],
                "properties": {"staged": {"const": True}, "since": {"not": {"type": "null"}}}},
    })

    paths: list[PathText] = Field(
        max_length=MAX_PATHS,
        default_factory=list,
        description=(
            "Files or directories to scan, relative to the working directory. Empty: the whole working "
            "directory (or, with staged/since, every changed file)."
        ),
    )
    staged: bool = Field(
        default=False, description="Scan what the next commit would add: lines added in the git index."
    )
    since: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        pattern=REVISION,
        description="Scan lines added by the commits in SINCE..HEAD (a branch, tag or commit id).",
    )
    baseline: PathText | None = Field(
        default=None,
        description="A baseline JSON file of accepted fingerprints; findings listed there are not reported.",
    )
    max_file_bytes: int = Field(
        default=DEFAULT_MAX_BYTES, ge=1, le=1 << 30, description="Files larger than this are skipped (and counted)."
    )


class ScanSecretsOutput(BaseModel):
    mode: Literal["files", "staged", "history"] = Field(description="What was scanned.")
    clean: bool = Field(description="True when nothing was found (after suppressions).")
    findings: list[Finding] = Field(
        description="Redacted findings: rule, place, fingerprint and preview; never the secret."
    )
    files_scanned: int
    bytes_scanned: int
    files_skipped: dict[str, int] = Field(
        description="Files not scanned, by reason: binary, too_large, symlink, excluded_dir, ..."
    )
    suppressed: dict[str, int] = Field(
        description="Findings suppressed: inline (butler:allow comments) and baseline (accepted fingerprints)."
    )


@dataclass
class ScanResult:
    """Everything one scan saw; the CLI needs the baselined findings too (to rewrite a baseline)."""

    mode: Literal["files", "staged", "history"]
    findings: list[Finding] = field(default_factory=list)
    baselined: list[Finding] = field(default_factory=list)
    stats: ScanStats = field(default_factory=ScanStats)
    suppressed: Counter[str] = field(default_factory=Counter)

    def output(self) -> ScanSecretsOutput:
        return ScanSecretsOutput(
            mode=self.mode,
            clean=not self.findings,
            findings=self.findings,
            files_scanned=self.stats.files_scanned,
            bytes_scanned=self.stats.bytes_scanned,
            files_skipped=dict(sorted(self.stats.skipped.items())),
            suppressed={"inline": self.suppressed["inline"], "baseline": self.suppressed["baseline"]},
        )


def working_dir(ctx: Any) -> Path:
    cwd = getattr(ctx, "cwd", None)
    path = Path(cwd) if cwd else Path(os.getcwd())
    if not path.is_dir():
        raise NotFound(f"working directory does not exist: {path}", cwd=str(path))
    return path


def _resolve(cwd: Path, raw: str) -> Path:
    p = Path(raw)
    return p if p.is_absolute() else cwd / p


def _units(cwd: Path, inp: ScanSecretsInput, stats: ScanStats) -> Iterator[TextUnit]:
    if inp.staged:
        return iter_staged(cwd, inp.paths, stats, inp.max_file_bytes)
    if inp.since is not None:
        return iter_history(cwd, inp.since, inp.paths, stats, inp.max_file_bytes)
    return iter_files(inp.paths or ["."], cwd, stats, inp.max_file_bytes)


def _counts(unit: TextUnit, f: Finding) -> bool:
    if unit.added_lines is None:
        return True
    return any(n in unit.added_lines for n in range(f.line, f.end_line + 1))


def collect(ctx: Any, inp: ScanSecretsInput) -> ScanResult:
    """Run the scan described by `inp`; InvalidInput for bad paths, revisions or baselines."""
    if inp.staged and inp.since is not None:
        raise InvalidInput("give either staged or since, not both")
    cwd = working_dir(ctx)
    accepted = load_baseline(_resolve(cwd, inp.baseline)) if inp.baseline else frozenset()
    mode: Literal["files", "staged", "history"] = (
        "staged" if inp.staged else "history" if inp.since is not None else "files"
    )
    result = ScanResult(mode=mode)
    for unit in _units(cwd, inp, result.stats):
        for f in scan_text(unit.text, unit.path, include_allowed=True, line_offset=unit.line_offset):
            if not _counts(unit, f):
                continue
            if unit.commit is not None:
                f = f.model_copy(update={"commit": unit.commit})
            if f.allowed:
                result.suppressed["inline"] += 1
            elif f.fingerprint in accepted:
                result.suppressed["baseline"] += 1
                result.baselined.append(f)
            else:
                result.findings.append(f)
    return result


def scan_secrets(ctx: Any, inp: ScanSecretsInput) -> ScanSecretsOutput:
    """Find credentials in files, a directory, the staged diff (`staged`) or history (`since`)."""
    return collect(ctx, inp).output()
