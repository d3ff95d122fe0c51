"""Run the serving image as Lambda runs it, on this machine: runc, no daemon.

``Sandbox`` (used by tests/image/ and benchmarks/image.py) starts this module as a driver in a
network namespace of its own (``unshare --net``) in which only loopback exists. In it the driver
serves a loopback S3 (moto), one loopback Lambda Runtime API per container, and, for the
pre-traffic hook, a loopback stand-in of the Lambda and CodeDeploy control plane whose
``Invoke`` goes to a running function container's Runtime API. Each container joins that
namespace, so it reaches those and nothing else. Lambda's other constraints:

- the image's root filesystem read-only; ``/tmp`` the only writable path, a 512 MB tmpfs;
- memory capped at the function's ``memory_mb`` (the cgroup's limit);
- a non-root user (uid 993, as Lambda's ``sbx_user1051``), no capabilities, no new privileges;
- the image's ENTRYPOINT and CMD (or the CMD infra gives the hook), the function's
  environment as the synthesized template sets it.

The driver speaks JSON lines on stdin/stdout (one request, one answer). Needs root and runc.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from tools import loopback_http

REPO = Path(__file__).resolve().parents[1]
LAMBDA_UID, LAMBDA_GID = 993, 990  # sbx_user1051, as the Lambda execution environment
TMP_SIZE = "512m"  # Lambda's default ephemeral storage
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "eu-west-1",
    "AWS_REGION": "eu-west-1",
}


# ---- the caller's side ------------------------------------------------------------------------
class SandboxError(RuntimeError):
    """The driver failed or answered with an error; the message carries its reason."""


class Sandbox:
    """The driver process and its namespace, as a context manager.

    Raises:
        SandboxError: the driver could not start, or a request failed.
    """

    def __init__(self, image: dict[str, Any]) -> None:
        self.image = image
        self.process: subprocess.Popen[str] | None = None
        self.endpoints: dict[str, Any] = {}

    def __enter__(self) -> Sandbox:
        self.process = subprocess.Popen(
            ["unshare", "--net", "--", sys.executable, "-m", "tools.lambda_sandbox"],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
        # The loopback endpoints inside the namespace: "s3", "control_plane".
        self.endpoints = self.request(op="image", image=self.image)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is None:
            return
        with contextlib.suppress(Exception):
            self.request(op="close")
        self.process.stdin.close()  # type: ignore[union-attr]
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def request(self, **message: Any) -> dict[str, Any]:
        assert self.process and self.process.stdin and self.process.stdout
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise SandboxError(f"the sandbox driver exited ({self.process.poll()})")
        answer = json.loads(line)
        if "error" in answer:
            raise SandboxError(answer["error"])
        return dict(answer)

    # Conveniences ------------------------------------------------------------------------
    def put(
        self, bucket: str, key: str, data: bytes, metadata: dict[str, str] | None = None
    ) -> str:
        answer = self.request(op="put", bucket=bucket, key=key, data=data.hex(),
                              metadata=metadata or {})  # fmt: skip
        return str(answer["version_id"])

    def start(self, name: str, env: dict[str, str], *, memory_mb: int, timeout_s: float = 30,
              cmd: list[str] | None = None) -> dict[str, Any]:  # fmt: skip
        return self.request(op="start", name=name, env=env, memory_mb=memory_mb, cmd=cmd,
                            timeout_s=timeout_s)  # fmt: skip

    def invoke(self, name: str, event: Any, timeout: float = 120) -> dict[str, Any]:
        return self.request(op="invoke", name=name, event=event, timeout=timeout)

    def next_posted(self, name: str, timeout: float = 120) -> dict[str, Any]:
        return self.request(op="posted", name=name, timeout=timeout)

    def stop(self, name: str) -> dict[str, Any]:
        return self.request(op="stop", name=name)


# ---- the driver (inside the namespace) --------------------------------------------------------
def loopback_up() -> None:
    """Bring `lo` up in this fresh network namespace (SIOCSIFFLAGS |= IFF_UP)."""
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14s", b"lo", 0, b"")
        flags = struct.unpack("16sH14s", fcntl.ioctl(sock, siocgifflags, request))[1]
        fcntl.ioctl(sock, siocsifflags, struct.pack("16sH14s", b"lo", flags | iff_up, b""))


class Container:
    """One function's execution environment: a runc container and its Runtime API."""

    def __init__(self, name: str, image: dict[str, Any], env: dict[str, str], memory_mb: int,
                 cmd: list[str] | None, state: Path, timeout_s: float) -> None:  # fmt: skip
        from tools.lambda_runtime_api import RuntimeApi

        self.name = f"waterml-{name}-{uuid.uuid4().hex[:8]}"
        self.api = RuntimeApi(timeout_s=timeout_s).start()
        self.state = state
        self.bundle = Path(tempfile.mkdtemp(prefix="bundle-", dir=state))
        self.log = self.bundle / "output.log"
        self.memory_mb = memory_mb
        full_env = {
            **image["env"], **CREDENTIALS, **env,
            "AWS_LAMBDA_RUNTIME_API": self.api.address,
            "AWS_LAMBDA_FUNCTION_NAME": env.get("AWS_LAMBDA_FUNCTION_NAME", name),
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "1",
        }  # fmt: skip
        self._write_config(image, full_env, cmd or image["cmd"])
        self.started = time.perf_counter()
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                ["runc", "--root", str(state / "runc"), "run", "--bundle", str(self.bundle),
                 self.name], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.next_id = 0

    def _write_config(self, image: dict[str, Any], env: dict[str, str], cmd: list[str]) -> None:
        subprocess.run(["runc", "spec", "--bundle", str(self.bundle)], check=True)
        path = self.bundle / "config.json"
        spec = json.loads(path.read_text())
        spec["root"] = {"path": image["rootfs"], "readonly": True}
        spec["hostname"] = "lambda"
        process = spec["process"]
        process.update(
            terminal=False, args=[*image["entrypoint"], *cmd], cwd=image["workdir"],
            env=[f"{k}={v}" for k, v in env.items()], noNewPrivileges=True,
            user={"uid": LAMBDA_UID, "gid": LAMBDA_GID},
            capabilities={k: [] for k in ("bounding", "effective", "inheritable", "permitted",
                                          "ambient")},
        )  # fmt: skip
        tmp_options = ["nosuid", "nodev", "mode=1777", f"size={TMP_SIZE}"]
        spec["mounts"].append(
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": tmp_options}
        )
        linux = spec["linux"]
        linux["namespaces"] = [
            {"type": "network", "path": f"/proc/{os.getpid()}/ns/net"} if n["type"] == "network"
            else n for n in linux["namespaces"]
        ]  # fmt: skip
        limit = self.memory_mb * 1024 * 1024  # and no swap beyond it, as in Lambda
        linux["resources"]["memory"] = {"limit": limit, "swap": limit}
        linux["cgroupsPath"] = f"/waterml-sandbox/{self.name}"
        path.write_text(json.dumps(spec))

    def invoke(self, event: Any, timeout: float) -> dict[str, Any]:
        self.next_id += 1
        request_id = f"{self.name}-{self.next_id}"
        sent = time.perf_counter()
        self.api.invoke(request_id, event)
        posted = self.posted(timeout)
        return {**posted, "seconds": time.perf_counter() - sent}

    def posted(self, timeout: float) -> dict[str, Any]:
        try:
            posted = self.api.wait(timeout=timeout)
        except Exception:
            raise RuntimeError(f"{self.name}: no answer in {timeout} s; output:\n"
                               + self.output()[-4000:]) from None  # fmt: skip
        return {"kind": posted.kind, "request_id": posted.request_id, "body": posted.body,
                "since_start": time.perf_counter() - self.started}  # fmt: skip

    def pid(self) -> int | None:
        result = subprocess.run(["runc", "--root", str(self.state / "runc"), "state", self.name],
                                capture_output=True, text=True)  # fmt: skip
        if result.returncode != 0:
            return None
        return int(json.loads(result.stdout)["pid"]) or None

    def rss_kb(self) -> dict[str, int]:
        """The runtime process's peak resident set (VmHWM) and the cgroup's peak usage."""
        found: dict[str, int] = {}
        pid = self.pid()
        if pid:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(("VmHWM:", "VmRSS:")):
                    found[line.split(":")[0]] = int(line.split()[1])
        cgroup = Path("/sys/fs/cgroup/memory/waterml-sandbox", self.name)
        for name in ("memory.max_usage_in_bytes", "memory.limit_in_bytes"):
            with contextlib.suppress(OSError):
                found[name] = int((cgroup / name).read_text()) // 1024
        return found

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> dict[str, Any]:
        runc = ["runc", "--root", str(self.state / "runc")]
        subprocess.run([*runc, "kill", self.name, "KILL"], capture_output=True)
        try:
            code = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(timeout=10)
        subprocess.run([*runc, "delete", "--force", self.name], capture_output=True)
        self.api.stop()
        return {"exit": code, "output": self.output()}


Invoker = Callable[[dict[str, Any], Any], dict[str, Any]]  # (configuration, event) -> posted


class ControlPlane:
    """Loopback stand-ins of the AWS APIs the pre-traffic hook and `status` call: CodeDeploy
    (the deployment's AppSpec, the hook's report) and Lambda (a version's configuration, an
    alias, Invoke, which ``invoke`` answers: a function container here, the in-process handler
    in tests/infra/test_run_under_policy.py)."""

    def __init__(self, invoke: Invoker) -> None:
        self.invoke = invoke
        self.functions: dict[str, dict[str, Any]] = {}  # "fn:version" -> configuration
        self.aliases: dict[str, dict[str, Any]] = {}  # "fn:alias" -> alias
        self.appspec = ""
        self.application = "app"  # the deployment's CodeDeploy application
        self.reports: list[dict[str, Any]] = []
        plane = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: Any, headers: dict[str, str] | None = None,
                        content_type: str = "application/json") -> None:  # fmt: skip
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_GET(self) -> None:  # Lambda GetFunctionConfiguration, GetAlias
                url = urlparse(self.path)
                parts = url.path.strip("/").split("/")
                qualifier = parse_qs(url.query).get("Qualifier", ["$LATEST"])[0]
                if len(parts) == 5 and parts[3] == "aliases":
                    config = plane.aliases.get(f"{unquote(parts[2])}:{parts[4]}")
                elif parts[-1] == "configuration":
                    config = plane.functions.get(f"{unquote(parts[2])}:{qualifier}")
                else:
                    config = None
                if config is None:
                    self._answer(404, {"Type": "User", "message": "Function not found"},
                                 {"x-amzn-errortype": "ResourceNotFoundException"})  # fmt: skip
                    return
                self._answer(200, {k: v for k, v in config.items() if not k.startswith("_")})

            def do_POST(self) -> None:
                body = self._body()
                target = self.headers.get("X-Amz-Target", "")
                if target.startswith("CodeDeploy_20141006."):
                    self._answer(200, plane.codedeploy(target.split(".")[1], json.loads(body)),
                                 content_type="application/x-amz-json-1.1")  # fmt: skip
                    return
                url = urlparse(self.path)  # Lambda Invoke
                parts = url.path.strip("/").split("/")
                qualifier = parse_qs(url.query).get("Qualifier", ["$LATEST"])[0]
                config = plane.functions[f"{unquote(parts[2])}:{qualifier}"]
                answer = plane.invoke(config, json.loads(body))
                error = {"X-Amz-Function-Error": "Unhandled"} if answer["kind"] == "error" else {}
                self._answer(200, json.dumps(answer["body"]).encode(),
                             {"X-Amz-Executed-Version": qualifier, **error})  # fmt: skip

        self.server = loopback_http.serve(Handler, "127.0.0.1")

    @property
    def endpoint(self) -> str:
        return f"http://{loopback_http.address(self.server)}"

    def codedeploy(self, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        digest = hashlib.sha256(self.appspec.encode()).hexdigest()
        if operation == "GetDeployment":  # names the revision by its digest only, as AWS does
            revision = {"revisionType": "AppSpecContent", "appSpecContent": {"sha256": digest}}
            return {"deploymentInfo": {"deploymentId": body["deploymentId"],
                                       "applicationName": self.application,
                                       "revision": revision}}  # fmt: skip
        if operation == "GetApplicationRevision":
            content = {"content": self.appspec, "sha256": digest}
            return {"revision": {"revisionType": "AppSpecContent", "appSpecContent": content}}
        if operation == "PutLifecycleEventHookExecutionStatus":
            self.reports.append(body)
            return {"lifecycleEventHookExecutionId": body["lifecycleEventHookExecutionId"]}
        raise ValueError(f"CodeDeploy {operation} is not served here")


class Driver:
    def __init__(self) -> None:
        loopback_up()
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log on stderr

        self.state = Path(tempfile.mkdtemp(prefix="waterml-sandbox-"))
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.moto.start()
        host, port = (str(x) for x in self.moto._server.server_address[:2])  # type: ignore[union-attr]
        self.s3_endpoint = f"http://{host}:{port}"
        self.image: dict[str, Any] = {}
        self.containers: dict[str, Container] = {}
        self.plane = ControlPlane(
            lambda config, event: self.containers[config["_container"]].invoke(event, 120)
        )

    def handle(self, message: dict[str, Any]) -> dict[str, Any]:
        op = message.pop("op")
        if op == "image":
            self.image = message["image"]
            return {"s3": self.s3_endpoint, "control_plane": self.plane.endpoint}
        if op == "put":
            return {"version_id": self._put(**message)}
        if op == "start":
            name = message["name"]
            if name in self.containers:
                self.containers.pop(name).stop()
            self.containers[name] = Container(name, self.image, message["env"],
                                              message["memory_mb"], message.get("cmd"),
                                              self.state, message.get("timeout_s", 30))  # fmt: skip
            return {"container": self.containers[name].name}
        if op == "invoke":
            return self.containers[message["name"]].invoke(message["event"], message["timeout"])
        if op == "posted":
            return self.containers[message["name"]].posted(message["timeout"])
        if op == "stats":
            return self.containers[message["name"]].rss_kb()
        if op == "stop":
            return self.containers.pop(message["name"]).stop()
        if op == "function":  # a published version, for the control plane
            self.plane.functions[f"{message['function']}:{message['version']}"] = {
                "FunctionName": message["function"], "Version": message["version"],
                "State": "Active", "Timeout": message.get("timeout", 30),
                "Environment": {"Variables": message["env"]}, "_container": message["container"],
            }  # fmt: skip
            return {}
        if op == "deployment":
            self.plane.appspec, self.plane.reports = message["appspec"], []
            return {}
        if op == "reports":
            return {"reports": self.plane.reports}
        if op == "close":
            for container in list(self.containers.values()):
                container.stop()
            self.containers.clear()
            return {}
        raise ValueError(f"unknown op {op!r}")

    def _put(self, bucket: str, key: str, data: str, metadata: dict[str, str]) -> str:
        import boto3

        s3 = boto3.client("s3", endpoint_url=self.s3_endpoint, aws_access_key_id="testing",
                          aws_secret_access_key="testing", region_name="eu-west-1")  # fmt: skip
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
            where = {"LocationConstraint": "eu-west-1"}
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration=where)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        put = s3.put_object(Bucket=bucket, Key=key, Body=bytes.fromhex(data), Metadata=metadata)
        return str(put["VersionId"])

    def close(self) -> None:
        self.handle({"op": "close"})
        self.moto.stop()
        shutil.rmtree(self.state, ignore_errors=True)  # the bundles and the containers' logs


def serve(lines: Iterator[str]) -> None:
    driver = Driver()
    try:
        for line in lines:
            try:
                answer = driver.handle(json.loads(line))
            except Exception as exc:  # reported to the caller, which raises SandboxError
                answer = {"error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(answer), flush=True)
    finally:
        driver.close()


if __name__ == "__main__":
    serve(iter(sys.stdin.readline, ""))
