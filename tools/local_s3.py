"""A loopback S3-compatible server (moto's server mode) for runs without an AWS account.

Real S3 is one variable away: when ``AWS_ENDPOINT_URL_S3`` or ``MODEL_BUCKET`` is already set,
nothing is started and commands talk to that endpoint (or to AWS) as configured.

    python -m tools.local_s3 up                 # start (or reuse) the shared server
    python -m tools.local_s3 down               # stop it
    python -m tools.local_s3 run -- CMD ...     # run CMD against the shared server
    python -m tools.local_s3 run --fresh -- CMD # a private server, stopped when CMD ends,
                                                # even when a real endpoint is configured
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STATE_DIR = REPO / ".local"
STATE_FILE = STATE_DIR / "s3.json"
DEFAULT_BUCKET = "waterml-models"
HOST = "127.0.0.1"
# Credentials moto accepts; they never reach AWS because the endpoint is loopback.
LOCAL_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass(frozen=True)
class LocalS3:
    pid: int
    port: int

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def env(self, bucket: str = DEFAULT_BUCKET) -> dict[str, str]:
        # Dummy credentials always: real ones must never be sent, even to loopback.
        return LOCAL_ENV | {"AWS_ENDPOINT_URL_S3": self.endpoint, "MODEL_BUCKET": bucket}


def external_endpoint_configured() -> bool:
    return bool(os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("MODEL_BUCKET"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((HOST, port)) == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _is_moto(pid: int) -> bool:
    """Whether ``pid`` still is our server: after a reboot the recorded pid may be reused."""
    try:
        return b"moto_server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return sys.platform != "linux"  # no /proc to ask: trust the port check


def start(port: int | None = None, log: Path | None = None, timeout: float = 20.0) -> LocalS3:
    """Start moto's server on loopback and wait until it accepts connections."""
    port = port or _free_port()
    moto = Path(sys.executable).with_name("moto_server")
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [str(moto), "-H", HOST, "-p", str(port)],
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # survives the make recipe that started it
    )
    deadline = time.monotonic() + timeout
    while not _listening(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"local S3 server did not start on {HOST}:{port}")
        time.sleep(0.05)
    return LocalS3(proc.pid, port)


def stop(server: LocalS3) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while _alive(server.pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(server.pid, os.WNOHANG)
        time.sleep(0.05)


def ensure_bucket(endpoint: str, bucket: str) -> None:
    """Create ``bucket`` with versioning enabled (idempotent)."""
    import boto3  # deferred: `down` and `--help` need no AWS SDK

    s3 = boto3.client("s3", endpoint_url=endpoint, **_client_credentials())
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})


def _client_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": os.environ.get("AWS_ACCESS_KEY_ID", LOCAL_ENV["AWS_ACCESS_KEY_ID"]),
        "aws_secret_access_key": os.environ.get(
            "AWS_SECRET_ACCESS_KEY", LOCAL_ENV["AWS_SECRET_ACCESS_KEY"]
        ),
        "region_name": os.environ.get("AWS_DEFAULT_REGION", LOCAL_ENV["AWS_DEFAULT_REGION"]),
    }


def shared_server() -> LocalS3 | None:
    """The shared server recorded in .local/s3.json, if it still runs."""
    try:
        state = json.loads(STATE_FILE.read_text())
        server = LocalS3(int(state["pid"]), int(state["port"]))
    except (OSError, ValueError, KeyError):
        return None
    running = _alive(server.pid) and _is_moto(server.pid) and _listening(server.port)
    return server if running else None


def up() -> LocalS3:
    server = shared_server()
    if server is None:
        STATE_DIR.mkdir(exist_ok=True)
        server = start(log=STATE_DIR / "s3.log")
        STATE_FILE.write_text(json.dumps({"pid": server.pid, "port": server.port}))
    ensure_bucket(server.endpoint, DEFAULT_BUCKET)
    return server


def down() -> bool:
    server = shared_server()
    if server is not None:
        stop(server)
    STATE_FILE.unlink(missing_ok=True)
    return server is not None


@contextlib.contextmanager
def private_server(bucket: str = DEFAULT_BUCKET) -> Iterator[LocalS3]:
    server = start()
    try:
        ensure_bucket(server.endpoint, bucket)
        yield server
    finally:
        stop(server)


def _run(command: list[str], fresh: bool) -> int:
    if not command:
        print("error: nothing to run; usage: run [--fresh] -- CMD ...", file=sys.stderr)
        return 2
    if fresh:  # tests and the demo: always a private server, whatever the environment says
        with private_server() as server:
            return subprocess.call(command, env=os.environ | server.env())
    if external_endpoint_configured():
        return subprocess.call(command)
    server = up()
    return subprocess.call(command, env=os.environ | server.env())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.local_s3",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start (or reuse) the shared loopback S3 server")
    sub.add_parser("down", help="stop the shared loopback S3 server")
    run = sub.add_parser("run", help="run a command with the S3 variables set")
    run.add_argument("--fresh", action="store_true", help="a private server, stopped afterwards")
    run.add_argument("cmd", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)

    if args.command == "run":
        cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        return _run(cmd, args.fresh)
    if external_endpoint_configured():
        print("S3 endpoint configured by the environment; no local server needed.")
        return 0
    if args.command == "up":
        server = up()
        print(f"local S3 at {server.endpoint}, bucket {DEFAULT_BUCKET} (make s3-down stops it)")
        return 0
    print("local S3 stopped." if down() else "local S3 was not running.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
