"""`python -m registry models`: versions, aliases, metrics vs baseline, lineage and the live S3
VersionId, from MLflow and release.json, with or without S3."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from registry import cli
from tests.registry.registry_helpers import Versions, approve, run_cli

pytestmark = pytest.mark.integration


def models(capsys: pytest.CaptureFixture[str], *argv: str, rc: int = 0) -> str:
    code = cli.main(["models", *argv])
    out, err = capsys.readouterr()
    assert code == rc, err
    return out if rc == 0 else err


def test_lists_versions_aliases_lineage_and_the_live_version_id(
    versions: Versions, s3_env: dict[str, str], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    metrics = {"rmse": 11.0, "baseline_rmse": 13.75, "r2": 0.3}
    v1, sha1 = versions.add("wqi", metrics=metrics)
    v2, sha2 = versions.add("wqi", metrics=metrics | {"rmse": 12.0})
    approvals = approve(tmp_path / "approved.toml", wqi=v1)
    assert cli.main(["promote", "wqi", "--approvals", str(approvals)]) == 0
    release = json.loads(capsys.readouterr().out)

    listed = json.loads(models(capsys, "--json"))
    assert [m["name"] for m in listed] == ["wqi"]
    wqi = listed[0]
    assert wqi["primary_metric"] == "rmse" and wqi["greater_is_better"] is False
    assert wqi["s3"] | {"status": "released", "live_version": v1} == wqi["s3"]
    assert wqi["s3"]["live_version_id"] == release["version_id"]
    by_version = {v["version"]: v for v in wqi["versions"]}
    assert list(by_version) == [v2, v1]  # newest first
    one, two = by_version[v1], by_version[v2]
    assert one["aliases"] == ["champion"] and two["aliases"] == ["candidate"]
    assert one["artifact_sha256"] == sha1 and two["artifact_sha256"] == sha2
    assert one["data_sha256"] == "d" * 64 and one["git_sha"] == "abc1234"
    assert one["s3_version_id"] == release["version_id"] and one["live"] is True
    assert two["s3_version_id"] is None and two["live"] is False
    # Lift as training logs it: (baseline - model) / baseline for a lower-is-better metric.
    assert one["primary"] == {"metric": "rmse", "model": 11.0, "baseline": 13.75, "lift": 0.2}

    text = models(capsys)
    print(text)
    assert text.startswith(f"wqi (rmse, lower is better); live: version {v1}, S3 VersionId "
                           f"{release['version_id']}")  # fmt: skip
    rows = {line.split()[0]: line for line in text.splitlines()[2:]}
    assert rows[v1].split()[1:6] == ["champion", "11.0000", "13.7500", "+20.0%", sha1[:12]]
    assert rows[v1].endswith(f"{release['version_id']} (live)")
    assert rows[v2].split()[1] == "candidate" and rows[v2].endswith("not released")


def test_without_s3_the_mlflow_side_is_still_listed(
    versions: Versions, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MODEL_BUCKET", raising=False)
    version, sha = versions.add("wqi", tags={"s3_version_id": "v-old"})
    text = models(capsys, "wqi")
    assert "live: S3 not configured" in text.splitlines()[0]
    row = text.splitlines()[2]
    assert row.split()[0] == version and sha[:12] in row and row.endswith("v-old")


def test_unreachable_s3_is_a_note_not_a_failure(
    versions: Versions, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    versions.add("wqi")
    monkeypatch.setenv("MODEL_BUCKET", "waterml-models")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")  # discard port: refused
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    listed = json.loads(models(capsys, "--json"))
    assert listed[0]["s3"]["status"].startswith("S3 unavailable")
    assert listed[0]["versions"][0]["live"] is False


def test_unknown_and_invalid_models_are_refused(
    versions: Versions, capsys: pytest.CaptureFixture[str]
) -> None:
    versions.add("wqi")
    assert "not a registered model" in models(capsys, "potability", rc=3)
    assert "invalid model name" in models(capsys, "../wqi", rc=2)


def test_empty_registry(versions: Versions, capsys: pytest.CaptureFixture[str]) -> None:
    assert models(capsys) == "no registered models\n"
    assert json.loads(models(capsys, "--json")) == []


def test_real_trained_models_show_their_lift(
    trained: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the CLI as a program, on a copy of the store the real pipeline wrote."""
    db = tmp_path / "mlflow.db"
    shutil.copy(Path(trained["tracking_uri"].removeprefix("sqlite:///")), db)
    env = {k: v for k, v in os.environ.items() if k != "MODEL_BUCKET"}
    out = run_cli("models", "--json", env=env | {"MLFLOW_TRACKING_URI": f"sqlite:///{db}"})
    assert out.returncode == 0, out.stderr
    listed = {m["name"]: m for m in json.loads(out.stdout)}
    assert set(listed) == set(trained["results"])
    for name, result in trained["results"].items():
        (row,) = listed[name]["versions"]
        primary = row["primary"]
        assert primary["lift"] == pytest.approx(row["metrics"][f"{primary['metric']}_lift"])
        assert primary["lift"] > 0  # both shipped models beat their baseline
        assert row["artifact_sha256"] == result.artifact_sha256
        assert row["aliases"] == (["candidate"] if result.candidate else [])  # below its gates
        assert row["run_name"].startswith(f"{name} v{result.version} · data ")
        assert listed[name]["s3"] == {"status": "S3 not configured"}
