"""A fake of Circle's developer-controlled wallets API, on loopback, keeping Circle's documented promises.

- `Authorization: Bearer <api key>` or 401.
- `GET /v1/w3s/config/entity/publicKey` -> `data.publicKey` (PEM of an RSA key generated here).
- `GET /v1/w3s/wallets/{id}/balances` -> `data.tokenBalances[]`, amounts as decimal strings.
- `POST /v1/w3s/developer/transactions/transfer`: the `entitySecretCiphertext` must decrypt (RSA-OAEP
  SHA-256) to the entity secret and must never repeat; `idempotencyKey` must be a UUID v4; the same key with
  the same body (ciphertext aside) returns the original answer; the same key with another body is a 409.
  Answers `201 {data: {id, state: "INITIATED"}}`.
- `GET /v1/w3s/transactions/{id}` -> `data.transaction`; a transfer turns final (COMPLETE by default) after
  `polls_to_final` observations.
- `GET /v1/w3s/transactions?refId=&walletIds=&destinationAddress=` -> `data.transactions[]`.
- Errors are `{"code": <int>, "message": "..."}`.

Faults (429, 5xx, dropped connections, timeouts, hangs) are queued with `add_fault`, before or after the
server acted on the request. `transfers` holds each transfer created: each counts once, however often the
same key was sent.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.servers._loopback import FakeServer, Fault, Recorded, Reply

FINAL = ("COMPLETE", "FAILED", "CANCELLED", "DENIED")
# One key per process: generating RSA-2048 costs tens of milliseconds, and each fake still checks its own use.
_PRIVATE_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class Transfer:
    id: str
    idempotency_key: str
    ref_id: str | None
    wallet_id: str
    destination: str
    amount: Decimal
    blockchain: str
    token_id: str | None
    created: str
    observed: int = 0
    state: str = "INITIATED"
    error_reason: str | None = None
    external: bool = False


def _err(status: int, code: int, message: str) -> Reply:
    return Reply(status, {"code": code, "message": message})


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeCircle(FakeServer):
    def __init__(self, *, api_key: str, entity_secret: str, wallet_id: str, usdc: Decimal = Decimal("1000"),
                 token_id: str = "usdc-token-0001", blockchain: str = "BASE-SEPOLIA",
                 token_address: str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e", polls_to_final: int = 1,
                 network_fee: str = "0.000021") -> None:
        self.api_key = api_key
        self.entity_secret = bytes.fromhex(entity_secret)
        self.wallet_id = wallet_id
        self.usdc = usdc
        self.native = Decimal("0.5")
        self.token_id = token_id
        self.blockchain = blockchain
        self.token_address = token_address
        self.polls_to_final = polls_to_final
        self.network_fee = network_fee
        self._private = _PRIVATE_KEY
        self.public_pem = self._private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        self.transfers: dict[str, Transfer] = {}
        self.final_state_for: dict[str, str] = {}  # destination (lower-case) -> final state
        self.ciphertexts: list[str] = []
        self.ciphertext_errors: list[str] = []
        self.idempotency: dict[str, tuple[str, Reply]] = {}
        self.transfer_recorded = threading.Event()
        self.list_ignores_ref_filter = False
        super().__init__()
        self.base_url = self.root

    # -- inspection --
    @property
    def transfer_count(self) -> int:
        with self.lock:
            return sum(1 for t in self.transfers.values() if not t.external)

    def transfers_for(self, ref_id: str) -> list[Transfer]:
        with self.lock:
            return [t for t in self.transfers.values() if t.ref_id == ref_id]

    def transfer_posts(self) -> list[Recorded]:
        return self.requests_to("POST", "/transactions/transfer")

    def add_external_transfer(self, amount: Decimal, destination: str, state: str = "COMPLETE") -> Transfer:
        """A transfer from the wallet that Butler did not make (someone used the console)."""
        with self.lock:
            t = Transfer(id=str(uuid.uuid4()), idempotency_key=str(uuid.uuid4()), ref_id=None,
                         wallet_id=self.wallet_id, destination=destination, amount=amount,
                         blockchain=self.blockchain, token_id=self.token_id, created=_now(), state=state,
                         external=True)
            self.transfers[t.id] = t
            return t

    def fault_transfer(self, kind: str, **kw: Any) -> Fault:
        return self.add_fault(kind, match="POST /v1/w3s/developer/transactions/transfer", **kw)  # type: ignore[arg-type]

    # -- routes --
    def route(self, rec: Recorded) -> Reply:
        if rec.headers.get("authorization") != f"Bearer {self.api_key}":
            return _err(401, 401, "Malformed authorization. Are you missing your API key?")
        p = rec.path
        if rec.method == "GET" and p == "/v1/w3s/config/entity/publicKey":
            return Reply(200, {"data": {"publicKey": self.public_pem}})
        if rec.method == "GET" and p.startswith("/v1/w3s/wallets/") and p.endswith("/balances"):
            return self._balances(p.split("/")[4])
        if rec.method == "POST" and p == "/v1/w3s/developer/transactions/transfer":
            return self._transfer(rec.body)
        if rec.method == "GET" and p == "/v1/w3s/transactions":
            return self._list(rec.query)
        if rec.method == "GET" and p.startswith("/v1/w3s/transactions/"):
            return self._get(p.rsplit("/", 1)[1])
        return _err(404, 404, "Not found")

    def _balances(self, wallet_id: str) -> Reply:
        if wallet_id != self.wallet_id:
            return _err(404, 156001, "Cannot find the wallet")
        with self.lock:
            usdc = self.usdc
        token = {"id": self.token_id, "blockchain": self.blockchain, "tokenAddress": self.token_address,
                 "standard": "ERC20", "name": "USD Coin", "symbol": "USDC", "decimals": 6, "isNative": False}
        native = {"id": "native-0001", "blockchain": self.blockchain, "name": "Ethereum-Sepolia", "symbol": "ETH",
                  "decimals": 18, "isNative": True}
        return Reply(200, {"data": {"tokenBalances": [
            {"token": native, "amount": str(self.native), "updateDate": _now()},
            {"token": token, "amount": str(usdc), "updateDate": _now()},
        ]}})

    def _decrypts(self, ciphertext: Any) -> str | None:
        if not isinstance(ciphertext, str):
            return "entitySecretCiphertext is missing"
        try:
            plain = self._private.decrypt(
                base64.b64decode(ciphertext, validate=True),
                padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
        except ValueError:
            return "entitySecretCiphertext does not decrypt"
        if plain != self.entity_secret:
            return "entitySecretCiphertext holds another secret"
        if ciphertext in self.ciphertexts:
            return "entitySecretCiphertext was used before"
        return None

    def _transfer(self, body: Any) -> Reply:
        if not isinstance(body, dict):
            return _err(400, 2, "Invalid request body")
        with self.lock:
            problem = self._decrypts(body.get("entitySecretCiphertext"))
            if problem is not None:
                self.ciphertext_errors.append(problem)
                return _err(400, 156013, problem)
            self.ciphertexts.append(body["entitySecretCiphertext"])
            key = body.get("idempotencyKey")
            try:
                if uuid.UUID(str(key)).version != 4:
                    raise ValueError
            except ValueError:
                return _err(400, 2, "idempotencyKey must be a UUID v4")
            terms = {k: v for k, v in body.items() if k != "entitySecretCiphertext"}
            fingerprint = hashlib.sha256(json.dumps(terms, sort_keys=True).encode()).hexdigest()
            seen = self.idempotency.get(key)
            if seen is not None:
                if seen[0] != fingerprint:
                    return _err(409, 409, "idempotencyKey was already used with a different request")
                return seen[1]
            bad = self._invalid(body)
            if bad is not None:
                return bad
            t = Transfer(id=str(uuid.uuid4()), idempotency_key=key, ref_id=body.get("refId"),
                         wallet_id=body["walletId"], destination=body["destinationAddress"],
                         amount=Decimal(body["amounts"][0]), blockchain=body.get("blockchain") or self.blockchain,
                         token_id=body.get("tokenId"), created=_now())
            self.transfers[t.id] = t
            reply = Reply(201, {"data": {"id": t.id, "state": t.state}})
            self.idempotency[key] = (fingerprint, reply)
            self.transfer_recorded.set()
            return reply

    def _invalid(self, body: dict[str, Any]) -> Reply | None:
        if body.get("walletId") != self.wallet_id:
            return _err(404, 156001, "Cannot find the wallet")
        if not body.get("destinationAddress"):
            return _err(400, 2, "destinationAddress is required")
        amounts = body.get("amounts")
        if not isinstance(amounts, list) or len(amounts) != 1 or not isinstance(amounts[0], str):
            return _err(400, 2, "amounts must be a list of one decimal string")
        try:
            if Decimal(amounts[0]) <= 0:
                raise ValueError
        except (ArithmeticError, ValueError):
            return _err(400, 2, "amounts must be positive decimals")
        if not body.get("tokenId") and not (body.get("blockchain") and body.get("tokenAddress")):
            return _err(400, 2, "tokenId, or blockchain and tokenAddress, is required")
        if body.get("tokenId") and body["tokenId"] != self.token_id:
            return _err(400, 177001, "Unknown tokenId")
        if body.get("feeLevel") not in ("LOW", "MEDIUM", "HIGH"):
            return _err(400, 2, "feeLevel must be LOW, MEDIUM or HIGH")
        return None

    def _observe(self, t: Transfer) -> None:
        if t.state in FINAL:
            return
        t.observed += 1
        if t.observed < self.polls_to_final:
            t.state = "SENT"
            return
        final = self.final_state_for.get(t.destination.lower(), "COMPLETE")
        if final == "COMPLETE" and t.amount > self.usdc:
            final, t.error_reason = "FAILED", "INSUFFICIENT_TOKEN"
        if final == "COMPLETE":
            self.usdc -= t.amount
        elif final == "FAILED" and t.error_reason is None:
            t.error_reason = "EXECUTION_REVERTED"
        t.state = final

    def _tx(self, t: Transfer) -> dict[str, Any]:
        return {"id": t.id, "state": t.state, "refId": t.ref_id or "", "walletId": t.wallet_id,
                "destinationAddress": t.destination, "amounts": [str(t.amount)], "blockchain": t.blockchain,
                "tokenId": t.token_id, "networkFee": self.network_fee if t.state == "COMPLETE" else None,
                "transactionType": "OUTBOUND", "operation": "TRANSFER", "custodyType": "DEVELOPER",
                "errorReason": t.error_reason, "txHash": None if t.state != "COMPLETE" else "0x" + t.id.replace(
                    "-", "").ljust(64, "0"), "createDate": t.created, "updateDate": _now()}

    def _get(self, tx_id: str) -> Reply:
        with self.lock:
            t = self.transfers.get(tx_id)
            if t is None:
                return _err(404, 177601, "Cannot find the transaction")
            self._observe(t)
            return Reply(200, {"data": {"transaction": self._tx(t)}})

    def _list(self, query: dict[str, list[str]]) -> Reply:
        ref = (query.get("refId") or [None])[0]
        wallets = set(",".join(query.get("walletIds") or []).split(",")) - {""}
        dest = (query.get("destinationAddress") or [None])[0]
        with self.lock:
            found = []
            for t in self.transfers.values():
                if ref is not None and not self.list_ignores_ref_filter and t.ref_id != ref:
                    continue
                if wallets and t.wallet_id not in wallets:
                    continue
                if dest is not None and t.destination.lower() != dest.lower():
                    continue
                self._observe(t)
                found.append(self._tx(t))
        return Reply(200, {"data": {"transactions": found}})


def start_fake_circle(**kw: Any) -> FakeCircle:
    return FakeCircle(**kw)
