"""SnapStart's hooks with a real bundle from the loopback S3: the model loaded and warmed before
the snapshot; after a restore, a /tmp copy that is gone or corrupt re-fetched and the model
reloaded, a changed pin refused, the generators re-seeded. The last tests run the handler under
the real runtime client with a SnapStart init, against the loopback Runtime API."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from runtime_api import RuntimeApi
from serving_helpers import KEY, upload
from test_runtime_client import start_runtime, stop

from inference import config as config_mod
from inference import handler, loader, snapstart
from inference.bundle import sha256_hex

pytestmark = pytest.mark.integration
EVENT = {"deviceId": "buoy-01", "readings": {"pH": 7.4, "turbidity": 3.2, "tds": 410.0,
                                             "temperature": 21.5}}  # fmt: skip


@pytest.fixture(autouse=True)
def _no_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapstart, "_snapshot_pins", None)


@pytest.fixture
def pinned(
    s3_env: dict[str, str], wqi_bytes: bytes, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> config_mod.Config:
    """The environment Lambda gives a published version: MODEL_* pins to a real upload."""
    env = {
        "MODEL_KEY": KEY, "MODEL_VERSION_ID": upload(s3_env, wqi_bytes),
        "MODEL_SHA256": sha256_hex(wqi_bytes), "MODEL_VERSION": "4",
        "MODEL_CACHE_DIR": str(cache_dir),
    }  # fmt: skip
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return config_mod.from_env()


@pytest.fixture
def s3_gets(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every S3 fetch the loader makes (still made)."""
    calls: list[str] = []
    original = loader.fetch_s3

    def spy(config: config_mod.Config, client: Any = None) -> bytes:
        calls.append(config.uri)
        return original(config, client)

    monkeypatch.setattr(loader, "fetch_s3", spy)
    return calls


def snapshot(pinned: config_mod.Config) -> handler.Service:
    """Init as Lambda runs it for a published version, then the before-snapshot hook."""
    handler.init(pinned)
    snapstart.before_snapshot()
    assert handler._service is not None
    return handler._service


def test_before_snapshot_loads_and_warms(
    pinned: config_mod.Config, s3_gets: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    warmed: list[int] = []
    original = handler.Service.predict

    def spy(self: handler.Service, features: Any, devices: Any) -> Any:
        warmed.append(len(devices))
        return original(self, features, devices)

    monkeypatch.setattr(handler.Service, "predict", spy)
    snapstart.before_snapshot()  # nothing loaded yet: the hook loads the pinned model
    service = handler._service
    assert service is not None and service.model.sha256 == pinned.sha256
    assert service.model.version_id == pinned.version_id and s3_gets == [pinned.uri]
    golden = service.model.bundle["golden"]["inputs"]
    assert warmed == [len(golden)]
    assert pinned.cache_path.read_bytes() and loader.pin_path(pinned).exists()


def test_restore_with_an_intact_copy_keeps_the_model(
    pinned: config_mod.Config, s3_gets: list[str]
) -> None:
    service = snapshot(pinned)
    report = snapstart.after_restore()
    assert report["outcome"] == "intact"
    assert handler._service is service  # nothing reloaded, nothing fetched
    assert s3_gets == [pinned.uri]


@pytest.mark.parametrize("damage", ["deleted", "corrupted", "pin record deleted"])
def test_a_damaged_tmp_copy_is_refetched_and_the_model_reloaded(
    pinned: config_mod.Config, wqi_bytes: bytes, s3_gets: list[str], damage: str
) -> None:
    service = snapshot(pinned)
    copy = pinned.cache_path
    if damage == "deleted":
        copy.unlink()
    elif damage == "corrupted":  # same length, one byte flipped: only the digest can tell
        data = bytearray(copy.read_bytes())
        data[len(data) // 2] ^= 0xFF
        copy.write_bytes(bytes(data))
    else:
        loader.pin_path(pinned).unlink()
    report = snapstart.after_restore()
    assert report["outcome"] == "refetched"
    assert s3_gets == [pinned.uri, pinned.uri]  # the snapshot's load, then the re-fetch
    assert copy.read_bytes() == wqi_bytes and loader.pin_path(pinned).exists()
    reloaded = handler._service
    assert reloaded is not None and reloaded is not service
    assert reloaded.predictor is not service.predictor  # rebuilt from the proven bytes
    answer = handler.lambda_handler(EVENT)
    assert answer["statusCode"] == 200 and answer["model"]["sha256"] == pinned.sha256[:12]


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("MODEL_SHA256", "ab" * 32, "sha256"),
        ("MODEL_VERSION_ID", "another-version", "version_id"),
        ("MODEL_VERSION", "5", "model_version"),
        ("MODEL_KEY", "models/other/model.joblib", "key"),
        ("MODEL_BUCKET", "another-bucket", "bucket"),
    ],
)
def test_a_changed_pin_refuses_to_serve(
    pinned: config_mod.Config,
    s3_gets: list[str],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    named: str,
) -> None:
    snapshot(pinned)
    monkeypatch.setenv(variable, value)
    with pytest.raises(snapstart.RestoreRefused, match=rf"refusing to serve: {named}: "):
        snapstart.after_restore()
    assert handler._service is None  # the snapshot's model is gone, not served
    assert s3_gets == [pinned.uri]  # and nothing was fetched for the new pin


def test_a_copy_that_cannot_be_refetched_fails_the_restore(
    pinned: config_mod.Config, s3_env: dict[str, str]
) -> None:
    snapshot(pinned)
    pinned.cache_path.unlink()
    boto3.client("s3", endpoint_url=s3_env["endpoint"]).delete_object(
        Bucket=pinned.bucket, Key=pinned.key, VersionId=pinned.version_id
    )
    with pytest.raises(loader.ModelNotFound):
        snapstart.after_restore()


def test_restore_reseeds_the_generators(pinned: config_mod.Config) -> None:
    snapshot(pinned)
    random.seed(1234)  # the state every environment restored from this snapshot would share
    np.random.seed(1234)
    snapstart.after_restore()
    assert random.random() != random.Random(1234).random()
    assert np.random.random() != np.random.RandomState(1234).random_sample()


def test_register_is_a_no_op_without_the_library(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", None)  # import raises ImportError
    assert snapstart.register() is False


def test_the_handler_registers_both_hooks_at_import() -> None:
    probe = (
        "import json, snapshot_restore_py as s, inference.handler\n"
        "hooks = s.get_before_snapshot() + s.get_after_restore()\n"
        "print(json.dumps([f'{f.__module__}.{f.__name__}' for f, *_ in hooks]))"
    )
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True,
                         text=True, cwd=Path(__file__).resolve().parents[2]).stdout  # fmt: skip
    assert json.loads(out) == ["inference.snapstart.before_snapshot",
                               "inference.snapstart.after_restore"]  # fmt: skip


# ---- under the real runtime client: AWS_LAMBDA_INITIALIZATION_TYPE=snap-start -----------------
def snap_start_runtime(api: RuntimeApi, pinned: config_mod.Config) -> subprocess.Popen[bytes]:
    env = {name: str(getattr(pinned, field)) for name, field in [
        ("MODEL_BUCKET", "bucket"), ("MODEL_KEY", "key"), ("MODEL_VERSION_ID", "version_id"),
        ("MODEL_SHA256", "sha256"), ("MODEL_VERSION", "model_version"),
    ]}  # fmt: skip
    env["AWS_LAMBDA_INITIALIZATION_TYPE"] = "snap-start"
    return start_runtime(api, env, pinned.cache_dir)


def test_snap_start_restore_refetches_a_deleted_copy(
    pinned: config_mod.Config, wqi_bytes: bytes
) -> None:
    api = RuntimeApi().start()
    api.on_restore = pinned.cache_path.unlink  # between the snapshot and the restore
    api.invoke("req-1", EVENT)
    process = snap_start_runtime(api, pinned)
    try:
        posted = api.wait(timeout=60)
    finally:
        log = stop(process)
        api.stop()
    assert posted.kind == "response", log
    assert posted.body["statusCode"] == 200
    assert posted.body["model"]["sha256"] == pinned.sha256[:12]
    assert pinned.cache_path.read_bytes() == wqi_bytes
    assert '"outcome":"refetched"' in log.replace(" ", ""), log


def test_snap_start_restore_that_fails_serves_nothing(
    pinned: config_mod.Config, s3_env: dict[str, str]
) -> None:
    def lose_everything() -> None:  # the copy and the pinned object both gone
        pinned.cache_path.unlink()
        boto3.client("s3", endpoint_url=s3_env["endpoint"]).delete_object(
            Bucket=pinned.bucket, Key=pinned.key, VersionId=pinned.version_id
        )

    api = RuntimeApi().start()
    api.on_restore = lose_everything
    api.invoke("req-1", EVENT)
    process = snap_start_runtime(api, pinned)
    try:
        posted = api.wait(timeout=60)
        code = process.wait(timeout=30)
    finally:
        log = stop(process)
        api.stop()
    assert posted.kind == "restore-error", log
    assert posted.body["errorType"] == "ModelNotFound"
    assert code == 65  # awslambdaric exits after reporting it: req-1 is never answered
    assert api.events.qsize() == 1
