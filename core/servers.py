"""Private storage servers on loopback: a PostgreSQL cluster and a ZEO server.

Why here: the tests, the benchmarks and ``shopkeeper storage serve`` need the same servers
started the same way — a PostgreSQL cluster of its own in a temporary directory on a free
loopback port (so the suite never touches a system database), and a ZEO server for a
``zeo://`` store. PostgreSQL refuses to run as root, so as root its programs run as an
unprivileged user through ``runuser`` (the ``postgres`` user Debian's package creates, or
``nobody``).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


class ServerError(RuntimeError):
    """A server could not be started; the message says why and what to install."""


def free_port() -> int:
    """A TCP port free on loopback now: the one helper the servers, the tests (through
    ``shopkeeper.testing``) and the benchmarks use."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 30.0,
                  what: str = "server") -> None:
    """Block until something accepts connections on 127.0.0.1:``port``; fail if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if proc is not None and proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise ServerError(f"{what} exited with {proc.returncode}: {err[-2000:]}") from None
            if time.monotonic() > deadline:
                raise ServerError(f"{what} did not accept connections on port {port} within {timeout:.0f} s") from None
            time.sleep(0.05)


# -- PostgreSQL --------------------------------------------------------------------------


def pg_bindir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are: ``$SHOPKEEPER_PG_BIN``, Debian's newest, or ``$PATH``."""
    env = os.environ.get("SHOPKEEPER_PG_BIN")
    candidates = [env] if env else []
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(str(Path(initdb).resolve().parent))
    for c in candidates:
        if c and (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists():
            return Path(c)
    return None


def _unprivileged_user() -> str:
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise ServerError("running as root and there is no 'postgres' or 'nobody' user to run PostgreSQL as")


class PrivatePostgres:
    """A PostgreSQL cluster of our own: ``initdb`` in ``directory``, loopback only, a free port,
    trust authentication for the local superuser, fsync as configured by default (durable).

    Use as a context manager, or :meth:`start` / :meth:`stop`. :meth:`create_database` makes
    a fresh database and returns its ``postgresql://`` store URI."""

    def __init__(self, directory: Path | str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.bindir = pg_bindir()
        self.user = "postgres"
        self._as = _unprivileged_user() if os.geteuid() == 0 else None
        self._dbs = 0
        self._own_dir: str | None = None
        self._place(Path(directory))

    def _place(self, directory: Path) -> None:
        self.dir = directory
        self.data = self.dir / "data"
        self.sockets = self.dir / "run"
        self.log = self.dir / "server.log"

    def _reachable(self) -> bool:
        """As root: can the unprivileged user reach ``self.dir``'s parent (pytest's and mkdtemp's
        directories are private to root)?"""
        parent = self.dir.parent
        parent.mkdir(parents=True, exist_ok=True)
        return subprocess.run(["runuser", "-u", self._as, "--", "test", "-x", str(parent)]).returncode == 0

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = list(args)
        if self._as:
            cmd = ["runuser", "-u", self._as, "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise ServerError(f"{' '.join(args[:2])} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
        return proc

    def start(self) -> PrivatePostgres:
        if self.bindir is None:
            raise ServerError("PostgreSQL is not installed (no initdb): run scripts/install-test-deps.sh "
                              "or `apt-get install postgresql`, or set SHOPKEEPER_PG_BIN")
        if self._as and not self._reachable():  # a directory of our own the server's user can reach
            self._own_dir = tempfile.mkdtemp(prefix="shopkeeper-pg-")
            self._place(Path(self._own_dir))
        self.data.mkdir(parents=True, exist_ok=True)
        self.sockets.mkdir(parents=True, exist_ok=True)
        if self._as:
            for p in (self.dir, self.data, self.sockets):
                shutil.chown(p, user=self._as)
        if not (self.data / "PG_VERSION").exists():
            self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", self.user, "--auth=trust",
                      "-E", "UTF8", "--no-locale", "--no-instructions")
            with open(self.data / "postgresql.conf", "a") as f:
                f.write(f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                        f"unix_socket_directories = '{self.sockets}'\nmax_connections = 200\n")
        else:  # a kept cluster: the port may have been taken meanwhile
            with open(self.data / "postgresql.conf", "a") as f:
                f.write(f"\nport = {self.port}\n")
        log = str(self.log)
        if self._as:
            self.log.touch()
            shutil.chown(self.log, user=self._as)
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", log, "-w", "-t", "60", "start")
        return self

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)
        if self._own_dir:
            shutil.rmtree(self._own_dir, ignore_errors=True)

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        return self._run(str(self.bindir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user,
                         "-d", dbname, "-v", "ON_ERROR_STOP=1", "-qAtc", sql).stdout

    def create_database(self, name: str | None = None) -> str:
        """A new, empty database; returns its store URI."""
        self._dbs += 1
        name = name or f"shopkeeper_{os.getpid()}_{self._dbs}"
        self.psql(f'CREATE DATABASE "{name}"')
        return self.uri(name)

    def uri(self, dbname: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def __enter__(self) -> PrivatePostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- ZEO ---------------------------------------------------------------------------------


def zeo_command(path: Path | str, host: str, port: int) -> list[str]:
    """The command line of a ZEO server serving the FileStorage at ``path`` on ``host:port``: an
    :class:`~shopkeeper.store.ErasureSafeFileStorage` (``shopkeeper.ops.zeoserver``), because
    ``runzeo -f`` keeps ``Data.fs.old`` and its commit buffer after a pack, with erased data in them."""
    return [sys.executable, "-m", "shopkeeper.ops.zeoserver", str(path), f"{host}:{port}"]


def start_zeo(path: Path | str, port: int | None = None, host: str = "127.0.0.1") -> tuple[subprocess.Popen, str]:
    """Start a ZEO server process for the FileStorage at ``path``; return it and its store URI."""
    port = port or free_port()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(zeo_command(path, host, port), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        wait_for_port(port, proc, what="ZEO server")
    except ServerError:
        proc.kill()
        raise
    return proc, f"zeo://{host}:{port}?timeout=20"


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
