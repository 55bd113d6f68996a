"""The adapters' HTTP interface on both clients: network failures the loopback fake cannot script (a refused
connection, a server that hangs up before answering, a stream that stalls half-way), the SSE line splitter, and
the proxy the environment names. Each case runs on httpx and on aiohttp (`fake_llm` is parametrized by client)."""

from __future__ import annotations

import asyncio
import itertools
import re
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from butler_skill.adapters.providers.base import ProviderFailure
from butler_skill.adapters.providers.http import LineSplitter, _proxy_for
from butler_skill.adapters.providers.openai_compat import OpenAICompatClient
from tests.adapters.conftest import loopback_http
from tests.servers.fake_llm import FakeLLM, Reply

KEY = "sk-proj-" + "Hb4Nq7Zs2Mw8Xt1Vc5Ld9Ke3Jp6Gr0Ua" + "T3BlbkFJ" + "Rf9Wq6Tx5Ui4Oz3Ap2"
MESSAGES = [{"role": "user", "content": "hello"}]


def call(base_url: str, **kw: Any) -> Any:
    async def go() -> Any:
        async with loopback_http() as http:
            return await OpenAICompatClient(http, base_url, KEY).complete("m", MESSAGES, 64, **kw)

    return asyncio.run(go())


def failure_of(base_url: str, **kw: Any) -> ProviderFailure:
    with pytest.raises(ProviderFailure) as info:
        call(base_url, **kw)
    assert KEY not in str(info.value) and KEY not in repr(info.value.to_payload())
    return info.value


@pytest.fixture
def refusing_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def hang_up() -> Iterator[str]:
    """A server that reads the request and closes the connection without a byte of answer."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.05)  # accept() wakes up to see `stop` (closing the socket does not wake it)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.recv(65536)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    finally:
        stop.set()
        listener.close()
        thread.join(timeout=5)


@pytest.mark.parametrize("stream", [False, True])
def test_refused_connection_is_a_server_failure(fake_llm: FakeLLM, refusing_port: int, stream: bool) -> None:
    failure = failure_of(f"http://127.0.0.1:{refusing_port}/v1", stream=stream)
    assert failure.kind == "server" and "connection failed" in failure.message


@pytest.mark.parametrize("stream", [False, True])
def test_hang_up_before_any_answer_is_a_server_failure(fake_llm: FakeLLM, hang_up: str, stream: bool) -> None:
    failure = failure_of(hang_up, stream=stream)
    assert failure.kind == "server" and "connection failed" in failure.message


def test_stream_that_stalls_half_way_returns_the_text_so_far(fake_llm: FakeLLM) -> None:
    # Events 0.3 s apart: a comment, the role chunk, then six 4-character pieces (the first at 0.9 s, the last at
    # 2.4 s); the call gives up after 1.5 s, with two or three pieces.
    text = "abcdefghijklmnopqrstuvwx"
    fake_llm.script(Reply(text=text, chunk_chars=4, chunk_delay_s=0.3))
    result = call(fake_llm.base_url, stream=True, timeout_s=1.5)
    assert result.interrupted and result.interruption == "timeout"
    assert result.text and text.startswith(result.text) and result.text != text
    assert result.usage.estimated and result.usage.output_tokens == 64


def test_a_stalled_answer_times_out_and_the_next_call_works(fake_llm: FakeLLM) -> None:
    fake_llm.script(Reply(delay_s=2.0), Reply(text="second"))

    async def go() -> tuple[str, str]:
        async with loopback_http() as http:
            client = OpenAICompatClient(http, fake_llm.base_url, KEY)
            try:
                await client.complete("m", MESSAGES, 16, timeout_s=0.3)
                first = "answered"
            except ProviderFailure as failure:
                first = failure.kind
            return first, (await client.complete("m", MESSAGES, 16, timeout_s=10)).text

    assert asyncio.run(go()) == ("timeout", "second")


# ---- SSE lines --------------------------------------------------------------------------------------------
_PIECE = st.sampled_from(["data: x", "é", "€", "\n", "\r\n", "\r", "", ":c", "event: e", " ", "\u2028", "\x0c"])


def sse_lines(text: str) -> list[str]:
    """The SSE format's lines of a whole text: \r\n, \r and \n end a line; a last line may lack its ending."""
    lines = re.split(r"\r\n|\r|\n", text)
    return lines[:-1] if lines[-1] == "" else lines


@given(pieces=st.lists(_PIECE, max_size=30), cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=8))
def test_line_splitter_is_independent_of_chunk_boundaries(pieces: list[str], cuts: list[int]) -> None:
    text = "".join(pieces)
    raw = text.encode()
    bounds = sorted({min(c, len(raw)) for c in cuts} | {0, len(raw)})
    splitter = LineSplitter()
    lines: list[str] = []
    for a, b in itertools.pairwise(bounds):
        lines += splitter.feed(raw[a:b])  # cuts may fall inside a UTF-8 character or between \r and \n
    assert lines + splitter.end() == sse_lines(text)


def test_line_splitter_replaces_invalid_utf8_and_keeps_a_last_unterminated_line() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"data: a\xff\r") == []
    assert splitter.feed(b"\ndata: b") == ["data: a\ufffd"]
    assert splitter.end() == ["data: b"]


# ---- proxies ----------------------------------------------------------------------------------------------
def test_proxy_from_the_environment_and_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                 "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert _proxy_for("https://api.openai.com/v1/chat/completions") is None
    monkeypatch.setenv("HTTPS_PROXY", "proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "api.groq.com")
    assert _proxy_for("https://api.openai.com/v1/chat/completions") == "http://proxy.internal:3128"
    assert _proxy_for("https://api.groq.com/openai/v1/chat/completions") is None
    assert _proxy_for("http://127.0.0.1:9/v1") is None  # HTTPS_PROXY only covers https
