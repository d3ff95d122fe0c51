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
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from settings import LOCAL_DIR, REPO
from tools import local_s3, postgres, processes, team_watchdog, tracking_backup, tracking_tls
from tools.team_auth import CI, SCIENTIST
from tools.tracking_secrets import ADMIN, Credentials, new_password, write_env_file
from training.locks import file_lock

HOST = "127.0.0.1"
DATA_DIR = LOCAL_DIR / "tracking"
STATE_FILE = LOCAL_DIR / "tracking.json"  # pids and ports of the running stack
ARTIFACT_BUCKET = "mlflow-artifacts"
DATABASES = ("mlflow", "mlflow_auth")  # MLflow's runs and registry; its users and grants
# The users, each holding the MLflow role of its name (tools/team_auth.py: what each role may
# not do). Both roles are granted EDIT on every experiment and registered model ("*"): create
# runs and versions, set tags and aliases; team_auth takes away deletes, `champion` and release
# tags for the data scientist. Separate users keep who-did-what in the runs and let one
# password be rotated without the other.
USERS = (CI, SCIENTIST)
GRANTS = {"experiment": "EDIT", "registered_model": "EDIT"}
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
    "update_user_password": "/api/2.0/mlflow/users/update-password",
}
# MLflow 3 defaults to 4 workers and background job runners (15 processes, 3.6 GiB):
# one worker serves a team's training and promotion traffic.
SERVER_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
}


@dataclass(frozen=True)
class Stack:
    """A running tracking server and the PostgreSQL under it."""

    mlflow_pid: int
    postgres_pid: int
    port: int
    postgres_port: int
    s3_endpoint: str
    data: str
    host: str = HOST  # where MLflow listens
    certificate: str = ""  # its TLS certificate (PEM): https, and what clients trust

    @property
    def uri(self) -> str:
        if not tracking_tls.needs_tls(self.host):
            name = HOST
        elif self.host in ("0.0.0.0", "::"):  # every interface: other machines use its name
            name = socket.gethostname()
        else:
            name = self.host
        return f"{'https' if self.certificate else 'http'}://{name}:{self.port}"

    @property
    def credentials(self) -> Credentials:
        return Credentials.load_or_create(Path(self.data), self.port)

    def env(self, user: str = SCIENTIST) -> dict[str, str]:
        """What a client needs: the URI, one user's login and the certificate to trust (no S3
        credentials)."""
        env = {
            "MLFLOW_TRACKING_URI": self.uri,
            "MLFLOW_TRACKING_USERNAME": user,
            "MLFLOW_TRACKING_PASSWORD": self.credentials.password(user),
        }
        if self.certificate:
            env["MLFLOW_TRACKING_SERVER_CERT_PATH"] = self.certificate
        return env

    def session(self, user: str) -> Any:
        """A requests session logged in as ``user``, trusting the server's certificate."""
        from requests import Session

        http = Session()
        http.auth = (user, self.credentials.password(user))
        http.verify = self.certificate or True
        if self.certificate:  # else REQUESTS_CA_BUNDLE, when set, replaces the server's
            http.trust_env = False
        return http

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
            # MLflow's basic auth, then the roles (tools/team_auth.py).
            "authorization_function = tools.team_auth:authenticate\n"
            # Every request re-hashes the password (PBKDF2): 0.8 s each on a busy 2-core
            # machine, a minute for one training run's ~75 requests. With one worker, the
            # cache's staleness (other workers keep an old password until the TTL) is moot.
            f"auth_cache_ttl_seconds = {AUTH_CACHE_SECONDS}\n"
        )
    return ini


def start(
    data: Path,
    s3_env: dict[str, str],
    timeout: float = 120.0,
    host: str = HOST,
    tls: tuple[Path, Path] | None = None,
) -> Stack:
    """PostgreSQL, then MLflow on it with the artifact proxy to ``s3_env``'s endpoint, then
    the users. MLflow listens on ``host``; beyond loopback only with ``tls`` (certificate,
    key). Whatever started is stopped again if a later step fails.

    Raises:
        RuntimeError: a server that would not start (its log's last lines), or ``host``
            beyond loopback without TLS.
    """
    if tracking_tls.needs_tls(host) and tls is None:
        raise RuntimeError(f"MLflow would listen on {host} in plain HTTP: beyond loopback it "
                           "needs TLS (a certificate and key, or a self-signed one: "
                           "tracking-up --host HOST --self-signed)")  # fmt: skip
    began = time.perf_counter()
    data.mkdir(parents=True, exist_ok=True)
    creds = Credentials.load_or_create(data, local_s3._free_port())
    _stop_unrecorded_mlflow(data)
    pg = postgres.start(
        data / "postgres", local_s3._free_port(), creds.postgres, data / "postgres.log"
    )
    try:
        for database in DATABASES:
            postgres.ensure_database(pg, creds.postgres, database)
        port = creds.port if not local_s3._listening(creds.port) else local_s3._free_port()
        env = _server_env(s3_env) | {
            "PYTHONPATH": str(REPO),  # tools/team_auth.py, which MLflow imports
            team_watchdog.ENABLED_ENV: "1",
            team_watchdog.POSTGRES_PID_ENV: str(pg.pid),
            "MLFLOW_AUTH_CONFIG_PATH": str(_auth_ini(data, creds, pg)),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": creds.flask_secret,
            # From the environment, not the command line: `ps` shows command lines.
            "MLFLOW_BACKEND_STORE_URI": pg.uri(creds.postgres, "mlflow", "psycopg2"),
        }
        tls_opts = [] if tls is None else [
            "--uvicorn-opts", f"--ssl-certfile {tls[0]} --ssl-keyfile {tls[1]}"
        ]  # fmt: skip
        log = data / "mlflow.log"
        out = open(log, "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("mlflow")), "server",
             "--app-name", "basic-auth", "--host", host, "--port", str(port), "--workers", "1",
             "--serve-artifacts", "--artifacts-destination", artifact_root(creds), *tls_opts],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=data, start_new_session=True,
        )  # fmt: skip
    except BaseException:
        postgres.stop(pg)
        raise
    certificate = "" if tls is None else str(tls[0])
    stack = Stack(proc.pid, pg.pid, port, pg.port, s3_env["AWS_ENDPOINT_URL_S3"], str(data),
                  host, certificate)  # fmt: skip
    try:
        _wait_ready(stack, proc, log, began + timeout)
        _ensure_users(stack, creds)
    except BaseException:
        stop(stack)
        raise
    return stack


def artifact_root(creds: Credentials) -> str:
    """Where the server keeps artifacts: its own folder of the bucket."""
    return f"s3://{ARTIFACT_BUCKET}/{creds.artifact_prefix}".rstrip("/")


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
            health = requests.get(
                f"{stack.uri}/health", timeout=2, verify=stack.certificate or True
            )
            if health.status_code == 200:
                return
        if proc.poll() is not None or time.perf_counter() > deadline:
            tail = log.read_text(errors="replace").splitlines()[-5:]
            raise RuntimeError(
                f"MLflow did not start on {stack.uri}" + "".join(f"\n  {t}" for t in tail)
            )
        time.sleep(0.2)


def _ensure_users(stack: Stack, creds: Credentials) -> None:
    """The CI and data-scientist users and their role grants (idempotent), as the admin."""
    admin = stack.session(ADMIN)

    def call(method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        resp = admin.request(method, f"{stack.uri}{path}", timeout=30, **kwargs)
        if resp.status_code >= 400:
            raise RuntimeError(f"MLflow auth {method} {path}: {resp.status_code} {resp.text}")
        return resp.json() if resp.content else {}

    listed = call("GET", AUTH_API["list_roles"], params={"workspace": WORKSPACE})["roles"]
    roles = {r["name"]: r for r in listed}
    for user in USERS:
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
        for resource, permission in GRANTS.items():
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
    """Stop every MLflow process running in ``data`` (start() runs the server there, and its
    uvicorn process inherits the folder). An `up` killed after starting it but before saving
    its state, or a `kill -9` of the recorded `mlflow server` alone, leaves one holding the
    URI's port with nothing recording it, and the next `up` would move to another port.
    Linux: found in /proc; elsewhere the recorded state is all there is."""
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            mine = b"mlflow" in (entry / "cmdline").read_bytes()
            if not mine or (entry / "cwd").resolve() != data.resolve():
                continue
        except OSError:
            continue  # gone meanwhile, or another user's
        _stop_mlflow(int(entry.name))


def _stop_mlflow(pid: int) -> None:
    """SIGTERM to its process group (the server's own session: start_new_session), so
    `mlflow server` and its uvicorn process stop together; SIGKILL if that hangs."""
    try:
        group = os.getpgid(pid)
    except ProcessLookupError:
        return
    if group == os.getpgrp():  # never our own group
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM)
    if not processes.wait_gone(pid, 15):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
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


def up(host: str | None = None, tls: tuple[Path, Path] | None = None) -> tuple[Stack, bool]:
    """The shared stack, started unless it runs; (stack, started now). ``host`` and ``tls``
    (certificate, key) change where it listens and are kept for the next starts."""
    with file_lock(LOCAL_DIR / "tracking.up.lock"):
        stack = shared_stack()
        if stack is not None and host is None:
            return stack, False
        if stack is not None:
            stop(stack)
        _leftovers()
        listen = _listening_on(host, tls)
        stack = start(DATA_DIR, _s3_env(), host=listen["host"], tls=_tls(listen))
        STATE_FILE.write_text(json.dumps(asdict(stack)))
        for user in USERS:
            write_env_file(DATA_DIR, user, stack.env(user))
        return stack, True


LISTEN_FILE = "listen.json"  # in the data folder: where MLflow listens, kept across starts


def _listening_on(host: str | None, tls: tuple[Path, Path] | None) -> dict[str, str]:
    path = DATA_DIR / LISTEN_FILE
    kept = json.loads(path.read_text()) if path.exists() else {"host": HOST}
    if host is None:
        return dict(kept)
    listen = {"host": host}
    if tls is not None:
        listen |= {"certificate": str(tls[0].resolve()), "key": str(tls[1].resolve())}
    elif tracking_tls.needs_tls(host):
        cert, key = tracking_tls.self_signed(DATA_DIR / "tls", host)
        listen |= {"certificate": str(cert), "key": str(key)}
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(listen))
    return listen


def _tls(listen: dict[str, str]) -> tuple[Path, Path] | None:
    if "certificate" not in listen:
        return None
    return Path(listen["certificate"]), Path(listen["key"])


def down(wipe: bool = False) -> tuple[bool, int]:
    """Stop the shared stack; (it ran, artifacts deleted). ``wipe``: also delete its data
    folder and every artifact in its folder of the bucket."""
    with file_lock(LOCAL_DIR / "tracking.up.lock"):
        stack = shared_stack()
        if stack is not None:
            stop(stack)
        _leftovers()
        deleted = 0
        if wipe:
            if (DATA_DIR / "credentials").exists():
                creds = Credentials.load_or_create(DATA_DIR, 0)
                s3 = tracking_backup.bucket_client(_s3_env())
                deleted = tracking_backup.wipe_artifacts(s3, ARTIFACT_BUCKET, creds)
            shutil.rmtree(DATA_DIR, ignore_errors=True)
    return stack is not None, deleted


def rotate(stack: Stack, user: str) -> None:
    """A new random password for ``user``: set in MLflow (as the admin), then kept in the
    credentials file and the user's env file; the old one stops working at once.

    Raises:
        RuntimeError: MLflow refused the change (the old password stays in force).
    """
    creds = stack.credentials
    new = new_password()
    admin = stack.session(ADMIN)
    body = {"username": user, "password": new}
    if user == ADMIN:  # MLflow asks for the current password of one's own
        body["current_password"] = creds.admin
    answer = admin.patch(f"{stack.uri}{AUTH_API['update_user_password']}", json=body, timeout=60)
    if answer.status_code != 200:
        raise RuntimeError(f"MLflow refused the new password of {user}: {answer.status_code}")
    updated = creds.with_password(user, new)
    updated.save(Path(stack.data))
    if user in USERS:
        write_env_file(Path(stack.data), user, stack.env(user))


def backup_to(stack: Stack, dest: Path) -> dict[str, Any]:
    """tools/tracking_backup.py's backup of a running stack."""
    creds = stack.credentials
    pg = postgres.Postgres(stack.postgres_pid, stack.postgres_port)
    s3 = tracking_backup.bucket_client(_stack_s3_env(stack))
    return tracking_backup.backup(pg, creds, DATABASES, s3, ARTIFACT_BUCKET, dest)


def restore_into(data: Path, s3_env: dict[str, str], source: Path) -> dict[str, Any]:
    """A backup into the stopped stack of ``data`` (PostgreSQL started for it and stopped
    again); its users get this data folder's passwords."""
    creds = Credentials.load_or_create(data, local_s3._free_port())
    pg = postgres.start(data / "postgres", local_s3._free_port(), creds.postgres,
                        data / "postgres.log")  # fmt: skip
    try:
        s3 = tracking_backup.bucket_client(s3_env)
        manifest = tracking_backup.restore(pg, creds, s3, ARTIFACT_BUCKET, source)
        _set_passwords(pg.uri(creds.postgres, "mlflow_auth", "psycopg2"), creds)
    finally:
        postgres.stop(pg)
    return manifest


def _set_passwords(auth_db: str, creds: Credentials) -> None:
    """Every known user's password as this data folder's credentials say (MLflow's own
    auth store hashes them)."""
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore()
    store.init_db(auth_db)
    for user in (ADMIN, *USERS):
        if store.has_user(user):
            store.update_user(user, password=creds.password(user))


def _stack_s3_env(stack: Stack) -> dict[str, str]:
    keys = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    return {k: os.environ.get(k, local_s3.LOCAL_ENV[k]) for k in keys} | {
        "AWS_ENDPOINT_URL_S3": stack.s3_endpoint
    }


@contextlib.contextmanager
def private_stack(tls: bool = False, restore_from: Path | None = None) -> Iterator[Stack]:
    """A stack of its own (PostgreSQL, S3 in memory, MLflow) in a temp folder, all stopped
    and deleted on exit: tests and `run --fresh`; never reads or writes .local/. ``tls``:
    served over HTTPS with a self-signed certificate; ``restore_from``: a backup's data."""
    root = Path(tempfile.mkdtemp(prefix="waterml-tracking-"))
    root.chmod(0o755)  # PostgreSQL may run as another user (root: `pgserver`)
    try:
        with local_s3.private_server(ARTIFACT_BUCKET) as s3:
            s3_env = dict(local_s3.LOCAL_ENV, AWS_ENDPOINT_URL_S3=s3.endpoint)
            if restore_from is not None:
                restore_into(root, s3_env, restore_from)
            certificate = tracking_tls.self_signed(root / "tls", HOST) if tls else None
            stack = start(root, s3_env, tls=certificate)
            try:
                yield stack
            finally:
                stop(stack)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def login_lines(stack: Stack, user: str = SCIENTIST) -> str:
    """The shell lines that log a shell in as ``user``, without showing its password."""
    path = Path(stack.data) / "env" / f"{user}.env"
    shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    return f"set -a; . {shown}; set +a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.tracking_server",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up_cmd = sub.add_parser("up", help="start (or reuse) the team tracking server")
    up_cmd.add_argument("--host", help="listen here (beyond loopback: TLS, kept for next starts)")
    up_cmd.add_argument("--cert", type=Path, help="the TLS certificate (PEM) to serve")
    up_cmd.add_argument("--key", type=Path, help="its private key (PEM)")
    sub.add_parser("status", help="say whether it runs, and where")
    down_cmd = sub.add_parser("down", help="stop MLflow and PostgreSQL")
    down_cmd.add_argument("--wipe", action="store_true",
                          help=f"and delete {DATA_DIR} and the server's artifacts")  # fmt: skip
    rotate_cmd = sub.add_parser("rotate", help="give a user a new random password")
    rotate_cmd.add_argument("user", choices=[ADMIN, CI, SCIENTIST])
    backup_cmd = sub.add_parser("backup", help="both databases and the artifacts, into DIR")
    backup_cmd.add_argument("dir", type=Path)
    restore_cmd = sub.add_parser("restore", help="a backup DIR into the (stopped) server")
    restore_cmd.add_argument("dir", type=Path)
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
        if (args.cert is None) != (args.key is None):
            print("error: --cert and --key go together", file=sys.stderr)
            return 2
        began = time.perf_counter()
        tls = None if args.cert is None else (args.cert, args.key)
        stack, started = up(args.host, tls)
        how = f"started in {time.perf_counter() - began:.1f} s" if started else "already running"
        rel = Path(stack.data).relative_to(REPO) if Path(stack.data).is_relative_to(REPO) else ""
        print(
            f"team MLflow at {stack.uri} ({how}): PostgreSQL on {HOST}:{stack.postgres_port},"
            f" artifacts in {artifact_root(stack.credentials)} at {stack.s3_endpoint}; data"
            f" and credentials in {rel or stack.data}/ (make tracking-down stops it)\n"
            f"# log this shell in as the data scientist (CI: env/{CI}.env):\n" + login_lines(stack)
        )
        return 0
    if args.command in ("rotate", "backup"):
        running = shared_stack()
        if running is None:
            print("error: team MLflow is not running (make tracking-up starts it)", file=sys.stderr)
            return 3
        if args.command == "rotate":
            rotate(running, args.user)
            where = f" and {login_lines(running, args.user)}" if args.user in USERS else ""
            print(f"{args.user}: new password in {Path(running.data) / 'credentials'}{where}")
        else:
            made = backup_to(running, args.dir)
            print(f"backed up {', '.join(made['databases'])} and {len(made['artifacts'])} "
                  f"artifacts into {args.dir}")  # fmt: skip
        return 0
    if args.command == "restore":
        if shared_stack() is not None:
            print("error: stop the server first (make tracking-down)", file=sys.stderr)
            return 3
        made = restore_into(DATA_DIR, _s3_env(), args.dir)
        print(f"restored {', '.join(made['databases'])} and {len(made['artifacts'])} artifacts;"
              " make tracking-up starts the server on them")  # fmt: skip
        return 0
    if args.command == "status":
        running = shared_stack()
        if running is None:
            print("team MLflow is not running (make tracking-up starts it).")
            return 3
        print(f"team MLflow at {running.uri}: mlflow pid {running.mlflow_pid}, PostgreSQL pid"
              f" {running.postgres_pid} on port {running.postgres_port}")  # fmt: skip
        return 0
    stopped, deleted = down(wipe=args.wipe)
    print("team MLflow stopped." if stopped else "team MLflow was not running.")
    if args.wipe:
        print(f"deleted {DATA_DIR} (runs, versions, users, credentials) and {deleted} artifact"
              f" objects in s3://{ARTIFACT_BUCKET}.")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
