"""`butler`: the command line. Tool calls print JSON; `status`, `keys` and `demo` print tables for people.

Exit codes: 0 success, 1 an error, 2 invalid input or usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from butler_skill.errors import ButlerError, InvalidInput


def _context(args: argparse.Namespace) -> Any:
    # One context per process: the one main() made for log redaction serves the command too (the keys file is
    # then read once).
    made = getattr(args, "butler_context", None)
    if made is not None:
        return made
    from butler_skill.host.context import Context

    return Context(
        keys_path=Path(args.keys) if getattr(args, "keys", None) else None,
        state_path=Path(args.state) if getattr(args, "state", None) else None,
    )


def _read_input(raw: str | None) -> Any:
    if raw is None:
        return {}
    if raw == "-":
        text = sys.stdin.read()
    elif raw.startswith("@"):
        from butler_skill.safe_read import read_text

        text = read_text(raw[1:], "input", label="input file", path="--input")
    else:
        text = raw
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"--input is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                           path="--input") from None


def _emit(envelope: dict[str, Any]) -> int:
    from butler_skill.host.quick import error_exit_code

    print(json.dumps(envelope, indent=2))
    return error_exit_code(envelope)


def cmd_call(args: argparse.Namespace) -> int:
    # The read tools run without pydantic (host/quick.py); every other tool goes through dispatch.call_tool.
    from butler_skill.host.quick import call as call_tool

    try:
        payload = _read_input(args.input)
    except ButlerError as exc:
        return _emit(exc.to_payload())
    ctx = _context(args)
    if sys.stderr.isatty() and not args.quiet:
        from butler_skill.host.progress import progress_line
        from butler_skill.host.redaction import redactor_for

        def show(event: Any) -> None:  # progress lines pass the same redactor as every other channel
            print(redactor_for(ctx).redact(progress_line(event)), file=sys.stderr, flush=True)

        ctx.progress = show
    try:
        return _emit(call_tool(args.tool, payload, ctx))
    finally:
        ctx.close()


def _tool_result(args: argparse.Namespace, tool: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    from butler_skill.host.quick import call as call_tool
    from butler_skill.host.quick import error_exit_code

    ctx = _context(args)
    try:
        envelope = call_tool(tool, payload, ctx)
    finally:
        ctx.close()
    if not envelope["ok"]:
        print(f"butler: {envelope['error']['code']}: {envelope['error']['message']}", file=sys.stderr)
    return error_exit_code(envelope), envelope


def cmd_status(args: argparse.Namespace) -> int:
    from butler_skill.host.tables import status_tables

    code, env = _tool_result(args, "get_status", {"history_limit": 10})
    if code == 0:
        print(json.dumps(env["result"], indent=2) if args.json else status_tables(env["result"]))
    return code


def cmd_keys(args: argparse.Namespace) -> int:
    from butler_skill.host.tables import keys_table

    code, env = _tool_result(args, "get_available_keys", {"min_tokens": 0})
    if code == 0:
        print(json.dumps(env["result"], indent=2) if args.json else keys_table(env["result"]["keys"]))
    return code


def cmd_tools(args: argparse.Namespace) -> int:
    from butler_skill.host.manifest import load_manifest

    for tool in load_manifest().tools:
        flags = ", ".join(f for f, on in (("mutates", tool.mutates), ("spends money", tool.spends_money)) if on)
        print(f"{tool.name:24} {tool.description.split('. ')[0]}{f' [{flags}]' if flags else ''}")
    return 0


def cmd_schemas(args: argparse.Namespace) -> int:
    from butler_skill.host import schemas
    from butler_skill.host.manifest import load_manifest

    manifest = load_manifest(from_yaml=True)
    root = Path(args.root) if args.root else (manifest.root / "skill.yaml").resolve().parent
    if args.write:
        for rel in schemas.write(manifest, root):
            print(f"wrote {rel}")
        return 0
    drift = schemas.check(manifest, root)
    for rel in drift:
        print(f"out of date: {rel} (run `butler schemas --write`)", file=sys.stderr)
    return 1 if drift else 0


def cmd_init(args: argparse.Namespace) -> int:
    from butler_skill.config import DEFAULT_KEYS, DEMO_KEYS, git_exposure, keys_path_from, write_keys_file

    path = keys_path_from(os.environ, Path(args.path) if args.path else (Path(args.keys) if args.keys else None))
    try:
        write_keys_file(path, DEMO_KEYS if args.demo else DEFAULT_KEYS, force=args.force)
    except ButlerError as exc:
        print(f"butler: {exc.message}", file=sys.stderr)
        return 1
    keys = DEMO_KEYS if args.demo else DEFAULT_KEYS
    total = sum(k["limits"]["tokens_per_day"] for k in keys if k.get("enabled", True))
    print(f"wrote {path} (mode 0600): {len(keys)} keys, {total:,} tokens/day enabled")
    envs = sorted({k["key_env"] for k in keys if k.get("key_env")})
    if envs:
        print("secrets are read from these environment variables (never stored in the file):")
        print("  " + ", ".join(envs))
    exposure = git_exposure(path)
    if exposure:
        print(f"warning: {path} is {exposure}: add it to .gitignore so keys never reach a commit", file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from butler_skill.demo import run_demo

    return run_demo(state_dir=Path(args.state_dir) if args.state_dir else None, out=sys.stdout)


CORE_COMMANDS = frozenset({"call", "status", "keys", "tools", "init", "schemas", "demo"})


def _command_word(argv: list[str]) -> str | None:
    """The sub-command named on the command line (skipping --keys/--state and their values), if any."""
    words = iter(argv)
    for word in words:
        if word in ("--keys", "--state"):
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The whole parser; given the command line of a core command (`butler call ...`), the sub-commands that
    live in other modules (scan, treasury, doctor) are left out, so a one-shot tool call does not import them."""
    from butler_skill.host.manifest import load_manifest

    parser = argparse.ArgumentParser(prog="butler", description="Butler: the CFO skill for AI agents.")
    parser.add_argument("--keys", help="keys file (default: $BUTLER_KEYS_PATH or ~/.openclaw/workspace/api-keys.json)")
    parser.add_argument("--state", help="ledger database (default: $BUTLER_STATE_PATH or next to the keys file)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("call", help="call a tool with JSON input; prints a JSON envelope")
    p.add_argument("tool", choices=[t.name for t in load_manifest().tools], metavar="TOOL")
    p.add_argument("--input", "-i", help="JSON text, @file, or - for stdin (default {})")
    p.add_argument("--quiet", "-q", action="store_true", help="no live progress on stderr")
    p.set_defaults(func=cmd_call)

    p = sub.add_parser("status", help="keys, sessions, alerts and rotations as tables")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("keys", help="every key with today's figures (never secrets)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_keys)

    p = sub.add_parser("tools", help="list the tools of skill.yaml")
    p.set_defaults(func=cmd_tools)

    p = sub.add_parser("init", help="write a keys file with the default key set")
    p.add_argument("--path", help="where (default: the keys path)")
    p.add_argument("--demo", action="store_true", help="write the demo key set instead (no secrets needed)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("schemas", help="generate or check schemas/ from the code")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--write", action="store_true")
    g.add_argument("--check", action="store_true")
    p.add_argument("--root", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_schemas)

    p = sub.add_parser("demo", help="run Butler's main job on the built-in demo provider (no keys needed)")
    p.add_argument("--state-dir", help="keep the demo's keys file and ledger here (default: a temp folder)")
    p.set_defaults(func=cmd_demo)

    if argv is None or _command_word(argv) not in CORE_COMMANDS:
        for extra in _extensions():
            extra(sub)
    return parser


def _extensions() -> list[Any]:
    """Sub-commands that live in their own modules (scan, treasury, doctor)."""
    found = []
    for module_name, attr in (("butler_skill.host.cli_scan", "register"),
                              ("butler_skill.host.cli_treasury", "register"),
                              ("butler_skill.host.cli_doctor", "register"),
                              ("butler_skill.host.cli_gateway", "register"),
                              ("butler_skill.host.cli_prices", "register")):
        try:
            module = __import__(module_name, fromlist=[attr])
        except ImportError:
            continue
        if hasattr(module, attr):
            found.append(getattr(module, attr))
    return found


def main(argv: list[str] | None = None) -> int:
    # Butler uses no pydantic plugins; skipping their entry-point scan saves a tenth of a cold start.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    from butler_skill.host.redaction import install_log_redaction, redactor_for

    ctx = args.butler_context = _context(args)
    try:
        install_log_redaction(ctx)
        return int(args.func(args))
    except ButlerError as exc:
        # Expected failures (bad input, config, storage): one line a person can act on, no traceback.
        print(f"butler: {exc.code}: {redactor_for(ctx).redact(exc.message)}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        # A file the person named (log file, keys path, init target) cannot be used: say which and why.
        where = f" {exc.filename}" if exc.filename else ""
        print(f"butler: config_error: cannot use{where}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: the traceback goes to the (redacted) log, not raw to stderr
        import logging

        logging.getLogger("butler.cli").error("internal error", exc_info=True)
        print(f"butler: internal: {type(exc).__name__} (a bug; the log above has the details)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
