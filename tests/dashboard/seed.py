"""A ledger with a month of work in it, written through the tools themselves (call_tool), for the dashboard's
tests and its README screenshot. The clock walks back over 30 UTC days; every figure is what the tools
recorded, nothing is written into tables directly."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from butler_skill.host.context import Context
from butler_skill.host.dispatch import call_tool

KEYS: list[dict[str, Any]] = [
    {"id": "groq-main", "provider": "groq", "scope": "groq-acct", "key_env": "DASH_GROQ_1",
     "price_in_per_m": 0.59, "price_out_per_m": 0.79, "limits": {"tokens_per_day": 400_000}},
    {"id": "groq-spare", "provider": "groq", "scope": "groq-acct", "key_env": "DASH_GROQ_2",
     "price_in_per_m": 0.59, "price_out_per_m": 0.79, "limits": {"tokens_per_day": 200_000}},
    {"id": "openai-team", "provider": "openai", "scope": "oa-org", "key_env": "DASH_OPENAI",
     "limits": {"tokens_per_day": 300_000}},
    {"id": "claude-ops", "provider": "anthropic", "scope": "ant-ws", "key_env": "DASH_ANTHROPIC",
     "limits": {"tokens_per_day": 250_000}},
    {"id": "router-pool", "provider": "openrouter", "scope": "or-acct", "key_env": "DASH_OPENROUTER",
     "limits": {"tokens_per_day": 150_000}},
]
# Realistic shapes, random values: the leak test asserts none of them reaches any page, asset or stream.
SECRETS = {
    "DASH_GROQ_1": "gsk_" + "Wd4Rt7Yu1Io3Pa6Sd9Fg2Hj5Kl8Zx0Cv" + "b4Nm7Qw1Er5Ty9Ui",
    "DASH_GROQ_2": "gsk_" + "Mn2Bv5Cx8Zl1Kj4Hg7Fd0Sa3Po6Iu9Yt" + "r2Ew5Qa8Ws1Ed4Rf",
    "DASH_OPENAI": "sk-proj-" + "Ty6Gh9Jk2Lm5Nb8Vc1Xz4As7Df0Gh3Jk" + "T3BlbkFJ" + "Qa2Ws4Ed6Rf8Tg0Yh1Uj3",
    "DASH_ANTHROPIC": "sk-ant-api03-" + "Pq7Rs0Tu3Vw6Xy9Za2Bc5De8Fg1Hi4Jk" + "7Lm0No3Pq6Rs9Tu2Vw5Xy8Za1Bc4De-AA",
    "DASH_OPENROUTER": "sk-or-v1-" + "3f9a1c7e5b2d8f4a6c0e9b1d7f3a5c8e" + "2b6d0f4a8c1e5b9d3f7a0c4e8b2d6f1a",
}
LABELS = ["support-bot", "nightly-report", "code-review", "research", None]
PRD = "# PRD\nSummarise the week's support tickets into a one-page brief with three recommendations."


def write_keys(folder: Path) -> Path:
    path = folder / "api-keys.json"
    path.write_text(json.dumps({"keys": KEYS}), "utf-8")
    path.chmod(0o600)
    return path


def env_for(folder: Path) -> dict[str, str]:
    return {"HOME": str(folder), "PATH": "/usr/bin:/bin", **SECRETS,
            "BUTLER_KEYS_PATH": str(write_keys(folder)), "BUTLER_STATE_PATH": str(folder / "state.db")}


def ok(envelope: dict[str, Any]) -> dict[str, Any]:
    assert envelope["ok"], envelope
    result: dict[str, Any] = envelope["result"]
    return result


class MovingClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def seed_month(ctx: Context, clock: MovingClock, today: datetime, *, days: int = 30, seed: int = 7) -> None:
    """Sessions on most of the last `days` days (ending yesterday), then today's activity: open sessions with
    holds, a rotation past the threshold, a resting key, and a planned task with a sub-task graph."""
    rng = random.Random(seed)
    n = 0
    for back in range(days - 1, 0, -1):
        day = today - timedelta(days=back)
        if rng.random() < 0.15:
            continue
        for _ in range(rng.randint(1, 4)):
            clock.now = day.replace(hour=rng.randint(1, 22), minute=rng.randint(0, 59))
            label = rng.choice(LABELS)
            provider = rng.choice(["groq", "groq", "openai", "anthropic", "openrouter"])
            alloc = ok(call_tool("allocate_tokens", {"prd_text": PRD, "tokens": rng.randint(8, 40) * 1000,
                                                     "preferred_provider": provider,
                                                     **({"label": label} if label else {})}, ctx))
            n += 1
            used_in = int(alloc["allocated"] * rng.uniform(0.2, 0.5))
            ok(call_tool("record_usage", {"session_id": alloc["session_id"], "request_id": f"req-{n}",
                                          "input_tokens": used_in, "output_tokens": used_in // 3, "close": True}, ctx))
    clock.now = today
    # Today: a session past its threshold (an alert, then a rotation to the other account's key).
    hot = ok(call_tool("allocate_tokens", {"prd_text": PRD, "tokens": 60_000, "label": "support-bot",
                                           "preferred_provider": "groq"}, ctx))
    ok(call_tool("record_usage", {"session_id": hot["session_id"], "request_id": "today-1",
                                  "input_tokens": 38_000, "output_tokens": 9_000}, ctx))
    # A rate limit rests the whole Groq account for a while.
    busy = ok(call_tool("allocate_tokens", {"prd_text": PRD, "tokens": 30_000, "label": "code-review",
                                            "preferred_provider": "groq"}, ctx))
    ok(call_tool("rotate_key", {"session_id": busy["session_id"], "reason": "rate_limit", "retry_after_s": 1500}, ctx))
    ok(call_tool("record_usage", {"session_id": busy["session_id"], "request_id": "today-2",
                                  "input_tokens": 6_000, "output_tokens": 2_500}, ctx))
    # Other providers at work today, and a session that used more than it was given (an overrun alert).
    for provider, label, used in (("anthropic", "research", 21_000), ("openrouter", "nightly-report", 64_000)):
        alloc = ok(call_tool("allocate_tokens", {"prd_text": PRD, "tokens": 70_000, "label": label,
                                                 "preferred_provider": provider}, ctx))
        ok(call_tool("record_usage", {"session_id": alloc["session_id"], "request_id": f"today-{provider}",
                                      "input_tokens": used * 2 // 3, "output_tokens": used // 3}, ctx))
    small = ok(call_tool("allocate_tokens", {"prd_text": PRD, "tokens": 5_000, "label": "research",
                                             "preferred_provider": "anthropic"}, ctx))
    ok(call_tool("record_usage", {"session_id": small["session_id"], "request_id": "today-over",
                                  "input_tokens": 5_200, "output_tokens": 1_300, "close": True}, ctx))
    # A planned task: some sub-agents reported, one failed, the rest still hold their shares.
    plan = ok(call_tool("plan_agents", {"name": "Weekly market brief", "budget": 90_000, "description": (
        "1. Research the public price lists of five LLM API providers\n"
        "2. Gather last week's price snapshots from the archive\n"
        "3. Analyze week-over-week price changes and flag moves above 10%\n"
        "4. Write a two-page brief for the finance team\n"
        "5. Review the brief for errors before it is sent\n")}, ctx))
    reports = {0: ("success", 9_800), 1: ("success", 7_400), 2: ("failed", 3_100)}
    for i, agent in enumerate(plan["agents"]):
        if i in reports:
            status, tokens = reports[i]
            ok(call_tool("submit_result", {
                "session_id": agent["session_id"], "status": status, "output": "done" if status == "success" else None,
                "error": "provider returned an empty answer" if status == "failed" else None,
                "usage": {"input_tokens": tokens * 3 // 4, "output_tokens": tokens // 4}}, ctx))


def seed_treasury(ctx: Context, folder: Path) -> list[Any]:
    """A treasury policy, a fake Circle wallet and a fake OpenRouter account on loopback, and top-ups the
    policy proposed through `treasury_autobuy` (awaiting a person's approval). Returns the servers to close."""
    from decimal import Decimal

    from tests.servers.fake_circle import start_fake_circle
    from tests.servers.fake_openrouter import start_fake_openrouter
    from tests.treasury.conftest import (
        CIRCLE_API_KEY,
        ENTITY_SECRET,
        MANAGEMENT_KEY,
        OR_DEST,
        TOKEN_ID,
        WALLET_ID,
        make_env,
        policy,
        write_policy,
    )

    circle = start_fake_circle(api_key=CIRCLE_API_KEY, entity_secret=ENTITY_SECRET, wallet_id=WALLET_ID,
                               usdc=Decimal("1250"), token_id=TOKEN_ID)
    openrouter = start_fake_openrouter(management_key=MANAGEMENT_KEY, total_credits=Decimal("100"),
                                       total_usage=Decimal("71.5"))
    write_policy(folder, policy(providers={
        "openrouter": {"destinations": [OR_DEST]},
        "anthropic": {"destinations": ["0x3333333333333333333333333333333333333333"], "opening_credit": "40",
                      "threshold": "25", "amount": "100"},
    }))
    env = dict(ctx.env)
    env.update(make_env(circle, openrouter))
    env["HOME"] = str(folder)
    ctx.env = env
    ok(call_tool("treasury_autobuy", {"mode": "propose", "dry_run": False}, ctx))
    return [circle, openrouter]
