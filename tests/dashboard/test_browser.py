"""The dashboard in a real headless Chromium (the system package, driven by Playwright; no browser download):
the page shows the ledger's figures number by number, redraws when usage is recorded, and draws its charts."""

from __future__ import annotations

from typing import Any

import pytest

from butler_skill.host.dispatch import call_tool
from butler_skill.store.dashboard_sessions import SESSION_PREFIX
from tests.dashboard.conftest import TOKEN, Served
from tests.dashboard.seed import ok

pytestmark = pytest.mark.slow


def _open(browser: Any, served: Served, width: int = 1280) -> Any:
    page = browser.new_page(viewport={"width": width, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(f"{served.base_url}/dashboard?token={TOKEN}")
    page.wait_for_selector("[data-card=used_today] [data-field=used_today]")
    page.errors = errors
    return page


def _value(page: Any, selector: str) -> str:
    return str(page.get_attribute(selector, "data-value"))


def _int_text(page: Any, selector: str) -> int:
    return int(page.inner_text(selector).replace(",", ""))


def test_the_page_shows_what_monitor_usage_reports(served: Served, browser: Any) -> None:
    page = _open(browser, served)
    assert "?token" not in page.url  # the token left the address bar
    usage = ok(call_tool("monitor_usage", {}, served.ctx))
    total = usage["total"]
    for field in ("total_capacity", "used_today", "reserved", "remaining"):
        selector = f"[data-card={field}] [data-field={field}]"
        assert int(_value(page, selector)) == total[field]
        assert _int_text(page, selector) == total[field]
    assert float(_value(page, "[data-card=cost_today] b")) == total["cost_today"]
    assert page.inner_text("[data-card=cost_today] b") == f"${total['cost_today']:.4f}"
    for provider, figures in usage["keys_by_provider"].items():
        card = f"[data-provider={provider}]"
        for field in ("used_today", "reserved", "remaining"):
            assert _int_text(page, f"{card} [data-field={field}]") == figures[field], (provider, field)
        assert int(_value(page, f"{card} [data-field=total_capacity]")) == figures["total_capacity"]
        assert float(_value(page, f"{card} [data-field=cost_today]")) == figures["cost_today"]
    keys = ok(call_tool("get_available_keys", {"min_tokens": 0}, served.ctx))["keys"]
    for key in keys:  # the keys still usable now; the resting ones carry a badge instead
        row = f"[data-key={key['key_id']}]"
        assert _int_text(page, f"{row} [data-field=used]") == key["used"]
        assert _int_text(page, f"{row} [data-field=remaining]") == key["remaining"]
    assert "resting until 14:30 UTC" in page.inner_text("[data-key=groq-main]")
    # The threshold tick sits at 75% of each bar.
    assert page.get_attribute("[data-key=openai-team] .tick", "style").startswith("left: calc(75%")
    status = ok(call_tool("get_status", {}, served.ctx))
    assert page.locator("[data-session]").count() == status["tokens"]["active_sessions"]
    assert page.locator("[data-alert]").count() == len(status["alerts"]) > 0
    assert page.locator("[data-rotation]").count() == len(status["rotation_history"])
    # The sub-task graph: one node per sub-task with its status and tokens, one edge per dependency.
    task_id = page.get_attribute("[data-task]", "data-task")
    aggregate = ok(call_tool("aggregate_task_results", {"task_id": task_id}, served.ctx))
    nodes = page.locator("[data-task] g.node")
    assert nodes.count() == aggregate["totalSubTasks"]
    for detail in aggregate["details"]:
        node = f"g.node[data-subtask={detail['subTaskId']}]"
        assert page.get_attribute(node, "data-status") == detail["status"]
        assert int(page.get_attribute(node, "data-tokens")) == detail["tokensUsed"]
    with served.client() as client:
        planned = client.get("/dashboard/api/snapshot").json()["tasks"][0]["subtasks"]
    assert page.locator("[data-task] path.edge").count() == sum(len(n["depends_on"]) for n in planned) == 4
    assert page.errors == []


def test_the_charts_draw_every_day_with_figures(served: Served, browser: Any) -> None:
    page = _open(browser, served)
    with served.client() as client:
        hist = client.get("/dashboard/api/history").json()
    for group in ("providers", "keys"):
        page.click(f"[data-group={group}]")
        for metric in ("tokens", "cost"):
            page.click(f"[data-metric={metric}]")
            page.wait_for_selector(f"#chart svg[data-metric={metric}][data-group={group}]")
            drawn = page.eval_on_selector_all(
                "#chart rect.seg-bar",
                "els => els.map(e => [e.dataset.day, e.dataset.series, Number(e.dataset.value)])")
            expected = [[day, name, series[metric][i]] for i, day in enumerate(hist["days"])
                        for name, series in hist[group].items() if series[metric][i] > 0]
            assert sorted(drawn) == sorted(expected), (group, metric)
            assert len(drawn) > 20
            heights = page.eval_on_selector_all("#chart rect.seg-bar", "els => els.map(e => e.getBBox().height)")
            assert all(h > 0 for h in heights)


def test_the_page_follows_recorded_usage(served: Served, browser: Any) -> None:
    page = _open(browser, served)
    page.wait_for_selector("#live:not(.off)")
    before = int(_value(page, "[data-card=used_today] [data-field=used_today]"))
    session = page.get_attribute("[data-session]", "data-session")
    ok(call_tool("record_usage", {"session_id": session, "request_id": "browser-live-1", "input_tokens": 1_234,
                                  "output_tokens": 766}, served.ctx))
    page.wait_for_function(
        "want => document.querySelector('[data-card=used_today] [data-field=used_today]').dataset.value == want",
        arg=str(before + 2_000), timeout=15_000)
    usage = ok(call_tool("monitor_usage", {}, served.ctx))
    assert _int_text(page, "[data-card=used_today] [data-field=used_today]") == usage["total"]["used_today"]
    assert page.errors == []


def test_a_phone_width_has_no_sideways_scroll(served: Served, browser: Any) -> None:
    page = _open(browser, served, width=390)
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0
    assert page.is_visible("[data-card=remaining]")


def test_without_a_token_the_browser_gets_the_login_form(served: Served, browser: Any) -> None:
    page = browser.new_page()
    page.goto(f"{served.base_url}/dashboard")
    assert page.is_visible("input[name=token]")
    page.fill("input[name=token]", "not-the-token")
    page.click("button[type=submit]")
    assert page.is_visible(".login-box.failed .error")
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_selector("[data-card=used_today] [data-field=used_today]")
    cookie = page.context.cookies()[0]
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert cookie["value"].startswith(SESSION_PREFIX) and TOKEN not in cookie["value"]  # a session, not the token
