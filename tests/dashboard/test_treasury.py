"""The treasury section: ledger figures on every refresh, live balances on request (asked at most once per
interval), intents awaiting approval with the CLI command; the page offers no way to approve."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from butler_skill.host.dispatch import call_tool
from tests.dashboard.conftest import Served
from tests.dashboard.seed import ok, seed_treasury
from tests.dashboard.test_browser import _open


@pytest.fixture
def fakes(served: Served) -> Iterator[list[Any]]:
    servers = seed_treasury(served.ctx, served.folder)
    yield servers
    for fake in servers:
        fake.close()


def test_snapshot_and_live_figures_equal_treasury_status(served: Served, fakes: list[Any]) -> None:
    circle = fakes[0]
    ledger_only = ok(call_tool("treasury_status", {"refresh": False}, served.ctx))
    live = ok(call_tool("treasury_status", {"refresh": True}, served.ctx))
    asked = len(circle.requests_to("GET", "/balances"))
    with served.client() as client:
        snap = client.get("/dashboard/api/snapshot").json()
        first = client.get("/dashboard/api/treasury/live").json()
        second = client.get("/dashboard/api/treasury/live").json()
        assert client.post("/dashboard/api/treasury/live").status_code == 405
    assert snap["treasury"]["spend"] == ledger_only["spend"] and snap["treasury"]["credits"] == ledger_only["credits"]
    assert snap["treasury"]["awaiting_approval"] == ledger_only["awaiting_approval"] != []
    assert [i["intent_id"] for i in snap["awaiting_approval"]] == ledger_only["awaiting_approval"]
    assert all(i["approve_command"] == f"butler treasury approve {i['intent_id']}" for i in snap["awaiting_approval"])
    assert first["wallet"] == live["wallet"] and first["wallet"]["usdc"] == "1250"
    assert first == second
    assert len(circle.requests_to("GET", "/balances")) == asked + 1  # the second answer came from the cache


def test_the_page_shows_the_treasury_and_no_approval_control(served: Served, browser: Any,
                                                             fakes: list[Any]) -> None:
    page = _open(browser, served)
    status = ok(call_tool("treasury_status", {"refresh": False}, served.ctx))
    for intent_id in status["awaiting_approval"]:
        text = page.inner_text(f"[data-intent={intent_id}]")
        assert f"butler treasury approve {intent_id}" in text
    for credit in status["credits"]:
        assert page.get_attribute(f"[data-credit={credit['provider']}] [data-field=remaining]", "data-value") == \
            credit["remaining"]
    assert "500.00 USDC" in page.inner_text("[data-cap=daily]")
    page.click("#treasury-refresh")
    page.wait_for_selector("[data-box=wallet] [data-field=usdc]")
    assert page.get_attribute("[data-box=wallet] [data-field=usdc]", "data-value") == "1250"
    # Reading only: no form or button on the page may approve, reject or execute anything.
    controls = page.eval_on_selector_all("form, button", "els => els.map(e => (e.action || '') + e.textContent)")
    assert not [c for c in controls if any(w in c.lower() for w in ("approve", "reject", "execute"))]
    assert page.errors == []
