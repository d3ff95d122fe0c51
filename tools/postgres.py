"""A PostgreSQL server process for the team's MLflow (tools/tracking_server.py), from the
binaries of the `pgserver` wheel (the `team` dependency group): no system package needed.

Loopback TCP only (no Unix socket), password authentication (SCRAM) for every connection, data
in one folder. PostgreSQL refuses to run as root: as root, it runs as the system user
``pgserver``, created the way the pgserver library itself does."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools import processes

HOST = "127.0.0.1"
SUPERUSER = "mlflow"  # the only role: owns MLflow's databases
RUN_AS_ROOT_USER = "pgserver"


def _pgserver() -> Any:
    """The pgserver package (deferred: only the `team` group has it), without the warning its
    import prints when XDG_RUNTIME_DIR is unset: we use its binaries, not its runtime dir."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver._commands
        import pgserver.utils
    return pgserver


def bin_path(name: str) -> str:
    return str(_pgserver()._commands.POSTGRES_BIN_PATH / name)


def _system_user() -> str | None:
    """Who runs the server: the caller, or ``pgserver`` when the caller is root."""
    if os.geteuid() != 0:
        return None
    _pgserver().utils.ensure_user_exists(RUN_AS_ROOT_USER)
    return RUN_AS_ROOT_USER


@dataclass(frozen=True)
class Postgres:
    pid: int
    port: int

    def uri(self, password: str, database: str, driver: str = "") -> str:
        """A libpq URI; ``driver="psycopg2"`` makes it SQLAlchemy's (whose default driver for
        plain ``postgresql://`` is psycopg 3, not installed)."""
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://{SUPERUSER}:{password}@{HOST}:{self.port}/{database}"


def unreachable(path: Path) -> Path | None:
    """The first folder on the way to ``path`` that users other than its owner cannot enter
    (no o+x), or None."""
    for folder in reversed(path.resolve().parents):
        if folder.exists() and not folder.stat().st_mode & 0o001:
            return folder
    return None


def init(data: Path, password: str) -> None:
    """``initdb`` once: a cluster whose one role authenticates by password.

    Raises:
        RuntimeError: initdb failed, or (as root) the system user PostgreSQL runs as cannot
            reach its binaries or ``data`` (a checkout in a private folder such as /root).
    """
    if (data / "PG_VERSION").exists():
        return
    user = _system_user()
    for needed in (Path(bin_path("initdb")), data):
        closed = unreachable(needed) if user is not None else None
        if closed is not None:
            raise RuntimeError(
                f"PostgreSQL refuses to run as root, so it runs as the user {user}, which "
                f"cannot enter {closed} (mode {closed.stat().st_mode & 0o777:o}) to reach "
                f"{needed}: move the checkout to a folder others can traverse, or run as a "
                "normal user"
            )
    data.mkdir(parents=True, exist_ok=True)
    data.chmod(0o700)
    fd, name = tempfile.mkstemp(prefix=".pwfile-", dir=data.parent)  # 0600; gone after initdb
    pwfile = Path(name)
    with os.fdopen(fd, "w") as fh:
        fh.write(password)
    if user is not None:
        shutil.chown(data, user)
        shutil.chown(pwfile, user)
    try:
        subprocess.run(
            [bin_path("initdb"), "-D", str(data), "-U", SUPERUSER, "--pwfile", str(pwfile),
             "--auth=scram-sha-256", "--encoding=UTF8", "--no-instructions"],
            check=True, capture_output=True, text=True, user=user,
        )  # fmt: skip
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"initdb failed in {data}: {exc.stderr.strip()}") from exc
    finally:
        pwfile.unlink(missing_ok=True)


def start(data: Path, port: int, password: str, log: Path, timeout: float = 30.0) -> Postgres:
    """Start the server on loopback and wait until it answers with ``password``."""
    import psycopg2

    init(data, password)
    stop_orphan(data)
    out = open(log, "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [bin_path("postgres"), "-D", str(data), "-h", HOST, "-p", str(port), "-k", ""],
        stdout=out,
        stderr=subprocess.STDOUT,
        user=_system_user(),
        start_new_session=True,  # survives the make recipe that started it
    )
    server = Postgres(proc.pid, port)
    deadline = time.monotonic() + timeout
    while True:
        try:
            psycopg2.connect(server.uri(password, "postgres"), connect_timeout=2).close()
            return server
        except psycopg2.OperationalError as exc:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop(server)
                tail = log.read_text(errors="replace").splitlines()[-3:]
                raise RuntimeError(
                    f"PostgreSQL did not start on {HOST}:{port}: {exc}".strip()
                    + "".join(f"\n  {line}" for line in tail)
                ) from exc
            time.sleep(0.1)


def stop_orphan(data: Path) -> None:
    """Stop a postmaster of ``data`` that nothing records: an `up` killed after starting it
    but before saving its state leaves it holding the directory's lock (postmaster.pid), and
    every later start would fail on it. Only a live postgres of this very directory is
    stopped; a stale lock file of a dead one is postgres' own to clear."""
    try:
        pid = int((data / "postmaster.pid").read_text().split()[0])
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError, IndexError):
        return
    if Path(argv[0].decode(errors="replace")).name == "postgres" and str(data).encode() in argv:
        stop(Postgres(pid, 0))


def ensure_database(server: Postgres, password: str, name: str) -> None:
    import psycopg2

    conn = psycopg2.connect(server.uri(password, "postgres"))
    try:
        conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{name}"')  # name is ours, never user input
    finally:
        conn.close()


def stop(server: Postgres, timeout: float = 15.0) -> None:
    """Fast shutdown (SIGINT: roll back open transactions, checkpoint, exit); SIGKILL to the
    whole group only if that hangs, so no backend outlives its postmaster."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(server.pid, signal.SIGINT)
    if not processes.wait_gone(server.pid, timeout):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        processes.wait_gone(server.pid, 5)
