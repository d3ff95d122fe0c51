"""The exploration notebook runs headlessly against a real registry, shows each model's
champion (or says it falls back to the candidate), and prints no warnings."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from traitlets.config import Config

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "explore.ipynb"


@pytest.fixture(scope="module")
def executed(trained: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every output of every code cell and the kernel's log, from one run against a copy of
    the trained store where wqi's version is the champion, as after a promotion, and
    potability has only its candidate (the shared store stays as other tests expect it)."""
    from mlflow import MlflowClient

    source = Path(trained["tracking_uri"].removeprefix("sqlite:///"))
    copy = tmp_path_factory.mktemp("notebook") / "mlflow.db"
    shutil.copy(source, copy)  # artifacts stay where they are: the runs name them by path
    uri = f"sqlite:///{copy}"
    version = trained["results"]["wqi"].version
    MlflowClient(tracking_uri=uri).set_registered_model_alias("wqi", "champion", version)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # As `make notebook` runs its kernels: CurveZMQ keys from the manager, so the kernel has
    # no reason to warn that it runs over TCP without encryption.
    config = Config()
    config.KernelManager.transport_encryption = "auto"
    kernel_log = copy.parent / "kernel.log"
    with pytest.MonkeyPatch.context() as env, kernel_log.open("w") as log:
        env.setenv("MLFLOW_TRACKING_URI", uri)
        resources = {"metadata": {"path": str(NOTEBOOK.parent)}}
        client = NotebookClient(nb, timeout=300, kernel_name="python3", resources=resources,
                                config=config)  # fmt: skip
        client.execute(stderr=log)  # the kernel process's own stderr
    outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]
    return {"outputs": outputs, "kernel_log": kernel_log.read_text()}


def text_of(outputs: list[Any]) -> str:
    return "\n".join(out.get("text", "") for out in outputs)


def test_notebook_shows_data_champions_and_plots(
    executed: dict[str, Any], trained: dict[str, Any]
) -> None:
    outputs = executed["outputs"]
    text = text_of(outputs)
    assert "wqi: brisbane_water_quality.csv, 30,894 rows" in text
    wqi = trained["results"]["wqi"].version
    potability = trained["results"]["potability"].version
    assert f"wqi: champion, version {wqi}" in text
    assert (
        f"potability: no champion yet (nothing promoted): the candidate, version {potability}"
        in text
    )
    assert "plots/residuals.png" in text and "plots/roc.png" in text
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 5


def test_notebook_prints_no_warnings(executed: dict[str, Any]) -> None:
    """Nothing on stderr (MLflow's download progress bars, tqdm's IProgress warning, library
    warnings), no error output, and no kernel warning: a reader sees data and models only."""
    outputs = executed["outputs"]
    noise = [o for o in outputs if o.get("name") == "stderr" or o["output_type"] == "error"]
    assert noise == []
    assert "warn" not in text_of(outputs).lower()
    assert "warn" not in executed["kernel_log"].lower(), executed["kernel_log"]


def test_make_notebook_opens_it_in_jupyterlab() -> None:
    repo = NOTEBOOK.parents[1]
    recipe = subprocess.run(["make", "-n", "-o", ".venv/.synced", "notebook"], cwd=repo,
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert ".venv/bin/jupyter lab" in recipe and "notebooks/explore.ipynb" in recipe
    version = subprocess.run([str(repo / ".venv" / "bin" / "jupyter-lab"), "--version"],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert int(version.split(".")[0]) >= 4


def test_make_notebook_starts_jupyterlab_whoever_runs_it(tmp_path: Path) -> None:
    """JupyterLab refuses to start as root ("Running as root is not recommended"), which is
    what a container runs as: `make notebook` says so and passes --allow-root there. Started
    for real, on a free port, with a browser that opens nothing; stopped once it serves."""
    env = os.environ | {"JUPYTER_PORT": "0", "BROWSER": "true",
                        "JUPYTER_RUNTIME_DIR": str(tmp_path)}  # fmt: skip
    make = [shutil.which("make") or "make", "-o", ".venv/.synced", "notebook"]
    server = subprocess.Popen(make, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True,
                              stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    stop = threading.Timer(180, os.killpg, (server.pid, signal.SIGKILL))  # never hang the suite
    stop.start()
    said: list[str] = []
    try:
        assert server.stdout is not None
        for line in server.stdout:
            said.append(line)
            if re.search(r"http://127\.0\.0\.1:\d+/lab\?token=", line):
                break
    finally:
        stop.cancel()
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    output = "".join(said)
    assert re.search(r"is running at:\n.*http://127\.0\.0\.1:\d+/lab", output), output[-3000:]
    assert "Running as root is not recommended" not in output
    as_root = "make notebook: running as root (a container?): JupyterLab needs --allow-root"
    assert (as_root in output) == (os.geteuid() == 0), output[:2000]
