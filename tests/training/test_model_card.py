"""Model cards: logged with every registered version (description + artifacts), printed by
`python -m training.model_card`, the domain said in words from the bundle's profile."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from inference.bundle import loads
from training import model_card
from training.card_content import domain_words, water
from training.card_format import number
from training.mlflow_names import PROMOTED_AT, S3_URI, S3_VERSION_ID
from training.spec import available

DOMAIN = "## Domain: where its answers hold"


def version_of(trained: dict[str, Any], name: str) -> Any:
    client = MlflowClient(tracking_uri=trained["tracking_uri"])
    return client, client.get_model_version(name, trained["results"][name].version)


@pytest.mark.parametrize("name", available())
def test_every_registered_version_has_its_card_in_mlflow(
    trained: dict[str, Any], name: str, tmp_path: Path
) -> None:
    client, mv = version_of(trained, name)
    assert mv.description.startswith(f"# Model card: {name} version {mv.version}\n")
    assert DOMAIN in mv.description and len(mv.description) <= model_card.DESCRIPTION_LIMIT
    files = {a.path for a in client.list_artifacts(mv.run_id, "card")}
    assert files == {model_card.FACTS, model_card.MARKDOWN, model_card.HTML}
    md = Path(client.download_artifacts(mv.run_id, model_card.MARKDOWN, str(tmp_path)))
    assert md.read_text(encoding="utf-8") == mv.description
    page = Path(client.download_artifacts(mv.run_id, model_card.HTML, str(tmp_path)))
    assert page.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    for section in ("Intended use", "Data", "Held-out metrics", "Calibration", "Known limits",
                    "Lineage"):  # fmt: skip
        assert f"\n## {section}\n" in mv.description
    bundle_sha = trained["results"][name].artifact_sha256
    assert f"| bundle SHA-256 | {bundle_sha} |" in mv.description
    assert "| S3 VersionId | not promoted |" in mv.description


def test_the_wqi_card_says_where_its_domain_is_from_the_bundles_profile(
    trained: dict[str, Any],
) -> None:
    _, mv = version_of(trained, "wqi")
    profile = loads(Path(trained["bundles"]["wqi"]).read_bytes())["profile"]
    tds = profile["features"]["tds"]["quantiles"]
    domain = mv.description.split(DOMAIN)[1].split("\n## ")[0]
    quartiles = f"tds {number(tds['0.25'])}\u2013{number(tds['0.75'], 'mg/L')}"
    assert f"the training water is saline water (estuarine or sea water): {quartiles}" in domain
    assert "Fresh-water readings (TDS below 1,000 mg/L) are outside the domain" in domain
    assert f"| tds | mg/L | {number(tds['0.005'])}\u2013{number(tds['0.995'], 'mg/L')} |" in domain
    assert "| dates | 2023-08-04 to 2024-06-27 |" in mv.description
    assert "| rmse | 11.6273 | 13.6641 |" in mv.description  # held-out beside the baseline


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
    assert model_card.main(["wqi", "--version", version]) == 0
    assert "| S3 VersionId | not promoted |" in capsys.readouterr().out
    tracking = Tracking(store_copy)  # what promotion records (registry/promote.py)
    tracking.record_release(tracking.version("wqi", version), {
        S3_URI: "s3://waterml-models/models/wqi/model.joblib", S3_VERSION_ID: "3HL4kqtJlcpXroDTDmJ",
        PROMOTED_AT: "2026-11-30T06:00:00Z",
    })  # fmt: skip
    tracking.set_champion("wqi", version)
    assert model_card.main(["wqi"]) == 0  # the champion by default
    out = capsys.readouterr().out
    assert "| S3 VersionId | 3HL4kqtJlcpXroDTDmJ |" in out and DOMAIN in out
    page = tmp_path / "card.html"
    assert model_card.main(["wqi", "--format", "html", "--out", str(page)]) == 0
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
    assert model_card.main(["wqi", "--publish", "--out", str(tmp_path / "card.md")]) == 0
    described = client.get_model_version("wqi", "1").description
    assert "| S3 VersionId | 3HL4kqtJlcpXroDTDmJ |" in described and DOMAIN in described
    logged = client.download_artifacts(run.info.run_id, model_card.MARKDOWN, str(tmp_path / "d"))
    assert Path(logged).read_text(encoding="utf-8") == described


def test_unknown_models_versions_and_versions_without_a_card_are_one_line_errors(
    trained: dict[str, Any], store_copy: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert model_card.main(["nosuch"]) == 3
    assert "unknown model 'nosuch'" in capsys.readouterr().err
    assert model_card.main(["wqi", "--version", "99"]) == 3
    assert "wqi has no version '99'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        model_card.main(["../wqi"])
    assert exited.value.code == 2
    client = MlflowClient(tracking_uri=store_copy)  # a version registered before cards
    _, mv = version_of(trained, "wqi")
    run = client.create_run(client.get_run(mv.run_id).info.experiment_id)
    # A runs:/ source: a models:/ source is looked up through MLflow's global client, whose
    # tracking URI an earlier test may have pointed elsewhere.
    old = client.create_model_version("wqi", f"runs:/{run.info.run_id}/model", run.info.run_id)
    capsys.readouterr()
    assert model_card.main(["wqi", "--version", str(old.version)]) == 4
    err = capsys.readouterr().err
    assert "has no model card" in err and "Traceback" not in err


def facts_with(tds_quantiles: dict[str, float]) -> dict[str, Any]:
    entry = {"quantiles": tds_quantiles, "missing_rate": 0.0}
    return {"features": ["tds"], "calendar": [], "profile": {
        "rule": "Outside the 0.5-99.5 % quantiles.", "lower_q": 0.005, "upper_q": 0.995,
        "features": {"tds": entry}}}  # fmt: skip


def test_the_water_is_named_from_its_dissolved_solids() -> None:
    assert [water(v) for v in (410, 5_000, 31_000, 150_000)] == [
        "fresh water", "brackish water", "saline water (estuarine or sea water)", "brine",
    ]  # fmt: skip
    fresh = domain_words(facts_with({"0.005": 80.0, "0.25": 300.0, "0.5": 410.0, "0.75": 520.0}))
    assert fresh[0].startswith("By its dissolved solids, the training water is fresh water:")
    assert "outside the domain" not in fresh[0]  # fresh water is its domain
    salty = domain_words(facts_with({"0.005": 16_012.0, "0.25": 28_712.0, "0.5": 30_310.0,
                                     "0.75": 33_590.0}))  # fmt: skip
    assert "tds 28,700\u201333,600 mg/L between the quartiles" in salty[0]
    assert "whose lowest tds is 16,000 mg/L" in salty[0]
    assert domain_words({"features": ["tds"]}) == [
        "This version's bundle records no training profile: its domain is unknown."
    ]


def test_a_card_too_long_for_mlflows_description_is_cut_at_a_section() -> None:
    card = "# Model card\n\n## A\n\n" + "a" * 3000 + "\n\n## B\n\n" + "b" * 3000 + "\n"
    cut = model_card.description(card)
    assert len(cut) <= model_card.DESCRIPTION_LIMIT and "## B" not in cut
    assert cut.endswith(f"(The full card is the version's artifact {model_card.MARKDOWN}.)\n")
    assert json.dumps(model_card.description("short")) == '"short"'
