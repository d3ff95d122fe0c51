"""`make invoke`: every failure is one clear line on stderr and a non-zero exit, no traceback."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import synthetic

from inference import local
from inference.bundle import sha256_hex

EVENTS = Path(__file__).resolve().parents[2] / "inference" / "events"


@pytest.fixture(autouse=True)
def _env(tmp_path: Path) -> Iterator[None]:
    saved = dict(os.environ)  # main() pins MODEL_* in os.environ, as a deploy would
    os.environ.update(MODEL_BUCKET="local-bucket", MODEL_CACHE_DIR=str(tmp_path / "cache"))
    yield
    os.environ.clear()
    os.environ.update(saved)


def one_error_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert local.main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_mistyped_event_path(capsys: pytest.CaptureFixture[str]) -> None:
    line = one_error_line(capsys, ["inference/events/drect.json"])
    assert "cannot read event file inference/events/drect.json" in line


def test_malformed_event_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"readings": ')
    assert "is not valid JSON" in one_error_line(capsys, [str(bad)])


def test_s3_connection_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import boto3
    from botocore.exceptions import EndpointConnectionError

    class Unreachable:
        def get_object(self, **kwargs: Any) -> Any:
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:9")

    monkeypatch.setattr(boto3, "client", lambda *args, **kwargs: Unreachable())
    line = one_error_line(capsys, [str(EVENTS / "direct.json")])
    assert "cannot reach S3" in line and "127.0.0.1:9" in line


def test_init_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = synthetic.wqi_bundle()
    bundle["golden"]["raw"]["margin"][1] += 0.5  # loads from the cache, fails its check
    data = synthetic.dumps(bundle)
    sha = sha256_hex(data)
    cache = Path(os.environ["MODEL_CACHE_DIR"])
    cache.mkdir()
    (cache / f"{sha}.joblib").write_bytes(data)
    manifest = {"key": "models/wqi/model.joblib", "version_id": "v1", "sha256": sha}
    monkeypatch.setattr(local, "release", lambda bucket, model: manifest)
    line = one_error_line(capsys, [str(EVENTS / "direct.json")])
    assert "model failed to load" in line and "golden check failed for 'margin'" in line


def test_answers_a_good_event(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = synthetic.dumps(synthetic.wqi_bundle())
    sha = sha256_hex(data)
    cache = Path(os.environ["MODEL_CACHE_DIR"])
    cache.mkdir()
    (cache / f"{sha}.joblib").write_bytes(data)
    manifest = {"key": "models/wqi/model.joblib", "version_id": "v1", "sha256": sha,
                "mlflow_version": 4}  # fmt: skip
    monkeypatch.setattr(local, "release", lambda bucket, model: manifest)
    assert local.main([str(EVENTS / "direct.json")]) == 0
    out = capsys.readouterr().out
    answer = json.loads(out[out.index("{\n") :])  # after the logger's one-line JSON records
    assert answer["statusCode"] == 200 and answer["model"]["version"] == "4"
