"""The store behaviour suite runs on both ledgers: SQLite (a file) and PostgreSQL (a throwaway cluster).

The cluster is started once per test process when the server binaries are installed. Without them the
PostgreSQL half is skipped with the reason, except in CI (CI=true), where that is a failure: CI installs
PostgreSQL (.ci/run), so a missing server there means the proof was not run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pgcluster import Cluster, find_bin_dir

BACKENDS = ("sqlite", "postgres")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    bin_dir = find_bin_dir()
    if bin_dir is None:
        reason = "PostgreSQL server binaries (initdb, pg_ctl) not found: the PostgreSQL ledger tests need them"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI must run the PostgreSQL ledger tests: {reason}")
        pytest.skip(reason)
    cluster = Cluster(bin_dir)
    cluster.start()
    try:
        cluster.make_template()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> str:
    """A fresh, migrated, empty PostgreSQL database for one test."""
    return pg_cluster.fresh_database()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test here that takes `env` (or `ctx`, `harness`) runs on both backends, unless its module says
    otherwise with `BACKENDS = ("sqlite",)`, or one test with `@pytest.mark.backends("sqlite")` (tests that break or
    inspect the SQLite file itself: on PostgreSQL they are not collected, so nothing is skipped)."""
    if "backend" in metafunc.fixturenames:
        only = metafunc.definition.get_closest_marker("backends")
        metafunc.parametrize("backend", only.args if only else getattr(metafunc.module, "BACKENDS", BACKENDS))


@pytest.fixture
def backend() -> str:  # replaced by the parametrisation above
    return "sqlite"


@pytest.fixture
def database_env(backend: str, request: pytest.FixtureRequest) -> dict[str, str]:
    """What selects the backend: nothing for SQLite, BUTLER_DATABASE_URL for PostgreSQL."""
    if backend == "sqlite":
        return {}
    return {"BUTLER_DATABASE_URL": request.getfixturevalue("pg_url")}


@pytest.fixture
def env(env: dict[str, str], database_env: dict[str, str]) -> dict[str, str]:
    return {**env, **database_env}


# ---- the treasury's behaviour on both backends (tests/store/test_behaviour_both.py) ----------------------
from tests.treasury.conftest import START, Harness, fake_circle, fake_openrouter  # noqa: E402,F401


@pytest.fixture
def harness(request: pytest.FixtureRequest, tmp_path: Path, database_env: dict[str, str]) -> Iterator[Harness]:
    """The treasury harness of tests/treasury, its database chosen by the backend parameter."""
    from tests.conftest import Clock

    h = Harness(folder=tmp_path, circle=request.getfixturevalue("fake_circle"),
                openrouter=request.getfixturevalue("fake_openrouter"), clock=Clock(START))
    url = database_env.get("BUTLER_DATABASE_URL")
    if url:
        from butler_skill.store.pg import PostgresDatabase

        h._db = PostgresDatabase(url, path=tmp_path / "state.db")  # type: ignore[assignment]
    h.set_policy()
    yield h
    h.close()
