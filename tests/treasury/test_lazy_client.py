"""TreasuryService.open builds its own HTTP client only when a request goes out: a status read with no wallet
or OpenRouter key set never pays for the TLS trust store; with keys set, the first request builds it."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from butler_skill.store.db import Database
from butler_skill.treasury.service import LazyClient, TreasuryService
from tests.conftest import Clock, Ids
from tests.servers.fake_circle import FakeCircle
from tests.treasury.conftest import START, make_env


def test_no_keys_no_client(tmp_path: Path) -> None:
    db = Database(tmp_path / "state.db")
    service = TreasuryService.open(db, {"HOME": str(tmp_path)}, clock=Clock(START), new_id=Ids())
    try:
        assert isinstance(service._owned_http, LazyClient)
        assert service.wallet().error == "CIRCLE_API_KEY is not set"
        service.credits()
        assert not service._owned_http.built
    finally:
        service.close()
        db.close()


def test_the_first_request_builds_the_client(tmp_path: Path, fake_circle: FakeCircle) -> None:
    db = Database(tmp_path / "state.db")
    service = TreasuryService.open(db, make_env(fake_circle, None), clock=Clock(START), new_id=Ids())
    try:
        lazy = service._owned_http
        assert isinstance(lazy, LazyClient) and not lazy.built
        assert service.wallet().usdc == Decimal("1000")
        assert lazy.built
        service.close()
        assert not lazy.built
    finally:
        service.close()
        db.close()
