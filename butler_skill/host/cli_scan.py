"""`butler scan`: the credential gate on the command line (and as a pre-commit hook).

    butler scan [PATHS...] [--staged | --since REV] [--format text|json|sarif]
                [--baseline FILE] [--write-baseline FILE] [--output FILE]

Exit codes: 0 clean, 1 something found, 2 bad usage (unknown path, revision or baseline).
Runs standalone too: `python -m butler_skill.host.cli_scan ...`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from butler_skill import __version__
from butler_skill.errors import ButlerError, InvalidInput
from butler_skill.scanning.sources import DEFAULT_MAX_BYTES

# The scanner's rules are costly to import: every `butler` command builds this parser, only `scan` needs them,
# so run_scan imports them.

EXIT_CLEAN = 0
EXIT_FOUND = 1
EXIT_USAGE = 2


def add_scan_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", metavar="PATH", help="files or directories (default: .)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--staged", action="store_true", help="scan lines the next commit would add")
    source.add_argument("--since", metavar="REV", help="scan lines added by commits in REV..HEAD")
    parser.add_argument("--format", choices=("text", "json", "sarif"), default="text", help="output format")
    parser.add_argument("--baseline", metavar="FILE", help="ignore findings whose fingerprints FILE accepts")
    parser.add_argument(
        "--write-baseline", metavar="FILE", help="accept every current finding: write their fingerprints to FILE"
    )
    parser.add_argument("--output", "-o", metavar="FILE", help="write the report to FILE instead of stdout")
    parser.add_argument(
        "--max-bytes", type=int, default=DEFAULT_MAX_BYTES, metavar="N", help="skip files larger than N bytes"
    )


def register(sub: Any) -> None:
    """Mount as `butler scan` on the main CLI's sub-parsers."""
    p = sub.add_parser("scan", help="find credentials in files, the staged diff or history (exit 1 if any)")
    add_scan_arguments(p)
    p.set_defaults(func=run_scan)


def _emit(text: str, output: str | None, cwd: Path) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    target = Path(output)
    target = target if target.is_absolute() else cwd / target
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot write {output}: {exc.strerror}", path=output) from exc


def run_scan(args: argparse.Namespace) -> int:
    """Scan as `args` says, print the report, return the exit code (0 clean, 1 found, 2 bad usage)."""
    from butler_skill.core.scan_report import format_text, json_report, sarif_report
    from butler_skill.handlers.scan import ScanSecretsInput, collect, working_dir
    from butler_skill.scanning.baseline import write_baseline

    fmt = getattr(args, "format", "text")
    try:
        if args.max_bytes < 1:
            raise InvalidInput("--max-bytes must be at least 1")
        ctx = getattr(args, "ctx", None) or SimpleNamespace(cwd=Path.cwd())
        cwd = working_dir(ctx)
        inp = ScanSecretsInput(
            paths=list(args.paths or []),
            staged=bool(args.staged),
            since=args.since,
            baseline=args.baseline,
            max_file_bytes=args.max_bytes,
        )
        result = collect(ctx, inp)
        if args.write_baseline:
            target = Path(args.write_baseline)
            count = write_baseline(target if target.is_absolute() else cwd / target,
                                   [*result.findings, *result.baselined])
            print(f"butler scan: wrote {count} accepted finding(s) to {args.write_baseline}", file=sys.stderr)
            return EXIT_CLEAN
        out = result.output()
        if fmt == "json":
            summary = out.model_dump(mode="json", exclude={"findings", "clean"})
            text = json.dumps(json_report(out.findings, summary), indent=2) + "\n"
        elif fmt == "sarif":
            text = json.dumps(sarif_report(out.findings, tool_version=__version__), indent=2) + "\n"
        else:
            text = format_text(
                out.findings,
                files_scanned=out.files_scanned,
                files_skipped=out.files_skipped,
                suppressed=out.suppressed,
            )
        _emit(text, args.output, cwd)
        return EXIT_CLEAN if out.clean else EXIT_FOUND
    except ButlerError as exc:
        if fmt == "json":
            print(json.dumps(exc.to_payload()), file=sys.stderr)
        else:
            print(f"butler scan: {exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_USAGE if exc.exit_code == 2 else EXIT_FOUND
    except ValueError as exc:  # pydantic validation of the input model
        print(f"butler scan: invalid_input: {exc}", file=sys.stderr)
        return EXIT_USAGE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="butler scan", description="Find credentials in files, the staged diff or history."
    )
    add_scan_arguments(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 2 on bad usage, 0 for --help
        return int(exc.code or 0)
    return run_scan(args)


if __name__ == "__main__":
    sys.exit(main())
