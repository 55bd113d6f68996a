"""The Circle adapter against a real HTTP server on loopback speaking Circle's wire format."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from butler_skill.adapters.circle import (
    CircleClient,
    CircleRejected,
    TransferAttemptsExhausted,
    entity_secret_bytes,
    network_of,
    transfer_body,
)
from butler_skill.errors import ConfigError, Conflict
from tests.servers.fake_circle import FakeCircle
from tests.treasury.conftest import CIRCLE_API_KEY, ENTITY_SECRET, OR_DEST, TOKEN_ID, WALLET_ID, http_client


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(fake_circle: FakeCircle, sleeps: list[float]) -> Iterator[CircleClient]:
    with http_client(0.5) as http:
        yield CircleClient(http, api_key=CIRCLE_API_KEY, entity_secret=ENTITY_SECRET, base_url=fake_circle.base_url,
                           sleep=sleeps.append)


def body(amount: str = "12.5", key: str | None = None, ref: str = "topup_1") -> dict[str, Any]:
    return transfer_body(idempotency_key=key or str(uuid.uuid4()), wallet_id=WALLET_ID, destination_address=OR_DEST,
                         amount=amount, ref_id=ref, token_id=TOKEN_ID)


def test_balances_are_exact_decimals(client: CircleClient, fake_circle: FakeCircle) -> None:
    fake_circle.usdc = Decimal("1000.123456")
    balances = {b.symbol: b for b in client.wallet_balances(WALLET_ID)}
    assert balances["USDC"].amount == Decimal("1000.123456") and isinstance(balances["USDC"].amount, Decimal)
    assert balances["USDC"].token_id == TOKEN_ID and balances["ETH"].is_native


def test_network_from_key_prefix() -> None:
    assert network_of(CIRCLE_API_KEY) == "testnet"
    assert network_of("LIVE_API_KEY:" + "a" * 32 + ":" + "b" * 32) == "mainnet"
    assert network_of("SAND_API_KEY:x") == "unknown" and network_of(None) == "unknown"


def test_entity_secret_shape_is_checked_without_echo() -> None:
    assert len(entity_secret_bytes(ENTITY_SECRET)) == 32
    for bad in ("zz" * 32, ENTITY_SECRET[:-2], ENTITY_SECRET + "00"):
        with pytest.raises(ConfigError) as info:
            entity_secret_bytes(bad)
        assert bad not in info.value.message


def test_transfer_ciphertext_is_fresh_and_decrypts(client: CircleClient, fake_circle: FakeCircle) -> None:
    acks = [client.send_transfer(body()) for _ in range(3)]
    assert len({a.id for a in acks}) == 3 and all(a.state == "INITIATED" for a in acks)
    assert fake_circle.ciphertext_errors == []
    assert len(fake_circle.ciphertexts) == len(set(fake_circle.ciphertexts)) == 3
    # Circle's public key is fetched once per process, not per request
    assert len(fake_circle.requests_to("GET", "/config/entity/publicKey")) == 1


def test_wrong_entity_secret_is_refused(fake_circle: FakeCircle) -> None:
    with http_client() as http:
        other = CircleClient(http, api_key=CIRCLE_API_KEY, entity_secret="11" * 32, base_url=fake_circle.base_url)
        with pytest.raises(CircleRejected) as info:
            other.send_transfer(body())
    assert info.value.status == 400
    assert fake_circle.ciphertext_errors == ["entitySecretCiphertext holds another secret"]
    assert fake_circle.transfer_count == 0


def test_same_key_same_answer_different_body_conflict(client: CircleClient, fake_circle: FakeCircle) -> None:
    b = body()
    first, again = client.send_transfer(b), client.send_transfer(b)
    assert first.id == again.id and fake_circle.transfer_count == 1
    with pytest.raises(Conflict):
        client.send_transfer({**b, "amounts": ["13"]})
    assert fake_circle.transfer_count == 1


def test_429_is_retried_after_retry_after(client: CircleClient, fake_circle: FakeCircle, sleeps: list[float]) -> None:
    fake_circle.fault_transfer("status", status=429, retry_after="2")
    ack = client.send_transfer(body())
    assert ack.attempts == 2 and sleeps == [2.0]
    assert fake_circle.transfer_count == 1


@pytest.mark.parametrize("when", ["before", "after"])
def test_5xx_is_retried_with_the_same_key(client: CircleClient, fake_circle: FakeCircle, when: str) -> None:
    fake_circle.fault_transfer("status", status=503, when=when)
    b = body()
    ack = client.send_transfer(b)
    assert ack.attempts == 2 and fake_circle.transfer_count == 1
    keys = {r.body["idempotencyKey"] for r in fake_circle.transfer_posts()}
    assert keys == {b["idempotencyKey"]}


@pytest.mark.parametrize("kind", ["drop", "delay"])
def test_lost_response_after_transfer_reuses_the_key(client: CircleClient, fake_circle: FakeCircle, kind: str) -> None:
    fake_circle.fault_transfer(kind, when="after", seconds=3.0)
    b = body()
    ack = client.send_transfer(b)
    assert ack.attempts == 2
    assert fake_circle.transfer_count == 1
    assert fake_circle.transfers_for("topup_1")[0].id == ack.id  # the replay answered with the original
    posts = fake_circle.transfer_posts()
    assert len(posts) == 2 and {p.body["idempotencyKey"] for p in posts} == {b["idempotencyKey"]}
    assert posts[0].body["entitySecretCiphertext"] != posts[1].body["entitySecretCiphertext"]


def test_every_attempt_lost_is_ambiguous(client: CircleClient, fake_circle: FakeCircle) -> None:
    for _ in range(3):
        fake_circle.fault_transfer("drop", when="after")
    with pytest.raises(TransferAttemptsExhausted) as info:
        client.send_transfer(body(), attempts=3)
    assert info.value.maybe_received and fake_circle.transfer_count == 1


def test_every_attempt_rate_limited_never_reached(client: CircleClient, fake_circle: FakeCircle) -> None:
    for _ in range(3):
        fake_circle.fault_transfer("status", status=429, retry_after="0")
    with pytest.raises(TransferAttemptsExhausted) as info:
        client.send_transfer(body(), attempts=3)
    assert not info.value.maybe_received and fake_circle.transfer_count == 0


def test_refusal_after_an_ambiguous_attempt_stays_ambiguous(client: CircleClient, fake_circle: FakeCircle) -> None:
    fake_circle.fault_transfer("status", status=500, when="before")
    fake_circle.fault_transfer("status", status=400, when="before")
    with pytest.raises(TransferAttemptsExhausted) as info:
        client.send_transfer(body(), attempts=3)
    assert info.value.maybe_received


def test_first_refusal_is_definite(client: CircleClient, fake_circle: FakeCircle) -> None:
    bad = {**body(), "walletId": "someone-else"}
    with pytest.raises(CircleRejected) as info:
        client.send_transfer(bad)
    assert info.value.status == 404 and info.value.circle_code == 156001
    assert not info.value.maybe_received


def test_transaction_lookup_and_final_state(client: CircleClient, fake_circle: FakeCircle) -> None:
    fake_circle.polls_to_final = 2
    ack = client.send_transfer(body(ref="topup_9"))
    first = client.get_transaction(ack.id)
    assert first.state == "SENT" and not first.final
    final = client.get_transaction(ack.id)
    assert final.state == "COMPLETE" and final.final and final.amount == Decimal("12.5")
    assert final.network_fee == Decimal("0.000021") and final.ref_id == "topup_9"
    (listed,) = client.list_transactions(ref_id="topup_9", wallet_id=WALLET_ID)
    assert listed.id == ack.id
    assert client.list_transactions(ref_id="topup_missing", wallet_id=WALLET_ID) == []
    with pytest.raises(CircleRejected) as info:
        client.get_transaction(str(uuid.uuid4()))
    assert info.value.status == 404


def test_list_filters_ref_locally_when_server_ignores_it(client: CircleClient, fake_circle: FakeCircle) -> None:
    client.send_transfer(body(ref="topup_a"))
    client.send_transfer(body(ref="topup_b"))
    fake_circle.list_ignores_ref_filter = True
    assert [t.ref_id for t in client.list_transactions(ref_id="topup_b")] == ["topup_b"]


def test_get_retries_429_and_5xx(client: CircleClient, fake_circle: FakeCircle, sleeps: list[float]) -> None:
    fake_circle.add_fault("status", status=429, retry_after="1", match="/balances")
    fake_circle.add_fault("status", status=502, match="/balances")
    assert client.wallet_balances(WALLET_ID)
    assert sleeps[0] == 1.0 and len(sleeps) == 2


def test_no_key_in_logs_or_errors(fake_circle: FakeCircle, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with http_client() as http:
        good = CircleClient(http, api_key=CIRCLE_API_KEY, entity_secret=ENTITY_SECRET, base_url=fake_circle.base_url,
                            sleep=lambda s: None)
        fake_circle.fault_transfer("status", status=500)
        good.send_transfer(body())
        bad = CircleClient(http, api_key=CIRCLE_API_KEY[:-1] + "0", base_url=fake_circle.base_url)
        with pytest.raises(CircleRejected) as info:
            bad.wallet_balances(WALLET_ID)
    assert info.value.status == 401
    text = caplog.text + str(info.value) + repr(info.value.details) + repr(good) + repr(bad)
    for secret in (CIRCLE_API_KEY, CIRCLE_API_KEY[:-1] + "0", ENTITY_SECRET, CIRCLE_API_KEY.split(":")[1]):
        assert secret not in text
