"""The session's loopback guard (tests/conftest.py) sees every way a test could dial out: a name lookup, and a
connection either event loop opens itself (uvloop resolves in libuv, past `socket.getaddrinfo`; asyncio opens an
IP address without any lookup). Without the guard each case below fails differently (a DNS error for the
`.invalid` name, a connection attempt to the documentation address), never with the guard's message."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import pytest
import uvloop

from tests.conftest import GUARD_PROBE, GUARD_PROBE_ADDRESS

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    # Looked up at call time, as the runner does (`asyncio.Runner(loop_factory=uvloop.new_event_loop)`).
    "uvloop": lambda: uvloop.new_event_loop(),
}


def test_a_name_lookup_is_refused() -> None:
    with pytest.raises(OSError, match="tests may only use loopback"):
        socket.getaddrinfo(GUARD_PROBE, 443)


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_a_loop_connection_to_a_name_is_refused(loop_name: str) -> None:
    async def dial() -> None:
        await asyncio.get_running_loop().create_connection(asyncio.Protocol, GUARD_PROBE, 443)

    with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner, \
            pytest.raises(OSError, match="tests may only use loopback"):
        runner.run(dial())


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_a_loop_connection_to_an_address_is_refused(loop_name: str) -> None:
    """An IP address needs no lookup: asyncio opens it without calling `socket.getaddrinfo` at all."""

    async def dial() -> None:
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(loop.create_connection(asyncio.Protocol, GUARD_PROBE_ADDRESS, 443), 2)

    with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner, \
            pytest.raises(OSError, match="tests may only use loopback"):
        runner.run(dial())


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_a_loop_name_lookup_is_refused(loop_name: str) -> None:
    async def look_up() -> None:
        await asyncio.get_running_loop().getaddrinfo(GUARD_PROBE, 443)

    with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner, \
            pytest.raises(OSError, match="tests may only use loopback"):
        runner.run(look_up())


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_loopback_stays_open(loop_name: str) -> None:
    """The guard refuses only what leaves the machine: a loopback server still answers on both loops."""

    async def round_trip() -> bytes:
        got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        class Echo(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport

            def data_received(self, data: bytes) -> None:
                self.transport.write(data)  # type: ignore[attr-defined]

        class Client(asyncio.Protocol):
            def data_received(self, data: bytes) -> None:
                got.set_result(data)

        server = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport, _ = await asyncio.get_running_loop().create_connection(Client, "localhost", port)
        transport.write(b"ping")
        data = await asyncio.wait_for(got, 5)
        transport.close()
        server.close()
        await server.wait_closed()
        return data

    with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
        assert runner.run(round_trip()) == b"ping"
