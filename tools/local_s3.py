"""A loopback S3-compatible server (moto's server mode) for runs without an AWS account.

Real S3 is one variable away: when ``AWS_ENDPOINT_URL_S3`` or ``MODEL_BUCKET`` is already set,
``run`` starts nothing and commands talk to that endpoint (or to AWS) as configured; ``up``
then starts nothing either and says which variable points elsewhere; ``down`` stops the local
server all the same (its data is local) and says that the exported endpoint is untouched.

The shared server keeps its buckets in .local/s3/ across restarts. moto holds S3 in memory, so
after every PUT/POST/DELETE, and before the client gets its answer, the S3 backend is pickled
to ``state.pickle`` (temp file, fsync, rename) with object bodies in content-addressed
``blobs/``. A kill -9 leaves the last acknowledged state, and VersionIds, ETags, metadata and
delete markers come back unchanged: the MLflow tags name those VersionIds.

    python -m tools.local_s3 up                 # start (or reuse) the shared server
    python -m tools.local_s3 down [--wipe]      # stop it (--wipe: and delete its buckets)
    python -m tools.local_s3 run -- CMD ...     # run CMD against the shared server
    python -m tools.local_s3 run --fresh -- CMD # a private in-memory server, stopped when CMD
                                                # ends, even when a real endpoint is configured
"""

from __future__ import annotations

import argparse
import contextlib
import copyreg
import datetime
import fcntl
import hashlib
import io
import json
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from settings import LOCAL_DIR, REPO
from tools import processes
from training.locks import file_lock

STATE_DIR = LOCAL_DIR
SERVER_FILE = STATE_DIR / "s3.json"  # pid and port of the running shared server
DATA_DIR = STATE_DIR / "s3"  # the shared server's buckets: state.pickle + blobs/
DEFAULT_BUCKET = "waterml-models"
HOST = "127.0.0.1"
# Credentials moto accepts; they never reach AWS because the endpoint is loopback.
LOCAL_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
WARNING = "local S3 warning:"  # the server's log lines that `start` repeats on stderr


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


EXTERNAL = ("AWS_ENDPOINT_URL_S3", "MODEL_BUCKET")  # set: commands use them, not a local S3


def exported() -> str:
    """The variables that point commands elsewhere, as ``NAME=value``, or ""."""
    return " and ".join(f"{k}={os.environ[k]}" for k in EXTERNAL if os.environ.get(k))


def external_endpoint_configured() -> bool:
    return bool(exported())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((HOST, port)) == 0


def _server_kind(pid: int) -> str | None:
    """Which server ``pid`` is: "persistent" (``serve``), "memory" (plain moto_server, as before
    .local/s3/ existed) or None, not ours: after a reboot the recorded pid may be reused."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "persistent" if sys.platform != "linux" else None  # no /proc: trust the port
    if b"tools.local_s3\0serve" in cmdline:
        return "persistent"
    return "memory" if b"moto_server" in cmdline else None


def start(
    port: int | None = None,
    log: Path | None = None,
    timeout: float = 20.0,
    data_dir: Path | None = None,
) -> LocalS3:
    """Start moto's server on loopback and wait until it accepts connections.

    Without ``data_dir`` it is plain moto_server (in memory: tests, the demo); with it, the
    buckets persist there (see the module docstring).

    Raises:
        RuntimeError: it did not accept connections within ``timeout`` (the log's tail says
            why).
    """
    port = port or _free_port()
    if data_dir is None:
        cmd = [str(Path(sys.executable).with_name("moto_server")), "-H", HOST, "-p", str(port)]
    else:
        cmd = [sys.executable, "-m", "tools.local_s3", "serve", "--port", str(port)]
        cmd += ["--data", str(data_dir)]
    offset = log.stat().st_size if log and log.exists() else 0
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        cmd,
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=REPO,  # `-m tools.local_s3` must import this checkout's module
        start_new_session=True,  # survives the make recipe that started it
    )
    deadline = time.monotonic() + timeout
    while not _listening(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            _repeat_warnings(log, offset)
            raise RuntimeError(f"local S3 server did not start on {HOST}:{port}" + _tail(log))
        time.sleep(0.05)
    _repeat_warnings(log, offset)
    return LocalS3(proc.pid, port)


def _repeat_warnings(log: Path | None, offset: int) -> None:
    """The server's stderr is its log file (it outlives us): say its warnings here too."""
    if log is None or not log.exists():
        return
    with open(log, "rb") as fh:
        fh.seek(offset)
        for line in fh.read().decode(errors="replace").splitlines():
            if line.startswith(WARNING):
                print(line, file=sys.stderr, flush=True)


def _tail(log: Path | None) -> str:
    if log is None or not log.exists():
        return ""
    lines = log.read_text(errors="replace").splitlines()[-3:]
    return "".join(f"\n  {line}" for line in lines)


def stop(server: LocalS3) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    processes.wait_gone(server.pid, 5)


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
        state = json.loads(SERVER_FILE.read_text())
        server = LocalS3(int(state["pid"]), int(state["port"]))
    except (OSError, ValueError, KeyError):
        return None
    running = processes.alive(server.pid) and _server_kind(server.pid) and _listening(server.port)
    return server if running else None


def up() -> LocalS3:
    # Two make targets started at once must not each start a server on the same data.
    with file_lock(STATE_DIR / "s3.up.lock"):
        server = shared_server()
        if server is None:
            server = start(log=STATE_DIR / "s3.log", data_dir=DATA_DIR)
            SERVER_FILE.write_text(json.dumps({"pid": server.pid, "port": server.port}))
        elif _server_kind(server.pid) == "memory":
            print(
                f"{WARNING} the running server (pid {server.pid}) predates {DATA_DIR} and keeps"
                " its buckets in memory only; `make s3-down && make s3-up` switches to the"
                " persistent one (what it holds now is lost)",
                file=sys.stderr,
            )
    ensure_bucket(server.endpoint, DEFAULT_BUCKET)
    return server


def down(wipe: bool = False) -> bool:
    """Stop the shared server (``make s3-down``), and with ``wipe`` delete its buckets; whether
    one was running.

    Raises:
        RuntimeError: the server's process did not stop.
    """
    server = shared_server()
    if server is not None:
        stop(server)
        if processes.alive(server.pid):
            raise RuntimeError(f"local S3 server (pid {server.pid}) did not stop")
    SERVER_FILE.unlink(missing_ok=True)
    if wipe:
        shutil.rmtree(DATA_DIR, ignore_errors=True)
    return server is not None


@contextlib.contextmanager
def private_server(bucket: str = DEFAULT_BUCKET) -> Iterator[LocalS3]:
    server = start()  # in memory: never reads or writes .local/s3/
    try:
        ensure_bucket(server.endpoint, bucket)
        yield server
    finally:
        stop(server)


# --- persistence (runs inside the `serve` process) -----------------------------------------

STATE_FORMAT = 1
BLOB_MIN = 1024  # bodies at least this long go to blobs/, written once, never re-pickled
MUTATING = frozenset({"PUT", "POST", "DELETE", "PATCH"})


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    """Readers see the old file or the whole new one, never a part (kill -9, power loss)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@dataclass(frozen=True)
class _Blob:
    digest: str  # sha256 of a body already in blobs/


class _Pickler(pickle.Pickler):
    """Pickles moto's S3 backend with bodies as blobs/ references (see ``persistent_id``)."""

    def __init__(self, file: IO[bytes], store: StateStore, key_class: type) -> None:
        super().__init__(file, protocol=5)
        self.store = store
        self.key_class = key_class
        self.referenced: set[str] = set()
        self.digests: dict[int, tuple[Any, int, str]] = {}  # this save's FakeKey digests
        self.wrote = False

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, _Blob):
            self.referenced.add(obj.digest)
            return ("blob", obj.digest)
        if type(obj) is bytes and len(obj) >= BLOB_MIN:
            return ("blob", self._put(obj))
        return None

    def _put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        path = self.store.blobs / digest
        if digest not in self.referenced and not path.exists():
            _write_atomic(path, data)
            self.wrote = True
        self.referenced.add(digest)
        return digest

    def _has_blob(self, digest: str) -> bool:
        return (self.store.blobs / digest).exists()  # not deleted by hand since the last save

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, self.key_class):
            return self._reduce_key(obj)
        cls = type(obj)
        if not isinstance(obj, dict) or cls is dict:
            return NotImplemented
        # Default pickling of a dict subclass goes through its items() and __setitem__, and
        # moto's versioned key store overrides both (items() yields only the newest version):
        # every older version and delete marker would be lost. Copy the raw entries instead.
        overridden = any(
            getattr(cls, name) is not getattr(dict, name)
            for name in ("items", "keys", "__iter__", "__setitem__")
        )
        if not overridden:
            return NotImplemented
        if getattr(obj, "__dict__", None):
            raise pickle.PicklingError(f"cannot save {cls.__qualname__} faithfully")
        raw = {key: dict.__getitem__(obj, key) for key in dict.keys(obj)}
        return (_NEWOBJ, (cls,), raw, None, None, dict.update)

    def _reduce_key(self, key: Any) -> Any:
        """FakeKey.__getstate__ without re-reading and re-hashing the body on every save: a
        FakeKey's body is set once, so its digest is remembered while the key exists."""
        state = dict(vars(key))
        if state.pop("_value_buffer", None) is None or state.pop("lock", None) is None:
            return NotImplemented  # moto changed FakeKey: let its own __getstate__ decide
        size = getattr(key, "contentsize", None)
        known = self.store.digests.get(id(key))
        if known and known[0] is key and known[1] == size and self._has_blob(known[2]):
            state["value"] = _Blob(known[2])
            self.digests[id(key)] = known
        else:
            try:
                value = key.value
            except ValueError:  # buffer closed: a disposed key, as moto's __getstate__ does
                value = b""
            if len(value) >= BLOB_MIN:
                digest = self._put(value)
                self.digests[id(key)] = (key, len(value), digest)
                state["value"] = _Blob(digest)
            else:
                state["value"] = value
        return (_NEWOBJ, (type(key),), state)


_NEWOBJ = copyreg.__newobj__  # type: ignore[attr-defined]  # cls.__new__(cls), no __init__


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: IO[bytes], blobs: Path) -> None:
        super().__init__(file)
        self.blobs = blobs

    def persistent_load(self, pid: Any) -> bytes:
        kind, digest = pid
        data = (self.blobs / digest).read_bytes()
        if kind != "blob" or hashlib.sha256(data).hexdigest() != digest:
            raise pickle.UnpicklingError(f"blob {digest} is damaged")
        return data


class StateStore:
    """moto's S3 backend, saved to and restored from ``data_dir``."""

    def __init__(self, data_dir: Path) -> None:
        self.dir = data_dir
        self.file = data_dir / "state.pickle"
        self.blobs = data_dir / "blobs"
        self.written_by = "unknown"  # the moto version in the file's header, once read
        # id(FakeKey) -> (the key, its size, its body's sha256); holding the key keeps the id
        # from being reused by another object.
        self.digests: dict[int, tuple[Any, int, str]] = {}

    def save(self) -> None:
        import moto
        from moto.s3.models import FakeKey, s3_backends

        buf = io.BytesIO()
        header = {"format": STATE_FORMAT, "moto": moto.__version__}
        pickle.dump(header, buf, protocol=5)
        body = {
            "accounts": {a: dict(dict.items(parts)) for a, parts in dict.items(s3_backends)},
            "bucket_accounts": dict(s3_backends.bucket_accounts),
        }
        pickler = _Pickler(buf, self, FakeKey)
        pickler.dump(body)
        if pickler.wrote:  # new blobs' names are durable before the state names them
            _fsync_dir(self.blobs)
        _write_atomic(self.file, buf.getvalue())
        _fsync_dir(self.dir)
        self.digests = pickler.digests  # only keys still held: their blobs stay referenced
        for blob in self.blobs.iterdir():  # bodies of versions that no longer exist
            if blob.name not in pickler.referenced and not blob.name.startswith("."):
                blob.unlink(missing_ok=True)

    def load(self) -> str:
        """Restore the saved buckets; returns a one-line summary for the log.

        Raises:
            ValueError: the saved state is in a format this code does not know.
        """
        from moto.s3.models import FakeKey, S3Backend, s3_backends

        if not self.file.exists():
            return f"no saved state in {self.dir}; starting empty"
        with open(self.file, "rb") as fh:
            header = pickle.load(fh)
            self.written_by = str(header.get("moto"))
            if header.get("format") != STATE_FORMAT:
                raise ValueError(f"unknown state format {header.get('format')!r}")
            body = _Unpickler(fh, self.blobs).load()
        for account, parts in body["accounts"].items():
            for partition, backend in parts.items():
                if not isinstance(backend, S3Backend):
                    raise TypeError(f"{account}/{partition} holds {type(backend).__name__}")
                dict.__setitem__(s3_backends[account], partition, backend)
        s3_backends.bucket_accounts.update(body["bucket_accounts"])
        versions = 0
        for _, _, backend in s3_backends.iter_backends():
            for bucket in backend.buckets.values():  # type: ignore[attr-defined]
                for _, keys in bucket.keys.iterlists():
                    for key in keys:
                        if isinstance(key, FakeKey):
                            key.response_dict  # noqa: B018 - fails on classes that changed
                        versions += 1
        buckets = len(s3_backends.bucket_accounts)
        return f"restored {buckets} bucket(s), {versions} object version(s) from {self.file}"

    def set_aside(self, error: BaseException) -> str:
        """An unreadable state is kept (not overwritten) for whoever can still read it."""
        from moto.s3.models import s3_backends

        for account in dict.values(s3_backends):
            account.reset()
        s3_backends.clear()
        s3_backends.bucket_accounts.clear()
        stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
        aside = Path(tempfile.mkdtemp(prefix=f"unreadable-{stamp}-", dir=self.dir))
        for part in (self.file, self.blobs):
            if part.exists():
                part.rename(aside / part.name)
        return (
            f"{WARNING} could not restore {self.file} ({type(error).__name__}: {error});"
            f" starting with no buckets. The old state is kept in {aside} (moto"
            f" {self.written_by} wrote it; that version may read it, else delete the folder)."
            " MLflow's s3_version_id tags now name versions this server lacks: promote again."
        )

    def prepare(self) -> None:
        self.blobs.mkdir(parents=True, exist_ok=True)
        for tmp in [*self.dir.glob(".*.tmp"), *self.blobs.glob(".*.tmp")]:
            tmp.unlink(missing_ok=True)  # left by a kill during a save; never the state


def _error_xml(message: str) -> bytes:
    from xml.sax.saxutils import escape

    return (
        '<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code>'
        f"<Message>local S3: {escape(message)}</Message></Error>"
    ).encode()


class _Persisting:
    """WSGI wrapper: requests run one at a time, and a mutating one is saved before its
    response leaves, so an acknowledged write is on disk."""

    def __init__(self, app: Callable[..., Iterable[bytes]], store: StateStore) -> None:
        self.app = app
        self.store = store
        self.lock = threading.Lock()  # a save must not pickle a backend another request edits

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        started: list[Any] = []

        def capture(status: str, headers: list[Any], exc_info: Any = None) -> Any:
            started[:] = [status, headers, exc_info]
            return lambda data: None  # the legacy write() callable: moto never uses it

        with self.lock:
            result = self.app(environ, capture)
            try:
                body = b"".join(result)
            finally:
                getattr(result, "close", lambda: None)()
            if environ.get("REQUEST_METHOD") in MUTATING:
                try:
                    self.store.save()
                except Exception as exc:  # disk full, ...: the write must not look durable
                    print(f"{WARNING} could not save {self.store.file}: {exc!r}", flush=True)
                    body = _error_xml(f"could not save {self.store.file}: {exc}")
                    headers = [("Content-Type", "application/xml")]
                    headers.append(("Content-Length", str(len(body))))
                    started[:] = ["500 Internal Server Error", headers, None]
        start_response(*started)
        return [body]

    def shutdown(self, signum: int, frame: Any) -> None:
        self.lock.acquire()  # let a save in progress finish; no request starts after it
        sys.exit(0)


def serve(port: int, data_dir: Path) -> int:
    """moto's server (as ``moto_server`` runs it) with the S3 backend kept in ``data_dir``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = open(data_dir / "lock", "a+")  # noqa: SIM115 - held for the process's lifetime
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "?"
        print(f"error: another local S3 server (pid {holder}) is serving {data_dir}")
        return 3
    lock.truncate(0)
    lock.write(str(os.getpid()))
    lock.flush()

    os.environ.setdefault("MOTO_PORT", str(port))  # moto addresses itself through it
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    store = StateStore(data_dir)
    store.prepare()
    began = time.perf_counter()
    try:
        summary = store.load()
    except Exception as exc:  # moto upgraded, file damaged, ...: start, and say so
        summary = store.set_aside(exc)
        store.prepare()
    print(f"{summary} ({time.perf_counter() - began:.2f} s)", flush=True)

    app = _Persisting(DomainDispatcherApplication(create_backend_app), store)
    signal.signal(signal.SIGTERM, app.shutdown)
    signal.signal(signal.SIGINT, app.shutdown)
    run_simple(HOST, port, app, threaded=True, request_handler=MotoRequestHandler)
    return 0


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
    down_cmd = sub.add_parser("down", help="stop the shared loopback S3 server")
    down_cmd.add_argument("--wipe", action="store_true", help=f"and delete {DATA_DIR}")
    run = sub.add_parser("run", help="run a command with the S3 variables set")
    run.add_argument("--fresh", action="store_true", help="a private server, stopped afterwards")
    run.add_argument("cmd", nargs=argparse.REMAINDER)
    serve_cmd = sub.add_parser("serve", help="(internal) the persistent server `up` starts")
    serve_cmd.add_argument("--port", type=int, required=True)
    serve_cmd.add_argument("--data", type=Path, required=True)
    args = parser.parse_args(argv)

    if args.command == "serve":
        return serve(args.port, args.data)
    if args.command == "run":
        cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        return _run(cmd, args.fresh)
    elsewhere = exported()
    if args.command == "up":
        if elsewhere:
            print(
                f"not starting the local S3: {elsewhere} is exported, so `make promote`,"
                " `make invoke` and the other targets use that, not a local server. For the"
                f" local S3: unset {' '.join(EXTERNAL)}; make s3-up"
            )
            return 0
        server = up()
        print(
            f"local S3 at {server.endpoint}, bucket {DEFAULT_BUCKET}, kept in"
            f" {DATA_DIR.relative_to(REPO)}/ (make s3-down stops it)"
        )
        return 0
    stopped = down(wipe=args.wipe)
    print("local S3 stopped." if stopped else "local S3 was not running.")
    if args.wipe:
        print(f"deleted {DATA_DIR}: every local release is gone; `make promote` starts anew.")
    if elsewhere:
        print(f"{elsewhere} is exported: the make targets use that, which this leaves alone.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
