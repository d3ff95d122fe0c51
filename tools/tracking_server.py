"""The team's MLflow, on one machine: a tracking server on PostgreSQL, artifacts in S3 through
the server's artifact proxy, MLflow's basic-auth app with a user for CI and one for a data
scientist. The same shape as a team's real server, so the CI path can be run and tested here.

    python -m tools.tracking_server up              # start (or reuse) it; prints the exports
    python -m tools.tracking_server status          # what runs, where
    python -m tools.tracking_server down [--wipe]   # stop it (--wipe: and delete its data)
    python -m tools.tracking_server run -- CMD ...  # run CMD as the data scientist
    python -m tools.tracking_server run --fresh -- CMD
                                                    # a private stack (own PostgreSQL, S3 and
                                                    # MLflow in a temp folder), stopped after CMD

Data: .local/tracking/ (git-ignored): postgres/ (the cluster), credentials (0600: generated at
first start, never committed), logs. Artifacts: bucket ``mlflow-artifacts`` of the loopback S3
(tools/local_s3.py: its shared server is reused or started), or of the S3-compatible endpoint
``AWS_ENDPOINT_URL_S3`` names. Clients need no S3 credentials: the server proxies artifacts.
On AWS the team's server is infra/'s (infra/waterml_infra/stacks/tracking.py)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from settings import LOCAL_DIR, REPO
from tools import local_s3, postgres, processes

HOST = "127.0.0.1"
DATA_DIR = LOCAL_DIR / "tracking"
STATE_FILE = LOCAL_DIR / "tracking.json"  # pids and ports of the running stack
ARTIFACT_BUCKET = "mlflow-artifacts"
ADMIN, CI, SCIENTIST = "admin", "ci", "data-scientist"
# What each non-admin user may do, as role grants ("*": every experiment / registered model).
# Both train and register (EDIT: create runs and versions, set tags and aliases); neither may
# delete models or manage users. Separate users keep who-did-what in the runs and let one
# password be rotated without the other.
GRANTS = {
    CI: {"experiment": "EDIT", "registered_model": "EDIT"},
    SCIENTIST: {"experiment": "EDIT", "registered_model": "EDIT"},
}
WORKSPACE = "default"
AUTH_CACHE_SECONDS = 60
# The basic-auth app's REST API (mlflow.server.auth.routes; importing that module loads the
# whole server, ~25 s on a busy machine, for six strings).
AUTH_API = {
    "get_user": "/api/2.0/mlflow/users/get",
    "create_user": "/api/2.0/mlflow/users/create",
    "list_roles": "/api/3.0/mlflow/roles/list",
    "create_role": "/api/3.0/mlflow/roles/create",
    "add_role_permission": "/api/3.0/mlflow/roles/permissions/add",
    "assign_role": "/api/3.0/mlflow/roles/assign",
}
# MLflow 3 defaults to 4 workers and background job runners (15 processes, 3.6 GiB):
# one worker serves a team's training and promotion traffic.
SERVER_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
}


@dataclass(frozen=True)
class Credentials:
    """Generated at first start; the PostgreSQL password never leaves this machine."""

    port: int  # MLflow's port, kept so the export lines stay valid across restarts
    postgres: str
    flask_secret: str
    admin: str
    ci: str
    scientist: str

    @classmethod
    def load_or_create(cls, path: Path) -> Credentials:
        if path.exists():
            return cls(**json.loads(path.read_text()))
        made = cls(
            port=local_s3._free_port(),
            **{k: secrets.token_urlsafe(24) for k in ("postgres", "flask_secret", "admin")},
            ci=secrets.token_urlsafe(24),
            scientist=secrets.token_urlsafe(24),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(asdict(made), fh, indent=1)
        return made

    def password(self, user: str) -> str:
        return {ADMIN: self.admin, CI: self.ci, SCIENTIST: self.scientist}[user]


@dataclass(frozen=True)
class Stack:
    """A running tracking server and the PostgreSQL under it."""

    mlflow_pid: int
    postgres_pid: int
    port: int
    postgres_port: int
    s3_endpoint: str
    data: str

    @property
    def uri(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def credentials(self) -> Credentials:
        return Credentials.load_or_create(Path(self.data) / "credentials")

    def env(self, user: str = SCIENTIST) -> dict[str, str]:
        """What a client needs: the URI and one user's login (no S3 credentials)."""
        return {
            "MLFLOW_TRACKING_URI": self.uri,
            "MLFLOW_TRACKING_USERNAME": user,
            "MLFLOW_TRACKING_PASSWORD": self.credentials.password(user),
        }

    def alive(self) -> bool:
        return all(processes.alive(pid) for pid in (self.mlflow_pid, self.postgres_pid)) and (
            local_s3._listening(self.port)
        )


def _auth_ini(data: Path, creds: Credentials, pg: postgres.Postgres) -> Path:
    """MLflow's auth config: users and grants in their own PostgreSQL database; no default
    permission, so a user sees only what its grants name."""
    ini = data / "basic_auth.ini"
    fd = os.open(ini, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds a DB password
    with os.fdopen(fd, "w") as fh:
        fh.write(
            "[mlflow]\n"
            "default_permission = NO_PERMISSIONS\n"
            f"database_uri = {pg.uri(creds.postgres, 'mlflow_auth', 'psycopg2')}\n"
            f"admin_username = {ADMIN}\n"
            f"admin_password = {creds.admin}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            # Every request re-hashes the password (PBKDF2): 0.8 s each on a busy 2-core
            # machine, a minute for one training run's ~75 requests. With one worker, the
            # cache's staleness (other workers keep an old password until the TTL) is moot.
            f"auth_cache_ttl_seconds = {AUTH_CACHE_SECONDS}\n"
        )
    return ini


def start(data: Path, s3_env: dict[str, str], timeout: float = 120.0) -> Stack:
    """PostgreSQL, then MLflow on it with the artifact proxy to ``s3_env``'s endpoint, then
    the users. Whatever started is stopped again if a later step fails."""
    began = time.perf_counter()
    data.mkdir(parents=True, exist_ok=True)
    creds = Credentials.load_or_create(data / "credentials")
    _stop_unrecorded_mlflow(data)
    pg = postgres.start(
        data / "postgres", local_s3._free_port(), creds.postgres, data / "postgres.log"
    )
    try:
        for database in ("mlflow", "mlflow_auth"):
            postgres.ensure_database(pg, creds.postgres, database)
        port = creds.port if not local_s3._listening(creds.port) else local_s3._free_port()
        env = _server_env(s3_env) | {
            "MLFLOW_AUTH_CONFIG_PATH": str(_auth_ini(data, creds, pg)),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": creds.flask_secret,
            # From the environment, not the command line: `ps` shows command lines.
            "MLFLOW_BACKEND_STORE_URI": pg.uri(creds.postgres, "mlflow", "psycopg2"),
        }
        log = data / "mlflow.log"
        out = open(log, "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("mlflow")), "server",
             "--app-name", "basic-auth", "--host", HOST, "--port", str(port), "--workers", "1",
             "--serve-artifacts", "--artifacts-destination", f"s3://{ARTIFACT_BUCKET}"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=data, start_new_session=True,
        )  # fmt: skip
    except BaseException:
        postgres.stop(pg)
        raise
    stack = Stack(proc.pid, pg.pid, port, pg.port, s3_env["AWS_ENDPOINT_URL_S3"], str(data))
    try:
        _wait_ready(stack, proc, log, began + timeout)
        _ensure_users(stack, creds)
    except BaseException:
        stop(stack)
        raise
    return stack


def _server_env(s3_env: dict[str, str]) -> dict[str, str]:
    """The server's environment: the S3 endpoint and its credentials (only the server holds
    them), none of a client's MLflow settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    endpoint = s3_env.get("AWS_ENDPOINT_URL_S3")
    if endpoint:  # MLflow's S3 store reads its own variable for a custom endpoint
        env["MLFLOW_S3_ENDPOINT_URL"] = endpoint
    return env | s3_env | SERVER_ENV


def _wait_ready(stack: Stack, proc: subprocess.Popen[bytes], log: Path, deadline: float) -> None:
    import requests

    while True:
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{stack.uri}/health", timeout=2).status_code == 200:
                return
        if proc.poll() is not None or time.perf_counter() > deadline:
            tail = log.read_text(errors="replace").splitlines()[-5:]
            raise RuntimeError(
                f"MLflow did not start on {stack.uri}" + "".join(f"\n  {t}" for t in tail)
            )
        time.sleep(0.2)


def _ensure_users(stack: Stack, creds: Credentials) -> None:
    """The CI and data-scientist users and their role grants (idempotent), as the admin."""
    from requests import Session

    admin = Session()
    admin.auth = (ADMIN, creds.admin)

    def call(method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        resp = admin.request(method, f"{stack.uri}{path}", timeout=30, **kwargs)
        if resp.status_code >= 400:
            raise RuntimeError(f"MLflow auth {method} {path}: {resp.status_code} {resp.text}")
        return resp.json() if resp.content else {}

    listed = call("GET", AUTH_API["list_roles"], params={"workspace": WORKSPACE})["roles"]
    roles = {r["name"]: r for r in listed}
    for user, grants in GRANTS.items():
        got = admin.get(f"{stack.uri}{AUTH_API['get_user']}", params={"username": user}, timeout=30)
        if got.status_code == 404:
            body = {"username": user, "password": creds.password(user)}
            call("POST", AUTH_API["create_user"], json=body)
        elif got.status_code >= 400:
            raise RuntimeError(f"MLflow auth: user {user}: {got.status_code} {got.text}")
        if user in roles:
            continue
        role = call("POST", AUTH_API["create_role"], json={"workspace": WORKSPACE, "name": user})
        role_id = role["role"]["id"]
        for resource, permission in grants.items():
            body = {"role_id": role_id, "resource_type": resource, "resource_pattern": "*",
                    "permission": permission}  # fmt: skip
            call("POST", AUTH_API["add_role_permission"], json=body)
        call("POST", AUTH_API["assign_role"], json={"username": user, "role_id": role_id})


def stop(stack: Stack) -> None:
    """MLflow first (it holds connections), then PostgreSQL's fast shutdown."""
    _stop_mlflow(stack.mlflow_pid)
    postgres.stop(postgres.Postgres(stack.postgres_pid, stack.postgres_port))


# --- the shared stack in .local/tracking/ ---------------------------------------------------


# What the recorded processes' command lines hold: `mlflow server ...`, `.../postgres -D ...`.
MLFLOW_MARK, POSTGRES_MARK = b"mlflow\0server\0", b"bin/postgres\0-D\0"


def _is_ours(pid: int, marker: bytes) -> bool:
    """After a reboot a recorded pid may name another process: check its command line."""
    try:
        return marker in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return sys.platform != "linux" and processes.alive(pid)  # no /proc: trust the pid


def _stop_unrecorded_mlflow(data: Path) -> None:
    """Stop any MLflow server running in ``data`` (start() runs it there). An `up` killed
    after starting it but before saving its state leaves it holding the URI's port with
    nothing recording it, and the next `up` would move to another port. Linux: found in
    /proc; elsewhere the recorded state is all there is."""
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            mine = MLFLOW_MARK in (entry / "cmdline").read_bytes()
            if not mine or (entry / "cwd").resolve() != data.resolve():
                continue
        except OSError:
            continue  # gone meanwhile, or another user's
        _stop_mlflow(int(entry.name))


def _stop_mlflow(pid: int) -> None:
    """SIGTERM to its process group (its own session: start_new_session), so the workers stop
    too; SIGKILL if that hangs."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    if not processes.wait_gone(pid, 15):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        processes.wait_gone(pid, 5)


def shared_stack() -> Stack | None:
    """The stack recorded in .local/tracking.json, if both of its processes still run."""
    try:
        stack = Stack(**json.loads(STATE_FILE.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    ours = _is_ours(stack.mlflow_pid, MLFLOW_MARK) and _is_ours(stack.postgres_pid, POSTGRES_MARK)
    return stack if ours and stack.alive() else None


def _leftovers() -> None:
    """A half-dead stack (one process killed): stop what is left, so `up` starts clean."""
    try:
        stack = Stack(**json.loads(STATE_FILE.read_text()))
    except (OSError, ValueError, TypeError):
        return
    if _is_ours(stack.mlflow_pid, MLFLOW_MARK):
        _stop_mlflow(stack.mlflow_pid)
    if _is_ours(stack.postgres_pid, POSTGRES_MARK):
        postgres.stop(postgres.Postgres(stack.postgres_pid, stack.postgres_port))
    STATE_FILE.unlink(missing_ok=True)


def _s3_env() -> dict[str, str]:
    """The artifact store's endpoint and credentials, for the server only: the S3-compatible
    endpoint ``AWS_ENDPOINT_URL_S3`` names, else the shared loopback S3. Never AWS itself:
    the bucket name is fixed here, and AWS's team server is infra/'s (a bucket of its own)."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3")
    if endpoint:
        keys = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
        env = {k: os.environ.get(k, local_s3.LOCAL_ENV[k]) for k in keys}
    else:
        endpoint = local_s3.up().endpoint
        env = dict(local_s3.LOCAL_ENV)
    local_s3.ensure_bucket(endpoint, ARTIFACT_BUCKET)
    return env | {"AWS_ENDPOINT_URL_S3": endpoint}


def up() -> tuple[Stack, bool]:
    """The shared stack, started unless it runs; (stack, started now)."""
    with local_s3._flock(LOCAL_DIR / "tracking.up.lock"):
        stack = shared_stack()
        if stack is not None:
            return stack, False
        _leftovers()
        stack = start(DATA_DIR, _s3_env())
        STATE_FILE.write_text(json.dumps(asdict(stack)))
        return stack, True


def down(wipe: bool = False) -> bool:
    with local_s3._flock(LOCAL_DIR / "tracking.up.lock"):
        stack = shared_stack()
        if stack is not None:
            stop(stack)
        _leftovers()
        if wipe:
            shutil.rmtree(DATA_DIR, ignore_errors=True)
    return stack is not None


@contextlib.contextmanager
def private_stack() -> Iterator[Stack]:
    """A stack of its own (PostgreSQL, S3 in memory, MLflow) in a temp folder, all stopped
    and deleted on exit: tests and `run --fresh`; never reads or writes .local/."""
    root = Path(tempfile.mkdtemp(prefix="waterml-tracking-"))
    root.chmod(0o755)  # PostgreSQL may run as another user (root: `pgserver`)
    try:
        with local_s3.private_server(ARTIFACT_BUCKET) as s3:
            stack = start(root, dict(local_s3.LOCAL_ENV, AWS_ENDPOINT_URL_S3=s3.endpoint))
            try:
                yield stack
            finally:
                stop(stack)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def exports(stack: Stack, user: str = SCIENTIST) -> str:
    return "\n".join(f"export {k}={v}" for k, v in stack.env(user).items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.tracking_server",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start (or reuse) the team tracking server; print the exports")
    sub.add_parser("status", help="say whether it runs, and where")
    down_cmd = sub.add_parser("down", help="stop MLflow and PostgreSQL")
    down_cmd.add_argument("--wipe", action="store_true", help=f"and delete {DATA_DIR}")
    run = sub.add_parser("run", help="run a command against it, as the data scientist")
    run.add_argument("--fresh", action="store_true", help="a private stack, stopped afterwards")
    run.add_argument("--user", choices=[CI, SCIENTIST], default=SCIENTIST)
    run.add_argument("cmd", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)

    try:
        return _dispatch(args)
    except RuntimeError as exc:  # a server that would not start: its log's last lines
        print(f"tracking server: error: {exc}", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "run":
        cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        if not cmd:
            print("error: nothing to run; usage: run [--fresh] -- CMD ...", file=sys.stderr)
            return 2
        with contextlib.ExitStack() as scope:
            stack = scope.enter_context(private_stack()) if args.fresh else up()[0]
            return subprocess.call(cmd, env=os.environ | stack.env(args.user))
    if args.command == "up":
        began = time.perf_counter()
        stack, started = up()
        how = f"started in {time.perf_counter() - began:.1f} s" if started else "already running"
        rel = Path(stack.data).relative_to(REPO) if Path(stack.data).is_relative_to(REPO) else ""
        print(
            f"team MLflow at {stack.uri} ({how}): PostgreSQL on {HOST}:{stack.postgres_port},"
            f" artifacts in s3://{ARTIFACT_BUCKET} at {stack.s3_endpoint}; data and"
            f" credentials in {rel or stack.data}/ (make tracking-down stops it)\n"
            f"# as the data scientist (CI's login: user {CI}, password in"
            f" {rel or stack.data}/credentials):\n" + exports(stack)
        )
        return 0
    if args.command == "status":
        running = shared_stack()
        if running is None:
            print("team MLflow is not running (make tracking-up starts it).")
            return 3
        print(f"team MLflow at {running.uri}: mlflow pid {running.mlflow_pid}, PostgreSQL pid"
              f" {running.postgres_pid} on port {running.postgres_port}")  # fmt: skip
        return 0
    stopped = down(wipe=args.wipe)
    print("team MLflow stopped." if stopped else "team MLflow was not running.")
    if args.wipe:
        print(f"deleted {DATA_DIR}: runs, versions, users and credentials are gone (the"
              f" artifacts stay in s3://{ARTIFACT_BUCKET}).")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
