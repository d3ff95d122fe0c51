"""Build the serving image from inference/Dockerfile without a Docker engine, on a local
stand-in for the AWS Lambda Python 3.11 base image (which no registry here serves).

    python -m tools.lambda_image build     # the stand-in base (once) and the image; prints its id

The stand-in has the Lambda layout the Dockerfile relies on: Debian 12's Python 3.11,
``LAMBDA_TASK_ROOT=/var/task``, the runtime interface client (awslambdaric) and boto3 in
``/var/runtime`` at the versions of uv.lock, and an entry point that runs
``python3 -m awslambdaric <CMD>`` as AWS's ``/lambda-entrypoint.sh`` does. The image itself is
the real Dockerfile, built by buildah with ``--build-arg BASE_IMAGE=<the stand-in>`` (the
pinned AWS stage is then never used). Everything lives under ``.local/image/`` (git-ignored):
buildah's storage (vfs driver, no daemon, no overlay mounts) and the base's root filesystem.
Running it as Lambda does is tools/lambda_sandbox.py. Needs root and Debian's buildah, runc and
debootstrap (``.ci/run`` installs them).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HOME = REPO / ".local" / "image"
UV = REPO / ".tools" / "bin" / "uv"  # bootstrapped by make venv
BASE_TAG = "localhost/waterml-lambda-base:py311-2"  # -N: the stand-in's layout version
IMAGE_REPO = "localhost/waterml-inference"
DEBIAN_SUITE = "bookworm"  # Debian 12: Python 3.11, the image's minor version
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# What the AWS base image carries besides Python: the runtime client and the SDK.
RUNTIME_PACKAGES = ("awslambdaric", "boto3")
ENTRYPOINT = "/lambda-entrypoint.sh"
ENTRYPOINT_SCRIPT = """#!/bin/sh
# The stand-in of AWS's /lambda-entrypoint.sh: the runtime interface client runs the CMD.
export PYTHONPATH="/var/runtime:${LAMBDA_TASK_ROOT}"
exec /usr/bin/python3 -m awslambdaric "$@"
"""
# Inputs of the image: a change to any of them builds a new one.
IMAGE_INPUTS = ("inference/Dockerfile", "inference/requirements.txt", ".dockerignore")
TOOLS = ("buildah", "runc", "debootstrap")


class ImageError(RuntimeError):
    """The image could not be built; the message says which step and why."""


@dataclasses.dataclass(frozen=True)
class Image:
    """A built image: its id, its root filesystem (read it, never write) and its config."""

    ref: str
    image_id: str
    rootfs: Path
    env: dict[str, str]
    entrypoint: list[str]
    cmd: list[str]
    workdir: str
    size_bytes: int


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def buildah(*args: str, capture: bool = True) -> str:
    """buildah on the private storage (vfs: plain directories, no kernel overlay needed).

    Raises:
        ImageError: buildah failed (its stderr is in the message).
    """
    command = ["buildah", "--storage-driver", "vfs", "--root", str(HOME / "storage"),
               "--runroot", str(HOME / "run"), *args]  # fmt: skip
    result = subprocess.run(command, capture_output=capture, text=True)
    if result.returncode != 0:
        raise ImageError(f"buildah {args[0]} failed: {(result.stderr or '')[-2000:]}")
    return (result.stdout or "").strip()


def _exists(ref: str) -> bool:
    try:
        buildah("inspect", "--type", "image", ref)
    except ImageError:
        return False
    return True


def base() -> str:
    """The stand-in base image (built once; its tag names the runtime packages' versions).

    Raises:
        ImageError: debootstrap, pip or buildah failed.
    """
    versions = {name: importlib.metadata.version(name) for name in RUNTIME_PACKAGES}
    tag = BASE_TAG + "-" + "-".join(f"{n}{v}" for n, v in versions.items())
    if _exists(tag):
        return tag
    rootfs = _debian()
    # The runtime client and boto3 as the AWS image has them: beside Python, not in the task
    # root. The host's Python is 3.11 too, so the cp311 wheels are picked.
    runtime = rootfs / "var" / "runtime"
    shutil.rmtree(runtime, ignore_errors=True)
    _run([str(UV), "pip", "install", "--quiet", "--python", sys.executable, "--only-binary",
          ":all:", "--target", str(runtime),
          *(f"{n}=={v}" for n, v in versions.items())], "uv pip install (runtime)")  # fmt: skip
    entry = rootfs / ENTRYPOINT.lstrip("/")
    entry.write_text(ENTRYPOINT_SCRIPT)
    entry.chmod(0o755)
    (rootfs / "var" / "task").mkdir(parents=True, exist_ok=True)
    python = rootfs / "usr" / "bin" / "python"  # the AWS image's `python` (the Dockerfile's)
    if not python.is_symlink():
        python.symlink_to("python3")
    container = buildah("from", "scratch")
    try:
        buildah("copy", "--quiet", container, str(rootfs), "/")
        buildah("config", "--env", "LAMBDA_TASK_ROOT=/var/task", "--env",
                "LAMBDA_RUNTIME_DIR=/var/runtime", "--env", "LANG=C.UTF-8", "--env",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--entrypoint", json.dumps([ENTRYPOINT]), "--workingdir", "/var/task",
                container)  # fmt: skip
        buildah("commit", "--quiet", container, tag)
    finally:
        buildah("rm", container)
    return tag


def _debian() -> Path:
    """Debian 12 with Python 3.11, pip and CA certificates (debootstrap, kept: minutes)."""
    rootfs = HOME / f"debian-{DEBIAN_SUITE}"
    done = HOME / f"debian-{DEBIAN_SUITE}.complete"
    if done.exists():
        return rootfs
    shutil.rmtree(rootfs, ignore_errors=True)
    rootfs.parent.mkdir(parents=True, exist_ok=True)
    _run(["debootstrap", "--variant=minbase", "--include=python3,python3-pip,ca-certificates",
          DEBIAN_SUITE, str(rootfs), DEBIAN_MIRROR], "debootstrap")  # fmt: skip
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
        shutil.rmtree(rootfs / cache, ignore_errors=True)
        (rootfs / cache).mkdir(parents=True)
    done.touch()
    return rootfs


def inputs_digest(base_ref: str) -> str:
    """What the image is built from: the base, the Dockerfile, the requirements, the code."""
    h = hashlib.sha256(base_ref.encode())
    paths = [REPO / p for p in IMAGE_INPUTS] + sorted((REPO / "inference").glob("*.py"))
    for path in paths:
        h.update(path.relative_to(REPO).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def build(*, dockerfile: Path | None = None, tag: str | None = None, context: Path = REPO,
          build_args: dict[str, str] | None = None) -> str:  # fmt: skip
    """Build ``dockerfile`` (the project's by default) in ``context`` on the stand-in base;
    reuses an image built from the same inputs (the project's), or with the same ``tag``.
    Returns its reference.

    Raises:
        ImageError: a tool is missing, or a step failed.
    """
    if missing_tools():
        raise ImageError(
            f"missing {', '.join(missing_tools())}: apt-get install buildah runc debootstrap"
        )
    base_ref = base()
    dockerfile = dockerfile or REPO / "inference" / "Dockerfile"
    ref = tag or f"{IMAGE_REPO}:{inputs_digest(base_ref)}"
    if _exists(ref):
        return ref
    volumes = ["-v", "/etc/ssl/certs:/etc/ssl/certs:ro"]
    if Path("/etc/pip.conf").exists():  # the machine's PyPI settings, for RUN pip install
        volumes += ["-v", "/etc/pip.conf:/etc/pip.conf:ro"]
    args = [a for k, v in (build_args or {}).items() for a in ("--build-arg", f"{k}={v}")]
    buildah("bud", "--quiet", "--isolation", "chroot", "--layers=false", *volumes, *args,
            "--build-arg", f"BASE_IMAGE={base_ref}", "-f", str(dockerfile), "-t", ref,
            str(context))  # fmt: skip
    return ref


def image(ref: str) -> Image:
    """The image's root filesystem (a working container kept mounted) and its config.

    Raises:
        ImageError: buildah could not inspect or mount it.
    """
    info = json.loads(buildah("inspect", "--type", "image", ref))
    config = info["OCIv1"]["config"]
    name = "run-" + info["FromImageID"][:12]
    containers = json.loads(buildah("containers", "--json") or "null") or []
    if not any(c.get("containername") == name for c in containers):
        buildah("from", "--name", name, "--pull-never", ref)
    rootfs = Path(buildah("mount", name))
    return Image(
        ref=ref,
        image_id=info["FromImageID"],
        rootfs=rootfs,
        env=dict(e.split("=", 1) for e in config.get("Env") or []),
        entrypoint=list(config.get("Entrypoint") or []),
        cmd=list(config.get("Cmd") or []),
        workdir=config.get("WorkingDir") or "/",
        size_bytes=_du(rootfs),
    )


def _du(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            file = Path(root, name)
            if not file.is_symlink():
                total += file.stat().st_size
    return total


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise ImageError(f"{what} failed: {(result.stderr or result.stdout)[-2000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["build"])
    parser.parse_args(argv)
    try:
        ref = build()
        built = image(ref)
    except ImageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"ref": ref, "rootfs": str(built.rootfs), "size_bytes": built.size_bytes}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
