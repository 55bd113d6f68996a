"""No page, asset, API response, CSV or event of the dashboard carries key material: the LLM keys of the keys
file, nor the treasury's Circle key, entity secret or OpenRouter management key (all live in this ledger's
environment while every route is read)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from butler_skill.gateway.dashboard import static_dir
from tests.dashboard.conftest import TOKEN, Served
from tests.dashboard.seed import SECRETS, seed_treasury
from tests.treasury.conftest import SECRETS as TREASURY_SECRETS


@pytest.fixture
def with_treasury(served: Served) -> Iterator[Served]:
    fakes = seed_treasury(served.ctx, served.folder)
    yield served
    for fake in fakes:
        fake.close()


def _fragments() -> list[str]:
    """Each secret whole, and a distinctive middle part of it (a truncated or masked echo still leaks)."""
    out: list[str] = []
    for secret in [*SECRETS.values(), *TREASURY_SECRETS]:
        out += [secret, secret[len(secret) // 3: len(secret) // 3 + 16]]
    return out


def test_no_route_carries_key_material(with_treasury: Served) -> None:
    bodies: dict[str, str] = {}
    with with_treasury.client(signed_in=False) as anonymous:
        bodies["login"] = anonymous.get("/dashboard").text
    with with_treasury.client() as client:
        for path in ("/dashboard", "/dashboard/api/snapshot", "/dashboard/api/history", "/dashboard/api/treasury/live",
                     "/dashboard/api/history.csv", "/dashboard/api/spend.csv"):
            r = client.get(path)
            assert r.status_code == 200, path
            bodies[path] = r.text + "\n" + "\n".join(f"{k}: {v}" for k, v in r.headers.items())
        for asset in sorted(p.name for p in static_dir().iterdir()):
            r = client.get(f"/dashboard/static/{asset}")
            assert r.status_code == 200, asset
            bodies[asset] = r.text
        with client.stream("GET", "/dashboard/api/events") as stream:
            lines = []
            for line in stream.iter_lines():
                lines.append(line)
                if line.startswith("data:"):
                    break
            bodies["events"] = "\n".join(lines)
    # The figures really are there (the treasury was asked live), so the check below reads real answers.
    assert "1250" in bodies["/dashboard/api/treasury/live"] and "groq-main" in bodies["/dashboard/api/snapshot"]
    leaks = [(name, fragment[:6]) for name, body in bodies.items() for fragment in _fragments() if fragment in body]
    assert leaks == []
    # The access token itself travels only in the cookie the browser sent, never back in a body.
    assert not any(TOKEN in body for name, body in bodies.items())
