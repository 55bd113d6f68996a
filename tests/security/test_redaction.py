"""The redaction layer's shortcut stays in step with the scanner, and masks every key shape it must."""

from __future__ import annotations

import base64
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from butler_skill.core import scan
from butler_skill.host import redaction
from butler_skill.host.redaction import KEY_PREFIXES, MIN_RUN, Redactor, secret_body
from tests.scan.shapes import make_key

TOKEN_RULES = [r.id for r in scan.RULES if r.confidence == scan.Confidence.HIGH and r.kind == "token"]


def test_shortcut_keywords_are_the_scanners() -> None:
    assert set(redaction.SHAPE_KEYWORDS) == set(scan._HIGH_KEYWORDS)
    assert set(redaction.SHAPE_KEYWORDS_CI) == set(scan._HIGH_KEYWORDS_CI)


@given(st.sampled_from(TOKEN_RULES), st.integers(0, 2**32), st.sampled_from(["", "Bearer ", "key=", "'"]))
def test_every_key_shape_is_masked_even_when_unknown(rule_id: str, seed: int, before: str) -> None:
    secret = make_key(rule_id, random.Random(seed))
    text = f"provider said: invalid credential {before}{secret} (request 42)"
    clean = redaction.redact_text(text, [])
    assert secret not in clean and clean.startswith("provider said: invalid credential ")


def test_ordinary_output_is_untouched() -> None:
    text = '{"key_id": "groq-1", "tokens": 500, "reason": "rate_limit"}'
    assert not redaction.may_hold_credential(text)
    assert redaction.redact_text(text, []) == text


# ---- every known secret in every form a provider might echo ---------------------------------------------
BASE62 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
bodies = st.text(alphabet=BASE62, min_size=24, max_size=80)
prefixes = st.sampled_from(["", *KEY_PREFIXES])
# Around the echo: text that cannot extend a run of the secret (no base62 characters).
around = st.text(alphabet=" .,;:!?\"'{}[]()<>\n\té—€", max_size=40)


def leaked_runs(text: str, body: str) -> list[str]:
    """Every run of MIN_RUN characters of `body` still present in `text`."""
    return [body[i:i + MIN_RUN] for i in range(len(body) - MIN_RUN + 1) if body[i:i + MIN_RUN] in text]


@settings(max_examples=300)
@given(prefixes, bodies, around, around, st.data())
def test_any_long_run_of_a_known_secret_is_masked(prefix: str, body: str, before: str, after: str,
                                                   data: st.DataObject) -> None:
    secret = prefix + body
    start = data.draw(st.integers(0, len(body) - MIN_RUN))
    end = data.draw(st.integers(start + MIN_RUN, len(body)))
    for echo in (secret, body, body[start:end], prefix + body[start:end]):
        clean = Redactor([secret]).redact(before + echo + after)
        assert not leaked_runs(clean, body), echo
        assert clean.startswith(before.rstrip()[:1]) if before.strip() else True


@settings(max_examples=200)
@given(prefixes, bodies, st.binary(max_size=5), st.binary(max_size=5))
def test_base64_echoes_are_masked_at_every_alignment(prefix: str, body: str, lead: bytes, tail: bytes) -> None:
    secret = prefix + body
    for raw in (lead + secret.encode() + tail, b"user:" + secret.encode(), lead + body.encode()):
        encoded = base64.b64encode(raw).decode()
        clean = Redactor([secret]).redact(f"Authorization: Basic {encoded}")
        # what is left cannot decode back to a long run of the body
        leftover = clean.replace("[REDACTED]", " ")
        for piece in leftover.split():
            for skip in range(4):
                chunk = piece[skip:]
                chunk = chunk[: len(chunk) // 4 * 4]
                try:
                    decoded = base64.b64decode(chunk).decode("latin-1")
                except ValueError:
                    continue
                assert not leaked_runs(decoded, body)


@given(st.lists(bodies, min_size=1, max_size=4), st.text(max_size=300))
def test_text_sharing_no_long_run_with_a_secret_is_unchanged(secret_bodies: list[str], text: str) -> None:
    redactor = Redactor(["nvapi-" + b for b in secret_bodies])
    if any(leaked_runs(text, b) for b in secret_bodies) or redaction.may_hold_credential(text):
        return
    if any(form in text for b in secret_bodies for form in (b, "nvapi-" + b)):
        return
    assert redactor.redact(text) == text


def test_short_hints_and_ids_survive_and_prefix_stripped_bodies_do_not() -> None:
    secret = "nvapi-" + "Aa1Ss2Dd3Ff4Gg5Hh6Jj7Kk8Ll9Zz0XxCc1Vv2Bb3Nn4Mm5Qq6Ww7Ee8Rr9Tt0Yy"
    r = Redactor([secret])
    body = secret_body(secret)
    assert body == secret[len("nvapi-"):]
    hint = f"Incorrect API key provided: nvapi-****{secret[-4:]} (ses_019a2b3c4d5e6f7a8b9c0d1e)"
    assert r.redact(hint) == hint  # the last four characters are the industry's hint, not a leak
    assert body not in r.redact(f"invalid key {body}") and "[REDACTED]" in r.redact(f"invalid key {body}")
    half = body[7:7 + MIN_RUN]
    assert half not in r.redact(f"...{half}...")
    assert r.value({"a": [f"x {body[3:40]} y"], body: 1}) == {"a": ["x [REDACTED] y"], "[REDACTED]": 1}


def test_the_database_stores_no_form_of_a_known_secret(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from butler_skill.store.db import Database

    secret = "gsk_" + "Lm3Nb8Vc2Xz7Qa4Ws1Ed6Rf9Tg5Yh0UjIk2Ol7Pm4Nn9Bb3Vv"
    body = secret_body(secret)
    db = Database(tmp_path / "s.db", redact=Redactor([secret]).redact)
    with db.write() as tx:
        tx.execute("CREATE TABLE t (a TEXT, b TEXT, n INTEGER)")
        tx.execute("INSERT INTO t VALUES (?, ?, ?)", (f"model said {secret}", f"half {body[5:30]}", 7))
        tx.executemany("INSERT INTO t VALUES (:a, :b, :n)", [{"a": body, "b": "plain", "n": 1}])
    with db.read() as conn:
        rows = [tuple(r) for r in conn.execute("SELECT a, b, n FROM t ORDER BY n")]
    assert rows == [("[REDACTED]", "plain", 1), ("model said [REDACTED]", "half [REDACTED]", 7)]
    db.close()
    for path in tmp_path.glob("s.db*"):
        raw = path.read_bytes().decode("latin-1")
        assert not leaked_runs(raw, body), path.name
