"""A PostgreSQL of the tests' own: a cluster made with initdb in a temporary folder, run by an
unprivileged user (as root: ``nobody``, who owns the folder), listening on a free 127.0.0.1
port with its unix socket inside the folder, trust authentication for loopback alone, stopped
by its pid (``pg_ctl stop -m fast``, then SIGKILL) and started again on the same port.

Debian's server binaries are under /usr/lib/postgresql/VERSION/bin (the newest is taken);
elsewhere pg_ctl is looked for on PATH. Where there is none the tests skip loudly, and fail
under EDGE_AGENT_REQUIRE_BROKER=1 (what CI sets), as for a missing mosquitto.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from helpers import free_port, missing

RUN_AS = "nobody"  # postgres refuses to run as root


def find_bin_dir() -> Path | None:
    """The folder of initdb, pg_ctl and postgres: Debian's newest, else PATH's."""
    found = []
    for d in glob.glob("/usr/lib/postgresql/*/bin"):
        try:
            found.append((int(Path(d).parent.name.split(".")[0]), Path(d)))
        except ValueError:
            continue
    for _, d in sorted(found, reverse=True):
        if all(os.access(d / b, os.X_OK) for b in ("initdb", "pg_ctl", "postgres")):
            return d
    pg_ctl = shutil.which("pg_ctl")
    return Path(os.path.realpath(pg_ctl)).parent if pg_ctl else None


def require_bin_dir() -> Path:
    d = find_bin_dir()
    if d is None:
        missing(
            "PostgreSQL's server (initdb, pg_ctl) is not installed: database tests cannot run "
            "(`make test` installs Debian's postgresql with apt-get when run as root)"
        )
    assert d is not None
    return d


class Postgres:
    """One cluster in its own temporary folder; ``start()``, ``stop()``, ``start()`` again."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.port = free_port()
        # Not under pytest's tmp_path: that is 0700 root's, and the server's user must enter it.
        self.root = Path(tempfile.mkdtemp(prefix="edge-agent-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.pid: int | None = None
        self._user: dict = {}
        if os.geteuid() == 0:
            pw = pwd.getpwnam(RUN_AS)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            self._user = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        try:
            self._initdb()
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise

    def _initdb(self) -> None:
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "--auth=reject",  # pg_hba.conf is written below: loopback only
            "--no-sync",
        )
        (self.data / "pg_hba.conf").write_text(
            "# the tests' own cluster: trust on loopback, nothing else\nhost all all 127.0.0.1/32 trust\n"
        )
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.root}'\n"
                # a test database: fsync off costs nothing but durability over a power cut
                "fsync = off\nfull_page_writes = off\nmax_connections = 50\n"
                "shared_buffers = 64MB\nlog_min_messages = warning\n"
            )

    def _run(self, tool: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        out = subprocess.run(
            [str(self.bin_dir / tool), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "HOME": str(self.root)},
            **self._user,
        )
        if out.returncode:
            raise RuntimeError(
                f"{tool} {' '.join(args)} failed ({out.returncode}):\n{out.stdout}{out.stderr}"
            )
        return out

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def start(self) -> None:
        self._run("pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60")
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])

    def stop(self) -> None:
        """pg_ctl stop -m fast; SIGKILL by the postmaster's pid if it is still there after."""
        if self.pid is None:
            return
        pid, self.pid = self.pid, None
        try:
            self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w", "-t", "30", timeout=60)
        except (RuntimeError, subprocess.TimeoutExpired):
            pass
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)

    def createdb(self, name: str) -> str:
        """A fresh database; its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _alive(pid: int) -> bool:
    """The process exists and is no zombie (the postmaster is not our child: init reaps it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False
