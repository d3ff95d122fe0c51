"""Model cards: logged with every registered version (description + artifacts), the domain
said in words from the bundle's profile, and what the confidence is worth inside and outside
the domain (the command that prints them: tests/registry/test_registry_card.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from document import number
from inference.bundle import loads
from training import model_card
from training.card_content import domain_words, water
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


@pytest.mark.parametrize("name", available())
def test_the_card_states_what_the_confidence_is_worth_inside_and_outside(
    trained: dict[str, Any], name: str, tmp_path: Path
) -> None:
    """Computed at training on the held-out rows and stored in the card's facts: how often the
    answer was right and the Brier score of the model's confidence, the one served and the
    prior, inside and outside the domain; the served one never above the model's."""
    client, mv = version_of(trained, name)
    facts = json.loads(
        Path(client.download_artifacts(mv.run_id, model_card.FACTS, str(tmp_path))).read_text()
    )
    c = facts["confidence"]
    assert c["raised"] == 0
    assert c["inside"]["rows"] + c["outside"]["rows"] == c["rows"]
    assert c["rows"] == trained["results"][name].metrics["rows_held_out"]
    for side in ("inside", "outside"):
        if c[side]["rows"]:
            mean = c[side]["mean_confidence"]
            assert mean["served"] <= mean["model"] + 1e-9
            assert set(c[side]["brier"]) == {"model", "served", "prior"}
    inside = c["inside"]
    assert inside["brier"]["served"] == inside["brier"]["model"]  # nothing changes inside
    assert "| Brier: model / served / prior |" in mv.description
    row = f"| inside | {inside['rows']:,} | {inside['right']:.1%} |"
    assert row in mv.description
    if name == "wqi":  # hour_of_day comes from the timestamp: without one, the error grows
        undated = c["without_timestamp"]
        assert undated["rmse"] > undated["rmse_with"]
        assert f"the held-out RMSE is {undated['rmse']:.2f}" in mv.description
