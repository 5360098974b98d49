"""A throwaway PostgreSQL server for tests and benchmarks: initdb + pg_ctl in a temp dir, a free port.

PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` user (created by
Debian's ``postgresql`` package, which ``scripts/test.sh`` installs) in a directory it owns.
Authentication is ``trust`` on 127.0.0.1 only; fsync is off (nothing here needs to survive a crash
of the machine).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from tests.cluster import free_port

SUPERUSER = "seasync"


def find_bin(tool: str) -> str | None:
    """``initdb`` / ``pg_ctl``: on PATH, else the newest /usr/lib/postgresql/N/bin (Debian's layout)."""
    found = shutil.which(tool)
    if found:
        return found
    candidates = glob.glob(f"/usr/lib/postgresql/*/bin/{tool}")
    candidates.sort(key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return candidates[-1] if candidates else None


def runuser() -> str:
    """util-linux's runuser (in /usr/sbin, which a root PATH may lack)."""
    return shutil.which("runuser") or next((p for p in ("/usr/sbin/runuser", "/sbin/runuser")
                                              if os.path.exists(p)), "runuser")


def available() -> str | None:
    """None if a server can be started here, else why not."""
    if not find_bin("initdb") or not find_bin("pg_ctl"):
        return "PostgreSQL is not installed (bash scripts/test.sh installs Debian's postgresql package)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run the server as"
        if not os.path.exists(runuser()) and not shutil.which(runuser()):
            return "running as root and runuser (util-linux) is missing"
    return None


class Server:
    """One PostgreSQL cluster; ``url(db)`` for each database, ``create_database()`` for a fresh one."""

    def __init__(self) -> None:
        reason = available()
        if reason:
            raise RuntimeError(reason)
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="seasync-pg-"))
        self.data = self.dir / "data"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
        self._run(find_bin("initdb"), "-D", str(self.data), "-U", SUPERUSER, "-A", "trust",
                  "-E", "UTF8", "--no-sync", "--no-instructions")
        self.start()

    def _run(self, *args: str) -> None:
        cmd = list(args)
        if self._as_postgres:
            cmd = [runuser(), "-u", "postgres", "--", *cmd]
        result = subprocess.run(cmd, cwd=self.dir, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")

    def start(self) -> None:
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run(find_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "server.log"),
                  "-o", options, "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(find_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        import psycopg
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def log(self) -> str:
        try:
            return (self.dir / "server.log").read_text(errors="replace")
        except OSError:
            return ""

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except RuntimeError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
