"""The MLflow UI in a real browser: `make ui` (training/ui.py) serves the store the real
pipeline wrote, and headless Chromium (Debian's `chromium`; `make test` installs it) opens a
`wqi` run and its model version.

Guards issue 10 §1: with graphene 2.0 and graphql-core 3.3 every `POST /graphql` failed and
run pages said "Can't load run details"; a version's page said "Schema Inputs (0)". The
screenshots are saved under the test's tmp dir and their paths printed (`pytest -s`)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration
CHROMIUM = shutil.which("chromium")  # `make test-packages` (run by `make test`) installs it
# Nothing leaves the machine: no component updates, sync, field trials or first-run pings.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
SERVER_START_S = 120  # a cold `mlflow server` on a busy 2-core machine takes up to ~30 s
PAGE_TIMEOUT_MS = 30_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def ui(trained: dict[str, Any], tmp_path: Path) -> Iterator[dict[str, Any]]:
    """`python -m training.ui` (what `make ui` runs) on a copy of the trained store, with the
    `champion` alias on the wqi version, on a free loopback port."""
    from mlflow import MlflowClient

    db = tmp_path / "mlflow.db"
    shutil.copy(Path(trained["tracking_uri"].removeprefix("sqlite:///")), db)
    uri = f"sqlite:///{db}"
    version = trained["results"]["wqi"].version
    MlflowClient(tracking_uri=uri).set_registered_model_alias("wqi", "champion", version)
    port = free_port()
    log = tmp_path / "mlflow-server.log"
    repo = Path(__file__).resolve().parents[2]
    env = os.environ | {"MLFLOW_TRACKING_URI": uri, "MLFLOW_UI_PORT": str(port),
                        "PYTHONPATH": str(repo)}  # fmt: skip
    with log.open("wb") as out:
        # Its own session: the server's workers are stopped with it, by its process group.
        server = subprocess.Popen(
            [sys.executable, "-m", "training.ui"], cwd=tmp_path, env=env, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        started = time.monotonic()
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() - started > SERVER_START_S:
                pytest.fail(f"mlflow server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        print(f"mlflow server up in {time.monotonic() - started:.1f} s")
        yield {"base": base, "uri": uri, "log": log, "version": version}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def test_run_and_version_pages_show_metrics_plots_alias_and_lineage(
    trained: dict[str, Any], ui: dict[str, Any], tmp_path: Path
) -> None:
    if CHROMIUM is None:
        pytest.fail("no chromium on PATH: `make test-packages` installs it (`make test` runs it)")
    from mlflow import MlflowClient
    from playwright.sync_api import expect, sync_playwright

    client = MlflowClient(tracking_uri=ui["uri"])
    result = trained["results"]["wqi"]
    run = client.get_run(result.run_id)
    tags = client.get_model_version("wqi", ui["version"]).tags
    base, experiment = ui["base"], run.info.experiment_id
    run_url = f"{base}/#/experiments/{experiment}/runs/{result.run_id}"
    shots: list[Path] = []

    def shot(page: Any, name: str) -> None:
        path = tmp_path / f"{name}.png"
        page.screenshot(path=str(path))
        shots.append(path)
        print(f"screenshot: {path}")

    expect.set_options(timeout=PAGE_TIMEOUT_MS)  # assertions wait as long as actions do
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1100})
        page.set_default_timeout(PAGE_TIMEOUT_MS)
        try:
            # The run's overview: its name, metrics (with the lift) and datasets.
            page.goto(run_url)
            expect(page.get_by_role("heading", name=run.info.run_name)).to_be_visible()
            assistant = page.get_by_role("button", name="Close", exact=True)
            if assistant.count():  # the chat side panel: room for the page in the screenshots
                assistant.first.click()
            metrics = page.get_by_role("table").filter(has_text="baseline_rmse").first
            for name in ("rmse", "baseline_rmse", "rmse_lift", "confidence_ece"):
                row = metrics.get_by_role("row").filter(has=page.get_by_text(name, exact=True))
                expect(row.first).to_contain_text(str(run.data.metrics[name]))
            expect(page.get_by_text("wqi-train", exact=False).first).to_be_visible()
            assert page.get_by_text("Can't load run details").count() == 0
            shot(page, "1-run-overview")

            # Model metrics: a rendered chart per metric; the search narrows them to rmse's.
            page.goto(f"{run_url}/model-metrics")
            charts = page.locator(".js-plotly-plot")
            expect(charts.first).to_be_visible()
            page.get_by_placeholder("Search metric charts").fill("rmse")
            for name in ("rmse", "baseline_rmse", "rmse_lift"):
                expect(page.get_by_text(name, exact=True).first).to_be_visible()
            expect(charts).to_have_count(3)
            shot(page, "2-run-model-metrics")

            # The plots training logged, as images the browser decoded.
            page.goto(f"{run_url}/artifacts/plots/residuals.png")
            for plot in ("residuals", "confidence_calibration"):
                page.get_by_text(f"{plot}.png", exact=True).click()  # as a person picks it
                image = page.get_by_role("img", name=f"plots/{plot}.png")
                expect(image).to_be_visible()
                page.wait_for_function(
                    "img => img.complete && img.naturalWidth > 100", arg=image.element_handle()
                )
                shot(page, f"3-run-plot-{plot}")

            # The version: aliases, lineage tags, and the MLflow model's schema.
            page.goto(f"{base}/#/models/wqi/versions/{ui['version']}")
            for alias in ("champion", "candidate"):
                expect(page.get_by_role("status", name=alias)).to_be_visible()
            for key in ("artifact_sha256", "data_sha256", "git_sha"):
                row = page.get_by_role("row").filter(has=page.get_by_text(key, exact=True))
                expect(row.first).to_contain_text(tags[key])
            fields = load_schema(trained)
            inputs = page.get_by_role("row", name=f"Inputs ({len(fields) + 1})")  # + deviceId
            outputs = len(answer_signature(trained).outputs.inputs)  # the answer's columns
            expect(page.get_by_role("row", name=f"Outputs ({outputs})")).to_be_visible()
            inputs.click()  # expand: the features by name
            for field in [*fields, {"name": "deviceId", "nullable": True}]:
                need = "optional" if field["nullable"] else "required"
                expect(page.get_by_text(f"{field['name']} ({need})", exact=True)).to_be_visible()
            shot(page, "4-model-version")
        except Exception:
            shot(page, "failure")  # what the page showed when an expectation failed
            raise
        finally:
            browser.close()
    assert all(p.stat().st_size > 10_000 for p in shots)


def answer_signature(trained: dict[str, Any]) -> Any:
    """The signature the version was logged with (deviceId, the answer, its domain verdict)."""
    from inference.bundle import loads
    from training.mlflow_model import signature

    return signature(loads(Path(trained["bundles"]["wqi"]).read_bytes()))


def load_schema(trained: dict[str, Any]) -> list[dict[str, Any]]:
    """The model's inputs besides deviceId: the readings, and the timestamp its calendar
    features come from."""
    from inference.bundle import loads

    schema = loads(Path(trained["bundles"]["wqi"]).read_bytes())["schema"]
    dated = [{"name": "timestamp", "nullable": True}] if "timestamp" in schema else []
    return [f for f in schema["fields"] if "source" not in f] + dated
