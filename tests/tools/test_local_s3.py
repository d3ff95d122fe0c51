"""The shared loopback S3 keeps its buckets across restarts (issue 9 §5).

Each test runs real servers on free ports with a temp data dir: never the checkout's .local/.
"""

from __future__ import annotations

import base64
import hashlib
import os
import pickle
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tools import local_s3

pytestmark = pytest.mark.integration

BUCKET = "persist-test"
BUNDLE = "models/wqi/model.joblib"
MANIFEST = "models/wqi/release.json"


def client(endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, **local_s3._client_credentials())


@pytest.fixture
def servers() -> Iterator[list[local_s3.LocalS3]]:
    """Every server a test starts is stopped, whatever happens."""
    started: list[local_s3.LocalS3] = []
    yield started
    for server in started:
        local_s3.stop(server)


def write_history(s3: Any, bucket: str) -> dict[str, str]:
    """What the registry does: bundle versions with metadata and a checksum, a conditional
    manifest history, a withdrawn manifest version, and a delete marker."""
    big = os.urandom(5000)  # above BLOB_MIN: stored in blobs/
    small = b"second bundle"  # below it: pickled inline
    ids: dict[str, str] = {}
    for name, data in (("bundle1", big), ("bundle2", small)):
        resp = s3.put_object(
            Bucket=bucket,
            Key=BUNDLE,
            Body=data,
            Metadata={"sha256": hashlib.sha256(data).hexdigest(), "mlflow_version": name},
            ChecksumSHA256=base64.b64encode(hashlib.sha256(data).digest()).decode(),
        )
        ids[name] = resp["VersionId"]
    first = s3.put_object(Bucket=bucket, Key=MANIFEST, Body=b'{"v": 1}', IfNoneMatch="*")
    second = s3.put_object(Bucket=bucket, Key=MANIFEST, Body=b'{"v": 2}', IfMatch=first["ETag"])
    lost = s3.put_object(Bucket=bucket, Key=MANIFEST, Body=b'{"lost": 1}' + os.urandom(2000))
    s3.delete_object(Bucket=bucket, Key=MANIFEST, VersionId=lost["VersionId"])  # withdrawn
    s3.put_object(Bucket=bucket, Key=MANIFEST, Body=b'{"v": 3}', IfMatch=second["ETag"])
    s3.delete_object(Bucket=bucket, Key=BUNDLE)  # a delete marker on top of both bundles
    return {"stale_etag": second["ETag"], "withdrawn": lost["VersionId"], **ids}


def snapshot(s3: Any, bucket: str) -> dict[str, Any]:
    """Everything a client can see: versions, delete markers, metadata, ETags, bodies."""
    listing = s3.list_object_versions(Bucket=bucket)
    objects = {}
    for version in listing.get("Versions", []):
        which = {"Key": version["Key"], "VersionId": version["VersionId"]}
        got = s3.get_object(Bucket=bucket, ChecksumMode="ENABLED", **which)
        body = got.pop("Body").read()
        got.pop("ResponseMetadata")
        objects[version["VersionId"]] = {**got, "sha256": hashlib.sha256(body).hexdigest()}
    return {
        "versioning": s3.get_bucket_versioning(Bucket=bucket)["Status"],
        "versions": listing.get("Versions", []),
        "delete_markers": listing.get("DeleteMarkers", []),
        "objects": objects,
    }


def assert_conditional_writes(s3: Any, bucket: str, history: dict[str, str]) -> None:
    """If-Match / If-None-Match still judge against the restored ETags."""
    for cond in ({"IfMatch": history["stale_etag"]}, {"IfNoneMatch": "*"}):
        with pytest.raises(ClientError) as refused:
            s3.put_object(Bucket=bucket, Key=MANIFEST, Body=b'{"v": "x"}', **cond)
        assert refused.value.response["Error"]["Code"] == "PreconditionFailed"
    current = s3.head_object(Bucket=bucket, Key=MANIFEST)["ETag"]
    put = s3.put_object(Bucket=bucket, Key=MANIFEST, Body=b'{"v": 4}', IfMatch=current)
    assert s3.head_object(Bucket=bucket, Key=MANIFEST)["VersionId"] == put["VersionId"]


def test_history_survives_up_down_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`make s3-down` then `make s3-up` used to start an empty server (moto keeps S3 in
    memory): every release, and the VersionIds MLflow records, were gone."""
    monkeypatch.setattr(local_s3, "STATE_DIR", tmp_path)
    monkeypatch.setattr(local_s3, "SERVER_FILE", tmp_path / "s3.json", raising=False)
    monkeypatch.setattr(local_s3, "STATE_FILE", tmp_path / "s3.json", raising=False)
    monkeypatch.setattr(local_s3, "DATA_DIR", tmp_path / "s3", raising=False)
    bucket = local_s3.DEFAULT_BUCKET
    try:
        server = local_s3.up()
        s3 = client(server.endpoint)
        history = write_history(s3, bucket)
        before = snapshot(s3, bucket)
        assert local_s3.down()
        assert local_s3.shared_server() is None

        server = local_s3.up()
        s3 = client(server.endpoint)
        assert snapshot(s3, bucket) == before
        assert_conditional_writes(s3, bucket, history)
    finally:
        local_s3.down()


def test_kill_9_after_the_last_write_keeps_it(
    tmp_path: Path, servers: list[local_s3.LocalS3]
) -> None:
    data, log = tmp_path / "s3", tmp_path / "s3.log"
    server = local_s3.start(data_dir=data, log=log)
    servers.append(server)
    local_s3.ensure_bucket(server.endpoint, BUCKET)
    s3 = client(server.endpoint)
    history = write_history(s3, BUCKET)
    before = snapshot(s3, BUCKET)
    # The server that holds the data dir refuses a second writer.
    with pytest.raises(RuntimeError, match="another local S3 server"):
        local_s3.start(data_dir=data, log=log, timeout=10)

    os.kill(server.pid, signal.SIGKILL)  # every write above was acknowledged, so is on disk
    os.waitpid(server.pid, 0)  # reaped: the process is gone, not a zombie holding the lock
    # What a kill in the middle of a later save leaves: temp files, never a partial state.
    half = [data / ".state.pickle.99999.tmp", data / "blobs" / ".0123abcd.99999.tmp"]
    for path in half:
        path.write_bytes(b"\x80\x05half a pickle")

    server = local_s3.start(data_dir=data, log=log)
    servers.append(server)
    s3 = client(server.endpoint)
    after = snapshot(s3, BUCKET)
    assert after == before
    assert {history["bundle1"], history["bundle2"]} <= set(after["objects"])
    assert history["withdrawn"] not in after["objects"]
    assert [m["Key"] for m in after["delete_markers"]] == [BUNDLE]
    meta = after["objects"][history["bundle1"]]["Metadata"]
    assert meta["mlflow_version"] == "bundle1"
    assert_conditional_writes(s3, BUCKET, history)
    assert not any(path.exists() for path in half)
    # Only bodies of existing versions are kept, each once, under its digest.
    blobs = sorted(p.name for p in (data / "blobs").iterdir())
    big = [o["sha256"] for o in after["objects"].values() if o["ContentLength"] >= 1024]
    assert blobs == sorted(big)
    assert "restored 1 bucket(s), 6 object version(s)" in log.read_text()


def test_unreadable_state_starts_empty_and_is_kept_aside(
    tmp_path: Path, servers: list[local_s3.LocalS3], capsys: pytest.CaptureFixture[str]
) -> None:
    """A moto upgrade that renamed a class: start, say so, and keep the old file."""
    data = tmp_path / "s3"
    (data / "blobs").mkdir(parents=True)
    state = data / "state.pickle"
    header = pickle.dumps({"format": local_s3.STATE_FORMAT, "moto": "0.0.1"})
    state.write_bytes(header + b"\x80\x05cmoto.s3.models\nFakeKeyRenamed\n.")

    server = local_s3.start(data_dir=data, log=tmp_path / "s3.log")
    servers.append(server)
    warning = capsys.readouterr().err
    assert f"could not restore {state}" in warning
    assert "moto 0.0.1 wrote it" in warning
    assert client(server.endpoint).list_buckets()["Buckets"] == []
    (aside,) = data.glob("unreadable-*")
    assert (aside / "state.pickle").read_bytes().startswith(header)
    local_s3.ensure_bucket(server.endpoint, BUCKET)  # and the new state is saved as usual
    assert state.exists()


def test_fresh_servers_never_touch_the_shared_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make demo` / `make test`: a private in-memory server, whatever .local/s3/ holds."""
    monkeypatch.setattr(local_s3, "DATA_DIR", tmp_path / "s3")
    monkeypatch.setattr(local_s3, "SERVER_FILE", tmp_path / "s3.json")
    put = (
        "import boto3, os; boto3.client('s3').put_object("
        "Bucket=os.environ['MODEL_BUCKET'], Key='k', Body=b'x')"
    )
    assert local_s3.main(["run", "--fresh", "--", sys.executable, "-c", put]) == 0
    assert not (tmp_path / "s3").exists()
    assert not (tmp_path / "s3.json").exists()


def test_up_and_down_say_what_they_do_when_the_environment_points_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: both printed "S3 endpoint configured by the environment" and did nothing; `down`
    left the local server running."""
    monkeypatch.setattr(local_s3, "STATE_DIR", tmp_path)
    monkeypatch.setattr(local_s3, "SERVER_FILE", tmp_path / "s3.json")
    monkeypatch.setattr(local_s3, "DATA_DIR", tmp_path / "s3")
    for name in local_s3.EXTERNAL:
        monkeypatch.delenv(name, raising=False)
    try:
        server = local_s3.up()  # started while nothing pointed elsewhere
        monkeypatch.setenv("MODEL_BUCKET", "team-bucket")
        assert local_s3.main(["up"]) == 0
        said = capsys.readouterr().out
        assert "not starting the local S3: MODEL_BUCKET=team-bucket is exported" in said
        assert "unset AWS_ENDPOINT_URL_S3 MODEL_BUCKET" in said
        assert local_s3.shared_server() == server  # the running one is left as it was

        assert local_s3.main(["down"]) == 0
        said = capsys.readouterr().out
        assert "local S3 stopped." in said and "MODEL_BUCKET=team-bucket is exported" in said
        assert local_s3.shared_server() is None
    finally:
        local_s3.down()
