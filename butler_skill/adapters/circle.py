"""Circle developer-controlled wallets over HTTP: balances, transfers, transaction lookups.

Speaks the wire format and nothing else: no policy. Facts it relies on (FIELD_NOTES §4):
- `Authorization: Bearer <key>`; a `TEST_API_KEY:` key is testnet, `LIVE_API_KEY:` mainnet.
- Amounts are decimal strings: parsed as `Decimal`, never float.
- A transfer carries an `idempotencyKey` (UUID v4): the same key returns the original answer, so after a
  lost response the same key is sent again, never a new one. Each request carries a fresh
  `entitySecretCiphertext` (RSA-OAEP SHA-256 of the 32-byte entity secret with Circle's public key).
- Errors are `{"code": <int>, "message": "..."}`; 429 above 5 requests/s (20 for GETs).

The client takes an injected `httpx.Client`. Nothing here logs or raises a header, a key or a ciphertext.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pydantic import BaseModel, ConfigDict

from butler_skill.adapters.wallet_facts import CIRCLE_BASE_URL as DEFAULT_BASE_URL
from butler_skill.adapters.wallet_facts import Network as Network
from butler_skill.adapters.wallet_facts import TokenBalance as TokenBalance
from butler_skill.adapters.wallet_facts import entity_secret_bytes as entity_secret_bytes
from butler_skill.adapters.wallet_facts import network_of as network_of
from butler_skill.errors import ConfigError, Conflict, ProviderError

log = logging.getLogger("butler.adapters.circle")

FINAL_STATES = frozenset({"COMPLETE", "FAILED", "CANCELLED", "DENIED"})
FEE_LEVELS = ("LOW", "MEDIUM", "HIGH")
MAX_MESSAGE = 200
MAX_RETRY_AFTER_S = 30.0

# ---- errors ----------------------------------------------------------------------------------------
class CircleError(ProviderError):
    """Circle answered with an error or not at all. `details` carry status, Circle's code, and whether the
    request may have reached Circle (`maybe_received`): for a transfer that decides unknown vs failed."""

    def __init__(self, message: str, *, status: int | None, circle_code: int | None, retryable: bool,
                 maybe_received: bool, retry_after: float | None = None) -> None:
        super().__init__(message, provider="circle", status=status, circle_code=circle_code,
                         retryable=retryable, maybe_received=maybe_received)
        self.status = status
        self.circle_code = circle_code
        self.retryable = retryable
        self.maybe_received = maybe_received
        self.retry_after = retry_after


class CircleUnavailable(CircleError):
    """429, 5xx, a timeout or a dropped connection: the same request (same key) may be tried again."""


class CircleRejected(CircleError):
    """A 4xx: Circle refused the request as sent."""


class TransferAttemptsExhausted(CircleError):
    """Every attempt of a transfer failed without a definite answer."""


# ---- wire models -----------------------------------------------------------------------------------
class TransferAck(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    state: str
    attempts: int = 1


class CircleTransaction(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    state: str
    ref_id: str | None = None
    wallet_id: str | None = None
    destination_address: str | None = None
    amounts: tuple[Decimal, ...] = ()
    blockchain: str | None = None
    network_fee: Decimal | None = None
    tx_hash: str | None = None
    transaction_type: str | None = None
    error_reason: str | None = None
    create_date: str | None = None

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def amount(self) -> Decimal | None:
        return sum(self.amounts, Decimal("0")) if self.amounts else None


def transfer_body(*, idempotency_key: str, wallet_id: str, destination_address: str, amount: str, ref_id: str,
                  fee_level: str = "MEDIUM", token_id: str | None = None, blockchain: str | None = None,
                  token_address: str | None = None) -> dict[str, Any]:
    """The JSON body of a transfer, without `entitySecretCiphertext` (added fresh on each attempt)."""
    if fee_level not in FEE_LEVELS:
        raise ConfigError(f"fee level must be one of {', '.join(FEE_LEVELS)}")
    body: dict[str, Any] = {"idempotencyKey": idempotency_key, "walletId": wallet_id,
                            "destinationAddress": destination_address, "amounts": [amount],
                            "feeLevel": fee_level, "refId": ref_id}
    if token_id:
        body["tokenId"] = token_id
    elif blockchain and token_address:
        body["blockchain"] = blockchain
        body["tokenAddress"] = token_address
    else:
        raise ConfigError("the USDC token is not configured: set circle.token_id, or circle.blockchain and "
                          "circle.token_address, in the treasury policy file")
    return body


# ---- client ----------------------------------------------------------------------------------------
_PUBLIC_KEYS: dict[str, rsa.RSAPublicKey] = {}
_PUBLIC_KEYS_LOCK = threading.Lock()


class CircleClient:
    def __init__(self, http: httpx.Client, *, api_key: str, entity_secret: str | None = None,
                 base_url: str = DEFAULT_BASE_URL, sleep: Callable[[float], None] = time.sleep,
                 get_attempts: int = 3) -> None:
        if not api_key:
            raise ConfigError("CIRCLE_API_KEY is not set")
        self._http = http
        self._api_key = api_key
        self._secret = entity_secret_bytes(entity_secret) if entity_secret else None
        self.base_url = base_url.rstrip("/")
        self._sleep = sleep
        self._get_attempts = max(1, get_attempts)
        self._cache_key = f"{self.base_url}#{hashlib.sha256(api_key.encode()).hexdigest()[:16]}"

    def __repr__(self) -> str:  # never the key
        return f"CircleClient(base_url={self.base_url!r}, network={self.network!r})"

    @property
    def network(self) -> Network:
        return network_of(self._api_key)

    # -- requests --
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"}

    def _request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                 body: dict[str, Any] | None = None) -> dict[str, Any]:
        """One HTTP exchange. Raises CircleUnavailable / CircleRejected / Conflict; returns the parsed JSON."""
        url = self.base_url + path
        try:
            resp = self._http.request(method, url, params=params, json=body, headers=self._headers())
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise CircleUnavailable(f"Circle unreachable ({type(exc).__name__}) on {method} {path}",
                                    status=None, circle_code=None, retryable=True, maybe_received=False) from None
        except httpx.TransportError as exc:
            # Sent, then the answer was lost (timeout, dropped connection): Circle may have acted on it.
            raise CircleUnavailable(f"no answer from Circle ({type(exc).__name__}) on {method} {path}",
                                    status=None, circle_code=None, retryable=True, maybe_received=True) from None
        payload = self._json(resp)
        if resp.status_code < 400:
            return payload
        code = payload.get("code") if isinstance(payload.get("code"), int) else None
        message = self._clean(str(payload.get("message") or resp.reason_phrase or "error"))
        text = f"Circle answered {resp.status_code} on {method} {path}: {message}"
        if resp.status_code == 429:
            raise CircleUnavailable(text, status=429, circle_code=code, retryable=True, maybe_received=False,
                                    retry_after=_retry_after(resp))
        if resp.status_code >= 500:
            raise CircleUnavailable(text, status=resp.status_code, circle_code=code, retryable=True,
                                    maybe_received=True, retry_after=_retry_after(resp))
        if resp.status_code == 409:
            raise Conflict(text, provider="circle", status=409, circle_code=code)
        raise CircleRejected(text, status=resp.status_code, circle_code=code, retryable=False,
                             maybe_received=False)

    def _json(self, resp: httpx.Response) -> dict[str, Any]:
        if not resp.content:
            return {}
        try:
            data = json.loads(resp.content, parse_float=Decimal)
        except (ValueError, UnicodeDecodeError):
            if resp.status_code < 400:
                raise ProviderError(f"Circle sent a non-JSON answer ({resp.status_code})", provider="circle",
                                    status=resp.status_code) from None
            return {}
        return data if isinstance(data, dict) else {}

    def _clean(self, text: str) -> str:
        for secret in (self._api_key, self._secret.hex() if self._secret else None):
            if secret and secret in text:
                text = text.replace(secret, "[REDACTED]")
        return text[:MAX_MESSAGE]

    def _pause(self, attempt: int, retry_after: float | None) -> None:
        delay = retry_after if retry_after is not None else min(4.0, 0.25 * (2 ** attempt))
        self._sleep(min(max(delay, 0.0), MAX_RETRY_AFTER_S))

    def _get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        """GETs are safe to repeat: retried on 429, 5xx and lost answers."""
        for attempt in range(self._get_attempts):
            try:
                return self._request("GET", path, params=params)
            except CircleUnavailable as exc:
                if attempt + 1 >= self._get_attempts:
                    raise
                log.info("retrying GET %s after %s", path, exc.status or "a transport error")
                self._pause(attempt, exc.retry_after)
        raise AssertionError("unreachable")

    # -- entity secret --
    def public_key(self) -> rsa.RSAPublicKey:
        """Circle's RSA public key for this account, fetched once per process."""
        with _PUBLIC_KEYS_LOCK:
            cached = _PUBLIC_KEYS.get(self._cache_key)
        if cached is not None:
            return cached
        data = self._get("/v1/w3s/config/entity/publicKey").get("data") or {}
        pem = data.get("publicKey")
        if not isinstance(pem, str):
            raise ProviderError("Circle's entity public key answer has no data.publicKey", provider="circle")
        try:
            key = serialization.load_pem_public_key(pem.encode())
        except ValueError:
            raise ProviderError("Circle's entity public key is not a PEM public key", provider="circle") from None
        if not isinstance(key, rsa.RSAPublicKey):
            raise ProviderError("Circle's entity public key is not an RSA key", provider="circle")
        with _PUBLIC_KEYS_LOCK:
            _PUBLIC_KEYS[self._cache_key] = key
        return key

    def entity_secret_ciphertext(self) -> str:
        """A fresh ciphertext (OAEP's random padding makes every one different)."""
        if self._secret is None:
            raise ConfigError("CIRCLE_ENTITY_SECRET is not set: transfers need it")
        ciphertext = self.public_key().encrypt(
            self._secret,
            padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
        )
        return base64.b64encode(ciphertext).decode("ascii")

    # -- endpoints --
    def wallet_balances(self, wallet_id: str) -> list[TokenBalance]:
        data = self._get(f"/v1/w3s/wallets/{_segment(wallet_id)}/balances").get("data") or {}
        out: list[TokenBalance] = []
        for item in data.get("tokenBalances") or []:
            token = item.get("token") or {}
            out.append(TokenBalance(
                symbol=str(token.get("symbol") or ""), blockchain=token.get("blockchain"),
                token_id=token.get("id"), token_address=token.get("tokenAddress"),
                is_native=bool(token.get("isNative", False)), amount=_decimal(item.get("amount"), "amount"),
                update_date=item.get("updateDate"),
            ))
        return out

    def create_transfer(self, body: dict[str, Any]) -> TransferAck:
        """One attempt of `POST /v1/w3s/developer/transactions/transfer` with a fresh ciphertext."""
        if "entitySecretCiphertext" in body:
            raise ValueError("pass the body without a ciphertext; a fresh one is added per request")
        sent = {**body, "entitySecretCiphertext": self.entity_secret_ciphertext()}
        data = self._request("POST", "/v1/w3s/developer/transactions/transfer", body=sent).get("data") or {}
        if not data.get("id"):
            raise CircleUnavailable("Circle accepted the transfer without a transaction id", status=None,
                                    circle_code=None, retryable=True, maybe_received=True)
        return TransferAck(id=str(data["id"]), state=str(data.get("state") or "INITIATED"))

    def send_transfer(self, body: dict[str, Any], *, attempts: int = 4,
                      on_attempt: Callable[[int], None] | None = None) -> TransferAck:
        """The transfer with retries, always with the same body and idempotency key.

        Raises CircleRejected when the first attempt is refused (nothing was created), Conflict when Circle
        says the key was used with another body, and TransferAttemptsExhausted (with `maybe_received`) when
        no attempt got a definite answer. A refusal after an ambiguous attempt is reported as exhausted and
        ambiguous: the earlier attempt may have gone through.
        """
        maybe_received = False
        last: CircleError | None = None
        for attempt in range(max(1, attempts)):
            if on_attempt is not None:
                on_attempt(attempt + 1)
            try:
                ack = self.create_transfer(body)
                return ack.model_copy(update={"attempts": attempt + 1})
            except CircleUnavailable as exc:
                maybe_received = maybe_received or exc.maybe_received
                last = exc
                log.info("transfer attempt %d got no definite answer (%s); same key next",
                         attempt + 1, exc.status or "transport")
                if attempt + 1 < attempts:
                    self._pause(attempt, exc.retry_after)
            except CircleRejected as exc:
                if not maybe_received:
                    raise
                last = exc
                break
        raise TransferAttemptsExhausted(
            f"transfer not confirmed after {attempt + 1} attempts: {last.message if last else 'no answer'}",
            status=last.status if last else None, circle_code=last.circle_code if last else None,
            retryable=False, maybe_received=maybe_received,
        )

    def get_transaction(self, tx_id: str) -> CircleTransaction:
        data = self._get(f"/v1/w3s/transactions/{_segment(tx_id)}").get("data") or {}
        tx = data.get("transaction")
        if not isinstance(tx, dict):
            raise ProviderError("Circle's transaction answer has no data.transaction", provider="circle")
        return _transaction(tx)

    def list_transactions(self, *, ref_id: str | None = None, wallet_id: str | None = None,
                          destination_address: str | None = None, since: str | None = None,
                          page_size: int = 50) -> list[CircleTransaction]:
        params: dict[str, str] = {"pageSize": str(page_size)}
        if ref_id:
            params["refId"] = ref_id
        if wallet_id:
            params["walletIds"] = wallet_id
        if destination_address:
            params["destinationAddress"] = destination_address
        if since:
            params["from"] = since
        data = self._get("/v1/w3s/transactions", params).get("data") or {}
        found = [_transaction(t) for t in data.get("transactions") or [] if isinstance(t, dict)]
        # Filter again locally: a server that ignores a filter must not hand us someone else's transfer.
        if ref_id:
            found = [t for t in found if t.ref_id == ref_id]
        return found


def _segment(value: str) -> str:
    if not value or "/" in value or "?" in value or "#" in value:
        raise ConfigError("a Circle id must be a single path segment")
    return value


def _decimal(value: Any, name: str) -> Decimal:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ProviderError(f"Circle sent a non-decimal {name}", provider="circle") from None


def _retry_after(resp: httpx.Response) -> float | None:
    raw = resp.headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None


def _transaction(tx: dict[str, Any]) -> CircleTransaction:
    fee = tx.get("networkFee")
    return CircleTransaction(
        id=str(tx.get("id") or ""), state=str(tx.get("state") or ""), ref_id=tx.get("refId"),
        wallet_id=tx.get("walletId"), destination_address=tx.get("destinationAddress"),
        amounts=tuple(_decimal(a, "amount") for a in tx.get("amounts") or []),
        blockchain=tx.get("blockchain"),
        network_fee=_decimal(fee, "networkFee") if fee not in (None, "") else None,
        tx_hash=tx.get("txHash"), transaction_type=tx.get("transactionType"),
        error_reason=tx.get("errorReason"), create_date=tx.get("createDate"),
    )

