"""`butler serve`, `butler token create|list|revoke`, `butler openclaw setup`: the gateway's commands."""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
from pathlib import Path
from typing import Any

from butler_skill.errors import InvalidInput

DEFAULT_PORT = 8787


def _context(args: argparse.Namespace) -> Any:
    from butler_skill.host.context import Context

    return Context(keys_path=Path(args.keys) if getattr(args, "keys", None) else None,
                   state_path=Path(args.state) if getattr(args, "state", None) else None)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def register(sub: Any) -> None:
    p = sub.add_parser("serve", help="run the gateway: OpenAI and Anthropic APIs on loopback, under Butler's budgets")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1; anything else is on purpose)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--default-max-tokens", type=int, default=None,
                   help="output cap reserved when a request gives no max_tokens (default 4096)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("token", help="gateway access tokens: create, list, revoke")
    tsub = p.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    c = tsub.add_parser("create", help="create a token; its secret is printed once, here, and stored nowhere")
    c.add_argument("--name", required=True)
    c.add_argument("--role", choices=["agent", "admin"], default="agent")
    c.add_argument("--daily-budget", type=int, default=None,
                   help="tokens per UTC day for calls bound to no session (default 1,000,000)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_token_create)
    c = tsub.add_parser("list", help="tokens (never their secrets) with today's use")
    c.add_argument("--all", action="store_true", help="include revoked tokens")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_token_list)
    c = tsub.add_parser("revoke", help="revoke a token by id (it stops working within a second)")
    c.add_argument("token_id")
    c.set_defaults(func=cmd_token_revoke)

    p = sub.add_parser("openclaw", help="connect OpenClaw to Butler")
    osub = p.add_subparsers(dest="openclaw_command", required=True, metavar="ACTION")
    c = osub.add_parser("setup", help="write OpenClaw's provider entry for the gateway (a Butler token, no real key)")
    c.add_argument("--base-url", default=f"http://127.0.0.1:{DEFAULT_PORT}/v1", help="the gateway as OpenClaw sees it")
    c.add_argument("--config", help="OpenClaw config file (default $OPENCLAW_CONFIG_PATH or ~/.openclaw/openclaw.json)")
    c.add_argument("--dry-run", action="store_true", help="print the entry, change nothing, create no token")
    c.add_argument("--json", action="store_true", help="with --dry-run: only the provider entry, as JSON")
    c.set_defaults(func=cmd_openclaw_setup)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from butler_skill.gateway.app import authenticate_request, create_app
    from butler_skill.gateway.service import GatewaySettings
    from butler_skill.store.access_tokens import AccessTokenStore

    if not 0 < args.port < 65536:
        raise InvalidInput("--port must be 1..65535", path="--port")
    ctx = _context(args)
    tokens = AccessTokenStore(ctx.db)
    if not tokens.list():
        print("butler: no access token yet; create one with `butler token create --name NAME` (every request "
              "needs one)", file=sys.stderr)
    if not is_loopback(args.host):
        print(f"butler: binding {args.host}: reachable from other machines; every request still needs a Butler "
              "access token", file=sys.stderr)
    tokens.clear_holds()
    settings = GatewaySettings() if args.default_max_tokens is None else GatewaySettings(
        default_max_tokens=args.default_max_tokens)
    extra: list[Any] = []
    try:  # the dashboard, when it is installed, shares this process and its token check
        from butler_skill.gateway.dashboard import dashboard_routes  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        pass
    else:
        extra = list(dashboard_routes(lambda: ctx, authenticate_request))
    app = create_app(ctx, settings=settings, extra_routes=extra)
    print(f"butler: gateway on http://{args.host}:{args.port}/v1 (OpenAI: /v1/chat/completions, /v1/models; "
          "Anthropic: /v1/messages)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def cmd_token_create(args: argparse.Namespace) -> int:
    from butler_skill.gateway.tokens import DEFAULT_DAILY_BUDGET, create_token

    budget = DEFAULT_DAILY_BUDGET if args.daily_budget is None else args.daily_budget
    if budget < 0:
        raise InvalidInput("--daily-budget must be at least 0", path="--daily-budget")
    token, secret = create_token(_context(args), args.name, role=args.role, daily_budget=budget)
    if args.json:
        print(json.dumps({"id": token.id, "name": token.name, "role": token.role, "daily_budget": token.daily_budget,
                          "token": secret}))
    else:
        print(f"created {token.id} ({token.name}, {token.role}, {token.daily_budget:,} tokens/day unbound)")
        print(f"token: {secret}")
        print("It is shown this once; Butler keeps only its hash. `butler openclaw setup` makes its own.")
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    from butler_skill.store.access_tokens import AccessTokenStore

    ctx = _context(args)
    store = AccessTokenStore(ctx.db)
    now = ctx.now()
    rows = []
    for t in store.list(include_revoked=args.all):
        day = store.day(t.id, now)
        rows.append({"id": t.id, "name": t.name, "role": t.role, "daily_budget": t.daily_budget,
                     "used_today": day.used, "held": day.reserved, "created_at": t.created_at.isoformat(),
                     "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no access tokens; create one with `butler token create --name NAME`")
    for r in rows:
        state = "revoked" if r["revoked_at"] else "active"
        print(f"{r['id']}  {r['name']:<20} {r['role']:<6} {state:<8} {r['used_today']:>10,} / "
              f"{r['daily_budget']:,} today")
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    from butler_skill.store.access_tokens import AccessTokenStore

    ctx = _context(args)
    token = AccessTokenStore(ctx.db).revoke(args.token_id, ctx.now())
    if token is None:
        raise InvalidInput(f"no access token {args.token_id!r}", path="token_id")
    print(f"revoked {token.id} ({token.name})")
    return 0


def cmd_openclaw_setup(args: argparse.Namespace) -> int:
    from butler_skill.gateway import openclaw as oc
    from butler_skill.gateway.tokens import create_token

    ctx = _context(args)
    path = Path(args.config).expanduser() if args.config else oc.config_path(os.environ)
    keys = ctx.config.resolved()
    if args.dry_run:
        entry = oc.provider_entry(args.base_url, oc.TOKEN_PLACEHOLDER, keys)
        if args.json:
            print(json.dumps(entry, indent=2))
            return 0
        _, change = oc.merged(oc.read_config(path), entry)
        print(f"would write {path}: {change}")
        print(json.dumps({"models": {"providers": {oc.PROVIDER_NAME: entry}}}, indent=2))
        print("(dry run: nothing written, no token created)")
        return 0
    config = oc.read_config(path)  # refuse before creating a token if the file cannot be merged
    token, secret = create_token(ctx, "openclaw")
    entry = oc.provider_entry(args.base_url, secret, keys)
    new, change = oc.merged(config, entry)
    oc.write_config(path, new)
    print(f"wrote {path}: {change}")
    print(f"apiKey: Butler access token {token.id} (new; written only to that file, no provider key)")
    first = entry["models"][0]["id"] if entry["models"] else "MODEL"
    print(f"use it: openclaw config set agents.defaults.model.primary {oc.PROVIDER_NAME}/{first}; start the "
          "gateway with `butler serve`; bind a sub-agent to a session with model "
          f"{oc.PROVIDER_NAME}/<session_id>")
    return 0
