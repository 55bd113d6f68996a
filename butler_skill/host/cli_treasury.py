"""`butler treasury ...`: the person's side of the treasury.

    butler treasury status [--json]       balances, credit, policy, spend, breaker, recent top-ups
    butler treasury approve ID [--yes]    show amount, destination and caps, then ask for confirmation
    butler treasury reject ID
    butler treasury execute ID            send an approved top-up (its stored idempotency key)
    butler treasury reconcile [--json]    compare with Circle and the providers; resolve unknown outcomes
    butler treasury reset-breaker         re-arm top-ups after consecutive failures
    butler treasury policy                the effective policy

Approval is only here: the agent's tool can propose and execute approved intents, never approve. Without
`--yes` the confirmation is read from a terminal; when stdin is not a terminal the command refuses.
Exit codes: 0 success, 1 an error (or differences found by reconcile), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any, TextIO

from butler_skill.errors import ButlerError

if TYPE_CHECKING:
    from butler_skill.host.context import Context
    from butler_skill.treasury.service import TreasuryService


def decimal_str(value: Any) -> str:
    # Imported on use: every `butler` command builds this parser, only `treasury` needs the policy rules.
    from butler_skill.core.treasury import decimal_str as render

    return render(value)


def add_treasury_parser(subparsers: Any) -> None:
    """Add `treasury` and its actions; the parsed namespace's `func` runs it with a fresh Context."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "treasury", help="USDC top-ups under policy: status, approve, execute, reconcile",
        description="Watch the USDC wallet and providers' credit; approve, execute and reconcile top-ups.")
    sub = parser.add_subparsers(dest="treasury_command", required=True, metavar="ACTION")

    p = sub.add_parser("status", help="balances, credit per provider, policy, spend, breaker, recent top-ups")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--recent", type=int, default=10, help="how many recent intents (default 10)")
    p.add_argument("--offline", action="store_true", help="read only Butler's ledger; ask no provider")

    p = sub.add_parser("approve", help="approve a proposed top-up after reviewing it")
    p.add_argument("intent_id", metavar="ID")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    p = sub.add_parser("reject", help="refuse a proposed or approved top-up")
    p.add_argument("intent_id", metavar="ID")

    p = sub.add_parser("execute", help="send an approved top-up (reusing its idempotency key)")
    p.add_argument("intent_id", metavar="ID")
    p.add_argument("--dry-run", action="store_true", help="check the policy only; send nothing")

    p = sub.add_parser("reconcile", help="compare the ledger with Circle and the providers; report differences")
    p.add_argument("--json", action="store_true", help="print JSON")

    sub.add_parser("reset-breaker", help="re-arm top-ups after consecutive failures")
    sub.add_parser("policy", help="print the effective policy (JSON)")
    parser.set_defaults(func=_command)


register = add_treasury_parser  # the name `butler_skill.host.cli`'s extension loader looks for


def _command(args: argparse.Namespace) -> int:
    from butler_skill.host.cli import _context
    from butler_skill.host.redaction import install_log_redaction

    ctx = _context(args)
    install_log_redaction(ctx)
    try:
        return run_treasury(args, ctx)
    finally:
        ctx.close()


def run_treasury(args: argparse.Namespace, ctx: Context, *, stdin: TextIO | None = None,
                 stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    from butler_skill.handlers.treasury import open_service

    out, err, inp = stdout or sys.stdout, stderr or sys.stderr, stdin or sys.stdin
    actor = f"person:{ctx.env.get('USER') or ctx.env.get('USERNAME') or 'cli'}"
    try:
        with open_service(ctx) as service:
            return _dispatch(args, service, actor, inp, out, err)
    except ButlerError as exc:
        print(f"butler: {exc.code}: {_scrub(exc.message, ctx)}", file=err)
        return exc.exit_code


def _scrub(text: str, ctx: Context) -> str:
    from butler_skill.host.redaction import known_secrets, redact_text

    return redact_text(text, known_secrets(ctx))


def _dispatch(args: argparse.Namespace, service: TreasuryService, actor: str, inp: TextIO, out: TextIO,
              err: TextIO) -> int:
    command = args.treasury_command
    if command == "status":
        from butler_skill.handlers.treasury import build_status

        status = build_status(service, recent=max(0, args.recent), refresh=not args.offline)
        print(json.dumps(status.model_dump(mode="json"), indent=2) if args.json else _status_text(status), file=out)
        return 0
    if command == "policy":
        from butler_skill.treasury.config import policy_view

        print(json.dumps(policy_view(service.config).model_dump(mode="json"), indent=2), file=out)
        return 0
    if command == "approve":
        return _approve(service, args.intent_id, yes=args.yes, actor=actor, inp=inp, out=out, err=err)
    if command == "reject":
        intent = service.reject(args.intent_id, actor)
        print(f"rejected {intent.id}: {decimal_str(intent.amount)} USDC to {intent.provider} will not be sent",
              file=out)
        return 0
    if command == "execute":
        result = service.execute(args.intent_id, dry_run=args.dry_run, actor=actor)
        print(f"{result.intent_id}: {result.outcome}: {result.message}", file=out)
        if result.provider_tx_id:
            print(f"  Circle transaction {result.provider_tx_id}", file=out)
        return 0 if result.outcome in ("complete", "submitted", "would_execute") else 1
    if command == "reconcile":
        report = service.reconcile(actor=actor)
        if args.json:
            print(json.dumps(report.model_dump(mode="json"), indent=2), file=out)
        else:
            print(_reconcile_text(report), file=out)
        return 1 if report.differences else 0
    if command == "reset-breaker":
        breaker = service.reset_breaker(actor)
        print(f"breaker reset: {breaker.consecutive_failures} consecutive failures, top-ups re-armed", file=out)
        return 0
    print(f"butler: unknown treasury action {command!r}", file=err)
    return 2


def _approve(service: TreasuryService, intent_id: str, *, yes: bool, actor: str, inp: TextIO, out: TextIO,
             err: TextIO) -> int:
    from butler_skill.core.treasury import IntentState

    intent = service.store.intent(intent_id)
    policy = service.policy
    spend = service.spend()
    print(f"Top-up {intent.id} ({intent.state.value})", file=out)
    print(f"  amount:       {decimal_str(intent.amount)} USDC", file=out)
    print(f"  provider:     {intent.provider}", file=out)
    print(f"  destination:  {intent.destination}", file=out)
    print(f"  reason:       {intent.reason}", file=out)
    print(f"  network:      {service.config.network}", file=out)
    print(f"  caps:         per transaction {decimal_str(policy.caps.per_transaction)}, "
          f"daily {decimal_str(policy.caps.daily)} (sent today {decimal_str(spend.sent_day)}), "
          f"monthly {decimal_str(policy.caps.monthly)} (sent this month {decimal_str(spend.sent_month)})", file=out)
    print(f"  reserve:      {decimal_str(policy.min_wallet_reserve)} USDC stays in the wallet", file=out)
    if intent.state is IntentState.APPROVED:
        print("already approved", file=out)
        return 0
    if not yes:
        if not inp.isatty():
            print("butler: refusing to approve: stdin is not a terminal (pass --yes to approve without a prompt)",
                  file=err)
            return 2
        print("Approve this top-up? Type 'yes' to approve: ", end="", file=out, flush=True)
        answer = inp.readline().strip().lower()
        if answer not in ("y", "yes"):
            print("not approved", file=out)
            return 1
    approved = service.approve(intent_id, actor)
    print(f"approved {approved.id}; send it with `butler treasury execute {approved.id}`", file=out)
    return 0


def _status_text(status: Any) -> str:
    lines = [f"network: {status.network}"]
    w = status.wallet
    lines.append(f"wallet {w.wallet_id or '(not set)'}: "
                 + (f"{w.usdc} USDC" if w.usdc is not None else f"balance unknown ({w.error})"))
    for c in status.credits:
        left = f"{c.remaining} USD ({c.source})" if c.remaining is not None else "unknown"
        lines.append(f"credit {c.provider}: {left}, threshold {c.threshold}")
    p = status.policy
    lines.append(f"policy: {'enabled' if p.enabled else 'disabled'}; caps {p.caps.per_transaction}/tx, "
                 f"{p.caps.daily}/day, {p.caps.monthly}/month; reserve {p.min_wallet_reserve}; "
                 f"auto-approve up to {p.auto_approve_max}")
    s = status.spend
    lines.append(f"spent {s.sent_day} today ({s.day}), {s.sent_month} this month ({s.month}); "
                 f"in flight {s.in_flight}, pending {s.pending}")
    b = status.breaker
    lines.append(f"breaker: {'OPEN' if b.tripped else 'closed'} "
                 f"({b.consecutive_failures}/{b.max_consecutive_failures} consecutive failures)")
    for i in status.recent:
        lines.append(f"  {i.id}  {i.state:<11} {i.amount:>10} USDC -> {i.provider}  {i.created_at}")
    lines.extend(f"warning: {text}" for text in status.warnings)
    return "\n".join(lines)


def _reconcile_text(report: Any) -> str:
    balance = "balances" if report.ledger_balanced else "DOES NOT balance"
    lines = [f"checked {report.checked} intent(s); ledger {balance}"]
    for title, items in (("resolved", report.resolved), ("pending", report.pending),
                         ("differences", report.differences)):
        if items:
            lines.append(f"{title}:")
            lines.extend(f"  [{i.kind}] {i.intent_id or i.provider_tx_id or '-'}: {i.message}" for i in items)
    if not report.differences:
        lines.append("no differences")
    return "\n".join(lines)
