"""A throwaway PostgreSQL cluster for the tests: initdb + pg_ctl into a temporary folder, on a free loopback port.

Found on PATH or in Debian's /usr/lib/postgresql/<version>/bin. PostgreSQL refuses to run as root, so as
root the server runs as the `postgres` (or `nobody`) user, owning its temporary folder. Each test gets a
fresh database copied from a template that was migrated once (`CREATE DATABASE ... TEMPLATE`).
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

BINARIES = ("initdb", "pg_ctl")
TEMPLATE = "butler_template"


def find_bin_dir() -> Path | None:
    found = [shutil.which(name) for name in BINARIES]
    if all(found):
        return Path(os.path.realpath(found[0] or "")).parent
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version, reverse=True):
        if all((Path(folder) / name).exists() for name in BINARIES):
            return Path(folder)
    return None


def _version(folder: str) -> float:
    try:
        return float(Path(folder).parent.name)
    except ValueError:
        return 0.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as() -> list[str]:
    if os.geteuid() != 0:
        return []
    for user in ("postgres", "nobody"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            continue
        return ["runuser", "-u", user, "--"]
    raise RuntimeError("running as root and no unprivileged user to run PostgreSQL as")


class Cluster:
    def __init__(self, bin_dir: Path, *, durable: bool = False) -> None:
        self.bin_dir = bin_dir
        self.durable = durable  # benchmarks: fsync and synchronous commit as a real server has them
        self.folder = Path(tempfile.mkdtemp(prefix="butler-pg-"))
        self.data = self.folder / "data"
        self.port = _free_port()
        self.prefix = _run_as()
        self._names = itertools.count(1)
        if self.prefix:
            user = self.prefix[2]
            entry = pwd.getpwnam(user)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        self.folder.chmod(0o700)

    def _run(self, *args: str) -> None:
        subprocess.run([*self.prefix, *args], check=True, capture_output=True, timeout=120,
                       env={**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"})

    def start(self) -> None:
        self._run(str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--no-sync", "-E", "UTF8")
        for attempt in range(3):  # another process may take the free port between our probe and the server's bind
            # Loopback TCP only (no socket file in a system folder); no fsync unless durable: it is thrown away.
            options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
                       " -c max_connections=200")
            if not self.durable:
                options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            try:
                self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-o", options, "-l",
                          str(self.folder / "server.log"), "-w", "-t", "60", "start")
                return
            except subprocess.CalledProcessError:
                if attempt == 2:
                    raise
                self.port = _free_port()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql.encode())

    def make_template(self) -> None:
        from butler_skill.store.pg import PostgresDatabase

        self.admin(f"CREATE DATABASE {TEMPLATE}")
        PostgresDatabase(self.url(TEMPLATE), max_size=1).close()

    def fresh_database(self) -> str:
        """The URL of a new database holding the migrated schema and no rows."""
        name = f"t{os.getpid()}_{next(self._names)}"
        self.admin(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        return self.url(name)

    def empty_database(self) -> str:
        """The URL of a new database with no tables at all (to test migrating from nothing)."""
        name = f"e{os.getpid()}_{next(self._names)}"
        self.admin(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
