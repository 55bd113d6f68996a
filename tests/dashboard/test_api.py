"""The dashboard's HTTP surface under a real uvicorn: sign-in, figures equal to the tools', ETags, CSV and the
event stream."""

from __future__ import annotations

import csv
import io
import json

from butler_skill.host.dispatch import call_tool
from butler_skill.store.reports import Reports
from tests.dashboard.conftest import TOKEN, Served
from tests.dashboard.seed import ok


def test_without_a_token_every_route_but_the_assets_is_refused(served: Served) -> None:
    with served.client(signed_in=False) as client:
        page = client.get("/dashboard")
        assert page.status_code == 401 and 'name="token"' in page.text and "support-bot" not in page.text
        for path in ("/dashboard/api/snapshot", "/dashboard/api/history", "/dashboard/api/history.csv",
                     "/dashboard/api/spend.csv", "/dashboard/api/events", "/dashboard/api/treasury/live"):
            r = client.get(path)
            assert r.status_code == 401, path
            assert r.json()["error"]["code"] == "unauthorized"
        assert client.get("/dashboard", params={"token": "wrong"}).status_code == 401
        # A bearer header is enough for scripts; a wrong one is not.
        assert client.get("/dashboard/api/snapshot", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert client.get("/dashboard/api/snapshot", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert client.get("/dashboard/static/dashboard.js").status_code == 200


def test_the_token_in_the_address_becomes_a_strict_httponly_cookie(served: Served) -> None:
    with served.client(signed_in=False) as client:
        r = client.get("/dashboard", params={"token": TOKEN}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/dashboard"
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/dashboard" in cookie
        page = client.get("/dashboard")
        assert page.status_code == 200 and "dashboard.js" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert client.get("/dashboard/api/snapshot").status_code == 200
        # The login form does the same.
        client.cookies.clear()
        form = client.post("/dashboard/login", content=f"token={TOKEN}",
                           headers={"Content-Type": "application/x-www-form-urlencoded"}, follow_redirects=False)
        assert form.status_code == 303 and "httponly" in form.headers["set-cookie"].lower()
        out = client.post("/dashboard/logout", follow_redirects=False)
        assert out.status_code == 303 and 'butler_dashboard=""' in out.headers["set-cookie"]


def test_today_equals_monitor_usage(served: Served) -> None:
    usage = ok(call_tool("monitor_usage", {}, served.ctx))
    keys = ok(call_tool("get_status", {}, served.ctx))
    with served.client() as client:
        snap = client.get("/dashboard/api/snapshot").json()
    assert snap["day"] == usage["day"]
    assert snap["providers"] == usage["keys_by_provider"]
    assert snap["total"] == usage["total"]
    assert snap["open_sessions"] == keys["tokens"]["active_sessions"]
    assert [a["alert_id"] for a in snap["alerts"]] == [a["alert_id"] for a in keys["alerts"]]
    assert [e["seq"] for e in snap["rotations"]][:10] == [e["seq"] for e in keys["rotation_history"]]
    by_key = {k["key_id"]: k for k in snap["keys"]}
    resting = [k for k in snap["keys"] if k["resting"]]
    assert {k["key_id"] for k in resting} == {"groq-main", "groq-spare"}  # the rate-limited account rests
    assert all(k["resting"] == "cooldown" and k["resting_reason"] == "rate_limit" for k in resting)
    for provider, figures in usage["keys_by_provider"].items():
        mine = [k for k in snap["keys"] if k["provider"] == provider]
        assert sum(k["used"] for k in mine) == figures["used_today"]
        assert sum(k["reserved"] for k in mine) == figures["reserved"]
        assert sum(k["capacity"] for k in mine) == figures["total_capacity"]
    assert by_key["openai-team"]["threshold"] == 225_000
    task = snap["tasks"][0]
    aggregate = ok(call_tool("aggregate_task_results", {"task_id": task["task_id"]}, served.ctx))
    assert task["total_tokens_used"] == aggregate["totalTokensUsed"]
    assert [n["status"] for n in task["subtasks"]] == [d["status"] for d in aggregate["details"]]
    assert [n["stage"] for n in task["subtasks"]] == [0, 0, 1, 2, 3]


def test_history_and_csv_hold_the_ledger_counters(served: Served) -> None:
    rows = Reports(served.ctx.db).history(served.clock())
    with served.client() as client:
        hist = client.get("/dashboard/api/history").json()
        text = client.get("/dashboard/api/history.csv").text
        spend = client.get("/dashboard/api/spend.csv").text
    assert len(hist["days"]) == 30 and hist["days"][-1] == "2026-11-24"
    assert sum(sum(s["tokens"]) for s in hist["keys"].values()) == sum(r.used for r in rows) > 0
    assert sum(sum(s["tokens"]) for s in hist["providers"].values()) == sum(r.used for r in rows)
    for r in rows:
        assert hist["keys"][r.key_id]["tokens"][hist["days"].index(r.day)] == r.used
    table = list(csv.DictReader(io.StringIO(text)))
    assert [(t["day"], t["key_id"], int(t["tokens_used"])) for t in table] == [(r.day, r.key_id, r.used) for r in rows]
    assert abs(sum(float(t["cost_usd"]) for t in table) - sum(r.cost for r in rows)) < 1e-5
    groups = {(t["group"], t["name"]) for t in csv.DictReader(io.StringIO(spend))}
    assert ("label", "support-bot") in groups and ("task", "Weekly market brief") in groups


def test_an_unchanged_snapshot_answers_304(served: Served) -> None:
    with served.client() as client:
        first = client.get("/dashboard/api/snapshot")
        again = client.get("/dashboard/api/snapshot", headers={"If-None-Match": first.headers["etag"]})
        assert again.status_code == 304
        session = first.json()["sessions"][0]["session_id"]
        ok(call_tool("record_usage", {"session_id": session, "request_id": "etag-1", "input_tokens": 10,
                                      "output_tokens": 5}, served.ctx))
        after = client.get("/dashboard/api/snapshot", headers={"If-None-Match": first.headers["etag"]})
        assert after.status_code == 200 and after.json()["total"]["used_today"] == \
            first.json()["total"]["used_today"] + 15


def test_the_event_stream_announces_recorded_usage(served: Served) -> None:
    with served.client() as client, client.stream("GET", "/dashboard/api/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        versions: list[str] = []
        for line in stream.iter_lines():
            if line.startswith("data:"):
                versions.append(json.loads(line[5:])["version"])
                if len(versions) == 1:
                    session = client.get("/dashboard/api/snapshot").json()["sessions"][0]["session_id"]
                    ok(call_tool("record_usage", {"session_id": session, "request_id": "sse-1",
                                                  "input_tokens": 100, "output_tokens": 20}, served.ctx))
                else:
                    break
    assert len(versions) == 2 and versions[0] != versions[1]


def test_an_empty_ledger_renders(served_empty: Served) -> None:
    with served_empty.client() as client:
        snap = client.get("/dashboard/api/snapshot").json()
        hist = client.get("/dashboard/api/history").json()
    assert snap["total"]["used_today"] == 0 and snap["sessions"] == [] and snap["tasks"] == []
    assert hist["keys"] == {} and len(hist["days"]) == 30
