"""Retries land on the release somebody chose: kill -9 at every step boundary of promote and
rollback (``REGISTRY_FAILPOINT``, deterministic), re-run the same command, and the final
manifest, history, bundle versions, tags and alias are exactly what one uninterrupted run gives.

The killed run is a real separate process (SIGKILL: no handler or ``finally`` runs); the re-run
goes through the same CLI entry point in-process, against the real loopback S3 and MLflow."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import boto3
import pytest

from registry import cli, failpoints
from registry.manifest import bundle_key, intent_key, manifest_key
from tests.registry.registry_helpers import Versions, approve, run_cli

pytestmark = pytest.mark.integration

PROMOTE_POINTS = ("checked", "uploaded", "manifest-written", "tags-written", "champion-moved",
                  "done")  # fmt: skip
ROLLBACK_POINTS = ("checked", "intent-written", "manifest-written", "champion-moved", "done")


def _count(bucket: str, key: str) -> int:
    resp = boto3.client("s3").list_object_versions(Bucket=bucket, Prefix=key)
    return len([v for v in resp.get("Versions", []) if v["Key"] == key])


def _killed_at(point: str, *argv: str) -> None:
    proc = run_cli(*argv, env=os.environ | {failpoints.ENV: point})
    assert proc.returncode == -signal.SIGKILL, (point, proc.returncode, proc.stderr)
    assert proc.stdout == ""  # killed before it could report anything


def _rerun(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[Any, str]:
    capsys.readouterr()
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out), err


def _state(versions: Versions, bucket: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """Everything one run of a command changes, without the run-specific stamps."""
    history, _ = _rerun(capsys, "releases", "wqi", "--json")
    live = history[0]
    tags = versions.tags("wqi", live["mlflow_version"])
    return {
        "history": [(h["action"], h["mlflow_version"], h["version_id"]) for h in history],
        "previous": live["previous"]["mlflow_version"] if live["previous"] else None,
        "bundle_versions": _count(bucket, bundle_key("wqi")),
        "champion": versions.champion(),
        "s3_version_id_tag": tags.get("s3_version_id") == live["version_id"],
        "promoted_at_tag": tags.get("promoted_at"),
    }


@pytest.mark.parametrize("point", PROMOTE_POINTS)
def test_promote_killed_at_any_step_then_rerun_is_one_promotion(
    point: str,
    versions: Versions,
    s3_env: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bucket = s3_env["bucket"]
    v1, _ = versions.add(metrics={"rmse": 6.0, "r2": 0.7})
    v2, _ = versions.add(metrics={"rmse": 5.0, "r2": 0.8})
    r1, _ = _rerun(capsys, "promote", "wqi", "--approvals", str(approve(tmp_path / "1", wqi=v1)))
    approvals = str(approve(tmp_path / "2", wqi=v2))

    _killed_at(point, "promote", "wqi", "--approvals", approvals)
    release, err = _rerun(capsys, "promote", "wqi", "--approvals", approvals)

    assert release["mlflow_version"] == v2 and release["previous"]["version_id"] == r1["version_id"]
    assert _state(versions, bucket, capsys) == {
        "history": [("promote", v2, release["version_id"]), ("promote", v1, r1["version_id"])],
        "previous": v1,
        "bundle_versions": 2,  # the killed run's upload is reused, never uploaded twice
        "champion": v2,
        "s3_version_id_tag": True,
        "promoted_at_tag": release["released_at"],
    }
    if point in ("manifest-written", "tags-written"):
        assert "reconciled MLflow with release.json" in err  # and it says so


@pytest.mark.parametrize("point", ROLLBACK_POINTS)
def test_rollback_killed_at_any_step_then_rerun_goes_back_once(
    point: str,
    versions: Versions,
    s3_env: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Before the fix a rollback killed after its manifest write and re-run went back a second
    step (3 -> 1 instead of 3 -> 2)."""
    bucket = s3_env["bucket"]
    promoted = []
    for i, rmse in enumerate((7.0, 6.0, 5.0)):
        v, _ = versions.add(metrics={"rmse": rmse, "r2": 0.8})
        approvals = str(approve(tmp_path / f"{i}.toml", wqi=v))
        promoted.append(_rerun(capsys, "promote", "wqi", "--approvals", approvals)[0])
    v1, v2, v3 = (r["mlflow_version"] for r in promoted)

    _killed_at(point, "rollback", "wqi")
    release, _ = _rerun(capsys, "rollback", "wqi")

    assert release["mlflow_version"] == v2 and release["action"] == "rollback"
    state = _state(versions, bucket, capsys)
    assert state["history"] == [
        ("rollback", v2, promoted[1]["version_id"]),
        *[("promote", r["mlflow_version"], r["version_id"]) for r in reversed(promoted)],
    ]
    assert state["champion"] == v2 and state["previous"] == v3 and state["bundle_versions"] == 3
    # The intent is closed: a deliberate second rollback goes one step further, to v1.
    again, _ = _rerun(capsys, "rollback", "wqi")
    assert again["mlflow_version"] == v1
    intent = boto3.client("s3").get_object(Bucket=bucket, Key=intent_key("wqi"))
    assert json.loads(intent["Body"].read())["state"] == "done"
    assert _count(bucket, manifest_key("wqi")) == 5


@pytest.mark.parametrize("point", ["manifest-written", "done"])
def test_a_leftover_intent_never_swallows_a_later_rollback(
    point: str,
    versions: Versions,
    s3_env: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Before: a rollback killed after its write (its intent still pending), then a promotion,
    then `rollback`: exit 0, "already done by an interrupted run ... nothing to do", and
    production stayed on the newest version. The intent is bound to the release.json version
    it started from: a promotion since makes it stale, and the rollback is a new one."""
    v1, _ = versions.add(metrics={"rmse": 6.0, "r2": 0.8})
    v2, _ = versions.add(metrics={"rmse": 5.0, "r2": 0.8})
    v3, _ = versions.add(metrics={"rmse": 4.0, "r2": 0.8})
    for v in (v1, v2):
        _rerun(capsys, "promote", "wqi", "--approvals", str(approve(tmp_path / v, wqi=v)))
    _killed_at(point, "rollback", "wqi")  # v2 -> v1 written, intent still open
    _rerun(capsys, "promote", "wqi", "--approvals", str(approve(tmp_path / v3, wqi=v3)))

    release, err = _rerun(capsys, "rollback", "wqi")

    assert "no longer applies" in err and "already done" not in err
    assert release["mlflow_version"] == v2 and release["rolled_back_from"] == v3
    assert versions.champion() == v2
    again, err = _rerun(capsys, "rollback", "wqi")  # and its own intent was closed
    assert again["mlflow_version"] == v1 and "interrupted" not in err


def test_a_rollback_killed_before_it_reported_is_finished_by_the_next_one(
    versions: Versions, s3_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its own release is live and nobody saw it: the re-run reports it, once."""
    for i, rmse in enumerate((6.0, 5.0)):
        v, _ = versions.add(metrics={"rmse": rmse, "r2": 0.8})
        _rerun(capsys, "promote", "wqi", "--approvals", str(approve(tmp_path / str(i), wqi=v)))
    _killed_at("done", "rollback", "wqi")
    first, err = _rerun(capsys, "rollback", "wqi")
    assert "already done by an interrupted run" in err
    assert f"python -m registry rollback wqi --to {first['version_id']}" in err
    proc = run_cli("rollback", "wqi")  # closed: a deliberate second rollback has nowhere to go
    assert proc.returncode == 14, proc.stderr
