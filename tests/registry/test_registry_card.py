"""The model card command, moved from training/ to the registry (`python -m registry.card`),
and the card published when a version is promoted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from registry import card, cli
from tests.registry.registry_helpers import approve
from training import model_card
from training.mlflow_names import PROMOTED_AT, S3_URI, S3_VERSION_ID

pytestmark = pytest.mark.integration
DOMAIN = "## Domain: where its answers hold"


def version_of(trained: dict[str, Any], name: str) -> Any:
    client = MlflowClient(tracking_uri=trained["tracking_uri"])
    return client, client.get_model_version(name, trained["results"][name].version)


@pytest.fixture
def store_copy(trained: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The trained store copied (its artifacts stay where they are), so a test may tag it."""
    source = Path(trained["tracking_uri"].removeprefix("sqlite:///"))
    shutil.copy(source, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def test_the_command_prints_the_card_with_the_s3_version_id_once_promoted(
    trained: dict[str, Any], store_copy: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from registry.tracking import Tracking

    version = trained["results"]["wqi"].version
    assert card.main(["wqi", "--version", version]) == 0
    assert "| S3 VersionId | not promoted |" in capsys.readouterr().out
    tracking = Tracking(store_copy)  # what promotion records (registry/promote.py)
    tracking.record_release(tracking.version("wqi", version), {
        S3_URI: "s3://waterml-models/models/wqi/model.joblib", S3_VERSION_ID: "3HL4kqtJlcpXroDTDmJ",
        PROMOTED_AT: "2026-11-30T06:00:00Z",
    })  # fmt: skip
    tracking.set_champion("wqi", version)
    assert card.main(["wqi"]) == 0  # the champion by default
    out = capsys.readouterr().out
    assert "| S3 VersionId | 3HL4kqtJlcpXroDTDmJ |" in out and DOMAIN in out
    page = tmp_path / "card.html"
    assert card.main(["wqi", "--format", "html", "--out", str(page)]) == 0
    text = page.read_text(encoding="utf-8")
    assert '<section id="domain--where-its-answers-hold">' in text
    assert "<td>3HL4kqtJlcpXroDTDmJ</td>" in text


def test_publish_writes_the_promoted_card_back_to_its_version(
    trained: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a store of its own (publishing writes artifacts): a version carrying the trained wqi
    card's facts, promoted, then published."""
    from registry.tracking import Tracking

    source, shipped = version_of(trained, "wqi")
    facts = source.download_artifacts(shipped.run_id, model_card.FACTS, str(tmp_path))
    recorded = json.loads(Path(facts).read_text(encoding="utf-8"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("wqi", (tmp_path / "artifacts").as_uri())
    run = client.create_run(experiment)
    client.create_registered_model("wqi")
    mv = client.create_model_version("wqi", f"{run.info.artifact_uri}/model", run.info.run_id)
    recorded |= {"version": str(mv.version), "run_id": run.info.run_id}
    client.log_dict(run.info.run_id, recorded, model_card.FACTS)
    model_card.publish(client, recorded)  # as registration leaves it
    assert "| S3 VersionId | not promoted |" in client.get_model_version("wqi", "1").description
    tracking = Tracking(uri)
    tracking.record_release(tracking.version("wqi", "1"), {S3_VERSION_ID: "3HL4kqtJlcpXroDTDmJ"})
    assert card.main(["wqi", "--publish", "--out", str(tmp_path / "card.md")]) == 0
    described = client.get_model_version("wqi", "1").description
    assert "| S3 VersionId | 3HL4kqtJlcpXroDTDmJ |" in described and DOMAIN in described
    logged = client.download_artifacts(run.info.run_id, model_card.MARKDOWN, str(tmp_path / "d"))
    assert Path(logged).read_text(encoding="utf-8") == described


def test_unknown_models_versions_and_versions_without_a_card_are_one_line_errors(
    trained: dict[str, Any], store_copy: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert card.main(["nosuch"]) == 3
    assert "unknown model 'nosuch'" in capsys.readouterr().err
    assert card.main(["wqi", "--version", "99"]) == 3
    assert "wqi has no version '99'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        card.main(["../wqi"])
    assert exited.value.code == 2
    client = MlflowClient(tracking_uri=store_copy)  # a version registered before cards
    _, mv = version_of(trained, "wqi")
    run = client.create_run(client.get_run(mv.run_id).info.experiment_id)
    # A runs:/ source: a models:/ source is looked up through MLflow's global client, whose
    # tracking URI an earlier test may have pointed elsewhere.
    old = client.create_model_version("wqi", f"runs:/{run.info.run_id}/model", run.info.run_id)
    capsys.readouterr()
    assert card.main(["wqi", "--version", str(old.version)]) == 4
    err = capsys.readouterr().err
    assert "has no model card" in err and "Traceback" not in err
    assert err.startswith("card: error: ")


def test_promotion_publishes_the_card_with_its_s3_version_id(
    trained: dict[str, Any],
    store_copy: str,
    s3_env: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The released version's page shows where it serves from, with no `--publish` step."""
    version = trained["results"]["wqi"].version
    client = MlflowClient(tracking_uri=store_copy)
    assert "| S3 VersionId | not promoted |" in client.get_model_version("wqi", version).description
    approvals = approve(tmp_path / "approved.toml", wqi=version)
    assert cli.main(["promote", "wqi", "--approvals", str(approvals)]) == 0
    out = capsys.readouterr()
    release = json.loads(out.out)
    assert f"published the card of wqi version {version}" in out.err
    described = client.get_model_version("wqi", version).description
    assert f"| S3 VersionId | {release['version_id']} |" in described and DOMAIN in described
    assert f"| promoted at | {release['released_at']} |" in described


def test_a_card_that_cannot_be_published_does_not_fail_the_release(
    trained: dict[str, Any], store_copy: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from registry.tracking import Tracking

    lines: list[str] = []
    assert not card.publish_release(Tracking(store_copy), "wqi", "99", lines.append)
    assert lines == ["warning: the card of wqi version 99 was not published: wqi has no "
                     "version '99'"]  # fmt: skip
