"""The ledger hook's fast path (`Redactor.clean` over all of a statement's texts at once, `redact_params`) gives
exactly what redacting each text on its own gives, for any mix of texts holding pieces of known secrets, their
bodies, their base64, short secrets, credential keywords and credentials of known shapes."""

from __future__ import annotations

import base64
import random
import sqlite3
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from butler_skill.core import scan
from butler_skill.host.redaction import SHAPE_KEYWORDS, SHAPE_KEYWORDS_CI, Redactor, secret_body
from butler_skill.store.db import Database, execute_own, params_redactor
from tests.scan.shapes import make_key

BASE62 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
SECRETS = (
    "nvapi-" + "Aa1Ss2Dd3Ff4Gg5Hh6Jj7Kk8Ll9Zz0XxCc1Vv2Bb3Nn4Mm5Qq6Ww7Ee8Rr9Tt0Yy",
    "sk-proj-" + "Lm3Nb8Vc2Xz7Qa4Ws1Ed6Rf9Tg5Yh0UjIk2Ol7Pm4",
    "gsk_" + "Qw9Er8Ty7Ui6Op5As4Df3Gh2Jk1",
    "sk-" + "Zx8Cv7Bn",  # a short body: looked for whole in every text, not through the probe
    "r8_" + "MnBvCxZlKj",
)


def forms(secret: str) -> list[str]:
    body = secret_body(secret)
    raw = body.encode()
    return [secret, body, *(base64.b64encode(raw[s:][: (len(raw) - s) // 3 * 3]).decode() for s in range(3))]


FORMS = [f for s in SECRETS for f in forms(s)]
KEYWORDS = [*SHAPE_KEYWORDS, *SHAPE_KEYWORDS_CI, *(k.upper() for k in SHAPE_KEYWORDS_CI)]


@st.composite
def pieces(draw: st.DrawFn) -> str:
    """A slice of some form of a secret (any length: shorter and longer than a run the redactor masks)."""
    form = draw(st.sampled_from(FORMS))
    start = draw(st.integers(0, len(form) - 1))
    return form[start:draw(st.integers(start + 1, len(form)))]


# Credentials Butler does not know, in the shapes the scanner's rules mask.
TOKEN_RULES = [r.id for r in scan.RULES if r.confidence == scan.Confidence.HIGH and r.kind == "token"]
shapes = st.builds(lambda rule, seed: make_key(rule, random.Random(seed)), st.sampled_from(TOKEN_RULES),
                   st.integers(0, 2**32))
filler = st.text(alphabet=BASE62 + " -_:.T/Z\0é", max_size=30)
texts = st.lists(st.one_of(pieces(), st.sampled_from(KEYWORDS), shapes, filler), max_size=4).map("".join)
params = st.lists(st.one_of(texts, st.integers(-5, 10**12), st.none(), st.floats(allow_nan=False)), max_size=12)


@settings(max_examples=500)
@given(params, st.booleans())
def test_the_batch_path_equals_redacting_each_text(values: list[object], warm: bool) -> None:
    redactor = Redactor(SECRETS)
    if warm:  # texts the memo already knows, clean or not, take the look-up path
        redactor.redact_params(tuple(values))
    expected = tuple(Redactor(SECRETS).redact(v) if isinstance(v, str) else v for v in values)
    assert tuple(redactor.redact_params(tuple(values))) == expected
    strings = [v for v in values if isinstance(v, str)]
    if strings and Redactor(SECRETS).clean(strings):
        assert all(Redactor(SECRETS).redact(s) == s for s in strings)


@settings(max_examples=200)
@given(st.lists(texts, min_size=1, max_size=6))
def test_clean_never_passes_a_text_that_redaction_would_change(strings: list[str]) -> None:
    redactor = Redactor(SECRETS)
    if any(redactor.redact(s) != s for s in strings):
        assert not Redactor(SECRETS).clean(strings)


def test_a_run_split_across_two_texts_is_not_a_leak_but_one_inside_a_text_is_masked() -> None:
    body = secret_body(SECRETS[0])
    redactor = Redactor(SECRETS)
    # Each text alone holds fewer than MIN_RUN characters: nothing to mask, whatever the join looks like.
    assert redactor.redact_params((body[:6], body[6:12])) == (body[:6], body[6:12])
    assert redactor.redact_params(("ok", 3, f"echo {body[2:20]}")) == ("ok", 3, "echo [REDACTED]")


def test_the_hook_takes_the_batch_path_from_a_redactor_or_its_bound_method() -> None:
    redactor = Redactor(SECRETS)
    assert params_redactor(redactor) == redactor.redact_params
    assert params_redactor(redactor.redact) == redactor.redact_params
    plain = params_redactor(str.upper)  # any other callable: applied to each text
    assert plain(("a", 1, None)) == ("A", 1, None)


def test_the_database_stores_what_full_redaction_gives(tmp_path: Path) -> None:
    redactor = Redactor(SECRETS)
    rows = [(f"model said {SECRETS[0]}", "plain", 1), (f"half {secret_body(SECRETS[1])[3:30]}", "sk-Zx8Cv7Bn", 2),
            ("2026-12-04T07:40:00.000000Z", "k1", 3)]
    for hook, name in ((redactor.redact, "batch.db"), (lambda t: Redactor(SECRETS).redact(t), "each.db")):
        db = Database(tmp_path / name, redact=hook)
        with db.write() as tx:
            tx.execute("CREATE TABLE t (a TEXT, b TEXT, n INTEGER)")
            for row in rows:
                tx.execute("INSERT INTO t VALUES (?, ?, ?)", row)
        db.close()
    read = [sqlite3.connect(tmp_path / n).execute("SELECT a, b, n FROM t ORDER BY n").fetchall()
            for n in ("batch.db", "each.db")]
    assert read[0] == read[1]
    assert read[0][0] == ("model said [REDACTED]", "plain", 1) and read[0][1][1] == "[REDACTED]"


def test_execute_own_is_the_only_way_around_the_hook(tmp_path: Path) -> None:
    db = Database(tmp_path / "s.db", redact=Redactor(SECRETS).redact)
    with db.write() as tx:
        tx.execute("CREATE TABLE t (a TEXT)")
        tx.execute("INSERT INTO t VALUES (?)", (SECRETS[2],))
        execute_own(tx, "INSERT INTO t VALUES (?)", ("2026-12-04",))
    with db.read() as conn:
        assert [r["a"] for r in conn.execute("SELECT a FROM t ORDER BY a")] == ["2026-12-04", "[REDACTED]"]
    db.close()
