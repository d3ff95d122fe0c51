"""A broken live release is visible and repairable; MLflow catches up with the manifest; model
names and digests are taken in one canonical form. Real loopback S3 and MLflow store."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from registry import cli, errors, manifest
from tests.registry.registry_helpers import REPO, Versions, approve
from training.spec import SpecError, load_spec

pytestmark = pytest.mark.integration


def call(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def released_twice(
    versions: Versions, s3_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> dict[str, Any]:
    v1, _ = versions.add(metrics={"rmse": 6.0, "r2": 0.7})
    v2, _ = versions.add(metrics={"rmse": 5.0, "r2": 0.8})
    out = {}
    for v in (v1, v2):
        out[v] = approve(tmp_path / f"{v}.toml", wqi=v)
        code, stdout, err = call(capsys, "promote", "wqi", "--approvals", str(out[v]))
        assert code == 0, err
    return {"v1": v1, "v2": v2, "approvals": out, "live": json.loads(stdout)}


def forge_live(bucket: str, **changes: str) -> dict[str, Any]:
    """Edit release.json as a person with write access would, with a matching digest: the
    manifest reads as intact, but names bytes that are not there."""
    s3 = boto3.client("s3")
    key = manifest.manifest_key("wqi")
    body = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    body |= changes
    data = (json.dumps(body, indent=2) + "\n").encode()
    s3.put_object(Bucket=bucket, Key=key, Body=data, Metadata=manifest.stored_metadata(data))
    return dict(body)


def test_current_and_releases_flag_a_live_release_whose_bytes_are_gone(
    released_twice: dict[str, Any], s3_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: both exited 0 with no warning."""
    forge_live(s3_env["bucket"], version_id="no-such-version-0000")

    code, out, err = call(capsys, "current", "wqi")
    assert code == errors.BrokenRelease.exit_code == 17
    assert out == "" and "is broken" in err and "does not exist" in err

    code, out, err = call(capsys, "releases", "wqi")
    assert code == 17 and "no-such-version-0000" in err
    assert out.splitlines()[1].startswith("!")  # the history is still shown, the live row marked
    code, out, _ = call(capsys, "releases", "wqi", "--json")
    rows = json.loads(out)
    assert code == 17 and "does not exist" in rows[0]["broken"]
    assert all("broken" not in r for r in rows[1:])


def test_plain_rollback_repairs_by_going_to_the_last_good_release(
    released_twice: dict[str, Any],
    versions: Versions,
    s3_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Before: plain `rollback` exited 14 ("not in its promotion history")."""
    good = released_twice["live"]
    forge_live(s3_env["bucket"], version_id="no-such-version-0000")

    code, out, err = call(capsys, "rollback", "wqi")

    assert code == 0, err
    repaired = json.loads(out)
    assert repaired["version_id"] == good["version_id"]
    assert repaired["mlflow_version"] == released_twice["v2"]
    assert "does not exist" in repaired["repaired"]
    assert call(capsys, "current", "wqi", "--verify")[0] == 0
    assert versions.champion() == released_twice["v2"]


def test_promoting_the_approved_version_repairs_without_a_second_upload(
    released_twice: dict[str, Any],
    versions: Versions,
    s3_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Before: `promote` (even --force) exited 16 reading the missing version."""
    bucket, good = s3_env["bucket"], released_twice["live"]
    forge_live(bucket, version_id="no-such-version-0000")
    approvals = str(released_twice["approvals"][released_twice["v2"]])

    code, out, err = call(capsys, "promote", "wqi", "--approvals", approvals)

    assert code == 0, err
    repaired = json.loads(out)
    assert repaired["version_id"] == good["version_id"]  # the real bytes, found by their digest
    assert "does not exist" in repaired["repaired"] and repaired["action"] == "promote"
    listed = boto3.client("s3").list_object_versions(Bucket=bucket, Prefix="models/wqi/model")
    assert len(listed["Versions"]) == 2
    assert call(capsys, "current", "wqi", "--verify")[0] == 0


def test_reconcile_brings_mlflow_back_in_line_and_says_so(
    released_twice: dict[str, Any], versions: Versions, capsys: pytest.CaptureFixture[str]
) -> None:
    v1, v2 = released_twice["v1"], released_twice["v2"]
    versions.client.set_registered_model_alias("wqi", "champion", v1)  # as a crash leaves it
    versions.client.delete_model_version_tag("wqi", v2, "s3_version_id")

    code, out, err = call(capsys, "reconcile", "wqi")

    assert code == 0 and json.loads(out) == released_twice["live"]
    assert "reconciled MLflow" in err and f"champion {v1} -> {v2}" in err
    assert versions.champion() == v2
    assert versions.tags("wqi", v2)["s3_version_id"] == released_twice["live"]["version_id"]
    code, _, err = call(capsys, "reconcile", "wqi")
    assert code == 0 and "already agrees" in err


def test_a_wiped_bucket_is_named_as_such(
    released_twice: dict[str, Any],
    s3_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """MLflow still names a champion released to a bucket that no longer holds it (a local S3
    restarted without its data, or MODEL_BUCKET naming another bucket)."""
    from tools import local_s3

    other = f"test-{uuid.uuid4().hex[:12]}"
    local_s3.ensure_bucket(s3_env["endpoint"], other)
    monkeypatch.setenv("MODEL_BUCKET", other)

    code, _, err = call(capsys, "rollback", "wqi")

    assert code == errors.NoRelease.exit_code
    assert "champion is version" in err and "wiped" in err and released_twice["v2"] in err


def test_digest_in_upper_case_is_the_same_digest(
    versions: Versions, s3_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: a tag in upper case was compared with the bundle's lowercase digest (exit 7)."""
    v1, sha = versions.add()
    versions.client.set_model_version_tag("wqi", v1, "artifact_sha256", sha.upper())
    approvals = approve(tmp_path / "a.toml", wqi=(v1, sha.upper()))

    code, out, err = call(capsys, "promote", "wqi", "--approvals", str(approvals))

    assert code == 0, err
    assert json.loads(out)["sha256"] == sha  # stored in canonical form


@pytest.mark.parametrize("name", ["../specs/wqi", "WQI", "wqi/../potability", "", "9wqi"])
def test_model_names_are_validated_before_any_use(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: `../specs/wqi` walked the spec lookup up a folder and reached S3 keys."""
    for argv in (["promote", name], ["rollback", name], ["current", name], ["releases", name]):
        code, out, err = call(capsys, *argv)
        assert code == errors.UsageError.exit_code and out == ""
        assert "invalid model name" in err, argv
    with pytest.raises(SpecError, match="invalid model name"):
        load_spec(name)


def test_make_train_refuses_a_path_as_model_name() -> None:
    train = subprocess.run(
        [sys.executable, "-m", "training", "../specs/wqi"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert train.returncode == 2 and "invalid model name" in train.stderr
