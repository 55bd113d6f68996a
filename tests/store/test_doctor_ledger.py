"""`butler doctor` says which ledger is in use, whether it answers, and at which schema version."""

from __future__ import annotations

from pathlib import Path

from butler_skill.core.doctor import LedgerFacts, ledger_findings
from butler_skill.store.db import Database, load_migrations
from tests.conftest import SECRETS
from tests.host.test_doctor import GOOD, doctor
from tests.pgcluster import Cluster

CURRENT = load_migrations()[-1].version
GOOD_ENV = {"TEST_GROQ_KEY_1": SECRETS["TEST_GROQ_KEY_1"]}


def _ledger(report: dict) -> list[dict]:  # type: ignore[type-arg]
    return [f for f in report["findings"] if f["check"].startswith("ledger.")]


def test_sqlite_ledger_reported_with_its_path_and_version(tmp_path: Path) -> None:
    env = {**GOOD_ENV, "BUTLER_STATE_PATH": str(tmp_path / "state.db")}
    code, report, _ = doctor(tmp_path, GOOD, env)
    assert code == 0 and [f["message"] for f in _ledger(report)] == [
        "SQLite ledger, not created yet (the first command creates it)"]
    assert not (tmp_path / "state.db").exists()  # looking creates nothing
    Database(tmp_path / "state.db").close()
    code, report, _ = doctor(tmp_path, GOOD, env)
    (finding,) = _ledger(report)
    assert code == 0 and finding["level"] == "ok" and finding["subject"] == str(tmp_path / "state.db")
    assert f"schema {CURRENT} (current)" in finding["message"]


def test_postgres_ledger_reported_without_the_password(tmp_path: Path, pg_cluster: Cluster, pg_url: str) -> None:
    with_password = pg_url.replace("postgres@", "postgres:hunter2@")  # trust auth: the password is not checked
    code, report, out = doctor(tmp_path, GOOD, {**GOOD_ENV, "BUTLER_DATABASE_URL": with_password})
    (finding,) = _ledger(report)
    assert code == 0 and finding["level"] == "ok" and finding["subject"] == pg_url
    assert finding["message"].startswith("PostgreSQL ledger, shared by every host") and f"schema {CURRENT}" in out
    assert "hunter2" not in out
    down = f"postgresql://postgres:hunter2@127.0.0.1:{pg_cluster.port}/missing_db"
    code, report, out = doctor(tmp_path, GOOD, {**GOOD_ENV, "BUTLER_DATABASE_URL": down})
    (finding,) = _ledger(report)
    assert code == 1 and finding["check"] == "ledger.connect" and "missing_db" in finding["message"]
    assert "hunter2" not in out
    code, report, out = doctor(tmp_path, GOOD, {**GOOD_ENV, "BUTLER_DATABASE_URL": "mysql://u:hunter2@h/x"})
    assert code == 1 and _ledger(report)[0]["check"] == "ledger.connect" and "hunter2" not in out


def test_schema_behind_is_a_warning_and_ahead_an_error() -> None:
    def one(version: int) -> tuple[str, str]:
        (f,) = ledger_findings(LedgerFacts(backend="postgres", location="postgresql://h/db", schema_version=version,
                                           expected_version=4))
        return f.level, f.check

    assert one(4) == ("ok", "ledger.backend")
    assert one(2) == ("warning", "ledger.schema")
    assert one(5) == ("error", "ledger.schema")
