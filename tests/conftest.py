"""Shared fixtures: a keys file, a ledger in a temporary folder, and a clock the test controls."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from butler_skill.host.context import Context

REPO = Path(__file__).resolve().parent.parent


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> datetime:
        self.now += timedelta(**kw)
        return self.now


class Ids:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}_{self.n:06d}"


SMALL_KEYS: list[dict[str, Any]] = [
    {"id": "alpha-1", "provider": "groq", "scope": "acct-a", "key_env": "TEST_GROQ_KEY_1",
     "price_in_per_m": 0.05, "price_out_per_m": 0.08, "limits": {"tokens_per_day": 10_000}},
    {"id": "alpha-2", "provider": "groq", "scope": "acct-a", "key_env": "TEST_GROQ_KEY_2",
     "price_in_per_m": 0.05, "price_out_per_m": 0.08, "limits": {"tokens_per_day": 10_000}},
    {"id": "beta-1", "provider": "openai", "scope": "acct-b", "key_env": "TEST_OPENAI_KEY",
     "limits": {"tokens_per_day": 20_000}},
]
# Realistic-looking secrets (random, not real): tests assert none of them ever leaves Butler.
SECRETS = {
    "TEST_GROQ_KEY_1": "gsk_" + "Qm7t2ZkP9xR4vW1yB8nC3dF6hJ0sL5aE" + "u2Vq9Kp4Xw7Zr1Ty",
    "TEST_GROQ_KEY_2": "gsk_" + "Ha3Jk8Lm2Np6Qr0St4Uv9Wx1Yz5Ab7Cd" + "e3Fg8Hi2Jk6Lm0No",
    "TEST_OPENAI_KEY": "sk-proj-" + "Zx9Cv8Bn7Mm6Ll5Kk4Jj3Hh2Gg1Ff0Dd" + "T3BlbkFJ" + "Ss9Aa8Qq7Ww6Ee5Rr4Tt3",
}


def write_keys(path: Path, keys: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"keys": keys}), "utf-8")
    path.chmod(0o600)
    return path


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 11, 24, 9, 30, tzinfo=UTC))


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    return write_keys(tmp_path / "api-keys.json", SMALL_KEYS)


@pytest.fixture
def env(tmp_path: Path, keys_file: Path) -> dict[str, str]:
    return {"HOME": str(tmp_path), "PATH": os.environ.get("PATH", ""), **SECRETS,
            "BUTLER_KEYS_PATH": str(keys_file), "BUTLER_STATE_PATH": str(tmp_path / "state.db")}


@pytest.fixture
def ctx(env: dict[str, str], clock: Clock) -> Iterator[Context]:
    context = Context(env=env, clock=clock, ids=Ids())
    yield context
    context.close()


_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "demo.butler.invalid"}


# A name no test may reach, which the guard refuses without counting it: tests/test_loopback_guard.py dials it to
# show that the guard sees every way out (name lookups, and connections the event loops open themselves).
GUARD_PROBE = "guard-probe.invalid"
GUARD_PROBE_ADDRESS = "192.0.2.1"  # TEST-NET-1 (RFC 5737): documentation only, never routed


@pytest.fixture(autouse=True, scope="session")
def _only_loopback() -> Iterator[None]:
    """Tests talk to servers they start on loopback, never to a public host: refuse any other name lookup
    in the test process, so a key that still points at a real provider fails loudly instead of dialling out.
    uvloop resolves names and opens connections in libuv, past `socket.getaddrinfo`, and asyncio opens an IP
    address without a lookup: both loops' `create_connection` (and uvloop's `getaddrinfo`) are checked too."""
    import asyncio
    import socket

    import uvloop

    real = socket.getaddrinfo
    refused: list[str] = []

    def check(host: Any) -> None:
        if host is None:
            return  # a connection over a socket the caller made: its lookup went through socket.getaddrinfo
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in _LOOPBACK_NAMES and not name.startswith("127."):
            if name not in (GUARD_PROBE, GUARD_PROBE_ADDRESS):
                refused.append(name)
            raise OSError(f"test tried to reach {name!r}: tests may only use loopback")

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        check(host)
        return real(host, *args, **kwargs)

    base = asyncio.base_events.BaseEventLoop
    real_connect = base.create_connection

    async def connect(self: Any, protocol_factory: Any, host: Any = None, *args: Any, **kwargs: Any) -> Any:
        check(host)
        return await real_connect(self, protocol_factory, host, *args, **kwargs)

    class GuardedUvloop(uvloop.Loop):  # type: ignore[misc]
        async def create_connection(self, protocol_factory: Any, host: Any = None, *args: Any,
                                    **kwargs: Any) -> Any:
            check(host)
            return await super().create_connection(protocol_factory, host, *args, **kwargs)

        async def getaddrinfo(self, host: Any, *args: Any, **kwargs: Any) -> Any:
            check(host)
            return await super().getaddrinfo(host, *args, **kwargs)

    real_new_loop = uvloop.new_event_loop
    socket.getaddrinfo = guarded
    base.create_connection = connect  # type: ignore[method-assign]
    uvloop.new_event_loop = GuardedUvloop
    yield
    socket.getaddrinfo = real
    base.create_connection = real_connect  # type: ignore[method-assign]
    uvloop.new_event_loop = real_new_loop
    # Code under test may swallow the error as a provider failure: report the attempt anyway.
    assert not refused, f"tests tried to reach non-loopback hosts: {sorted(set(refused))}"


# Tests check behaviour, never wall-clock time: Hypothesis's per-example deadline fails a property test when the
# shared 2-core machine is busy (a 0.2 ms example once took 413 ms), so no deadline.
try:
    from hypothesis import settings as _hypothesis_settings

    _hypothesis_settings.register_profile("butler", deadline=None)
    # CI explores a fixed sequence of examples (derandomized), so a submission cannot pass or fail by the luck of a
    # seed; local runs keep drawing new examples, and what they find becomes an explicit regression test.
    _hypothesis_settings.register_profile("butler-ci", deadline=None, derandomize=True)
    _hypothesis_settings.load_profile("butler-ci" if os.environ.get("CI", "").lower() == "true" else "butler")
except ImportError:  # pragma: no cover - hypothesis is a test dependency
    pass
