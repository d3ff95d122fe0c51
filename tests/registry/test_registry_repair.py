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
    bundles = "models/wqi/model.joblib"
    listed = boto3.client("s3").list_object_versions(Bucket=bucket, Prefix=bundles)
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


def test_a_repaired_hand_edit_is_skipped_by_the_rollback_walk(
    released_twice: dict[str, Any],
    versions: Versions,
    s3_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Before: after `promote` repaired a manifest with a bogus VersionId, plain `rollback`
    exited 16 (NoSuchVersion), `--steps 2` exited 0 as a silent no-op ("already live") and
    only `--steps 3` reached the last good release."""
    v1, v2 = released_twice["v1"], released_twice["v2"]
    forge_live(s3_env["bucket"], version_id="no-such-version-0000")
    code, _, err = call(capsys, "promote", "wqi", "--approvals",
                        str(released_twice["approvals"][v2]))  # fmt: skip
    assert code == 0, err

    code, _, err = call(capsys, "rollback", "wqi", "--steps", "2")
    assert code == errors.NoRelease.exit_code, err  # one release back can serve, not two
    assert "1 earlier release(s) that can serve" in err
    code, out, err = call(capsys, "rollback", "wqi")

    assert code == 0, err
    assert json.loads(out)["mlflow_version"] == v1  # the last good release, in one step
    assert "skipping the release of version" in err and "no-such-version-0000" in err
    assert versions.champion() == v1


def edit_body_only(bucket: str) -> str:
    """release.json's body edited by hand, its sha256 metadata left as it was; returns the
    manifest VersionId of the edit."""
    s3 = boto3.client("s3")
    key = manifest.manifest_key("wqi")
    good = s3.get_object(Bucket=bucket, Key=key)
    body = json.loads(good["Body"].read()) | {"reason": "edited by hand"}
    put = s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(body).encode(),
                        Metadata=good["Metadata"])  # fmt: skip
    return str(put["VersionId"])


def test_a_body_edited_without_its_metadata_is_reported_broken_everywhere(
    released_twice: dict[str, Any], s3_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: `current` exited 7, `reconcile` 7, and `releases` exited 0 listing every row
    with none marked live."""
    edited = edit_body_only(s3_env["bucket"])
    for argv in (["current", "wqi"], ["reconcile", "wqi"]):
        code, out, err = call(capsys, *argv)
        assert code == errors.BrokenRelease.exit_code and out == "", (argv, err)
        assert "release.json cannot be read" in err and "SHA-256 mismatch" in err
        assert "`promote`" in err and "`rollback`" in err  # the repairs, named

    code, out, err = call(capsys, "releases", "wqi")
    assert code == 17 and "is broken" in err
    live = out.splitlines()[1]
    assert live.startswith("!") and f"unreadable release.json (versionId {edited})" in live
    assert not any(line.startswith("*") for line in out.splitlines())
    code, out, _ = call(capsys, "releases", "wqi", "--json")
    rows = json.loads(out)
    assert code == 17 and rows[0]["manifest_version_id"] == edited and rows[0]["current"]
    assert "SHA-256 mismatch" in rows[0]["broken"] and len(rows) == 3


@pytest.mark.parametrize("repair", ["promote", "rollback", "rollback --to"])
def test_a_body_edited_without_its_metadata_is_repaired_by_the_cli(
    repair: str,
    released_twice: dict[str, Any],
    versions: Versions,
    s3_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Before: `promote`, `rollback` and `reconcile` all exited 7; the only way out was
    deleting the S3 object version by hand."""
    good, v2 = released_twice["live"], released_twice["v2"]
    edited = edit_body_only(s3_env["bucket"])
    argv = {
        "promote": ["promote", "wqi", "--approvals", str(released_twice["approvals"][v2])],
        "rollback": ["rollback", "wqi"],
        "rollback --to": ["rollback", "wqi", "--to", good["version_id"]],
    }[repair]

    code, out, err = call(capsys, *argv)

    assert code == 0, err
    repaired = json.loads(out)
    assert repaired["version_id"] == good["version_id"] and repaired["mlflow_version"] == v2
    assert edited in repaired["repaired"] and "SHA-256 mismatch" in repaired["repaired"]
    assert repaired["previous"]["release_id"] == good["release_id"]  # the last readable one
    assert call(capsys, "current", "wqi", "--verify")[0] == 0
    code, out, _ = call(capsys, "releases", "wqi")
    assert code == 0 and out.splitlines()[1].startswith("*")
    assert versions.champion() == v2
