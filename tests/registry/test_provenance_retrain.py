"""A release a third party can check, end to end on a model the real pipeline trained:
promoted (signed), `verify --out` gives the signed files, OpenSSF's own model-signing verifier
accepts them, the provenance names the spec and dataset by the digests of the files in this
repository, and retraining from what it names gives the released SHA-256."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from model_signing import verifying

from inference import signature
from registry import cli, signing
from settings import REPO
from tests.registry.registry_helpers import approve
from training import pipeline
from training.spec import load_spec_file

pytestmark = pytest.mark.integration


def test_a_release_verifies_upstream_and_retrains_to_the_same_bytes(
    trained_store: dict[str, Any],
    s3_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = next(n for n, r in trained_store["results"].items() if r.candidate)
    result = trained_store["results"][name]
    approvals = approve(tmp_path / "approved.toml", **{name: result.version})
    assert cli.main(["promote", name, "--approvals", str(approvals)]) == 0
    release = json.loads(capsys.readouterr().out)

    out = tmp_path / "release"
    assert cli.main(["verify", name, "--out", str(out)]) == 0, capsys.readouterr().err
    checked = json.loads(capsys.readouterr().out)
    assert checked["sha256"] == release["sha256"] == result.artifact_sha256

    # OpenSSF's verifier, given only the files, the signature and the public key.
    public = tmp_path / "release.pub.pem"
    public.write_text(signing.public_key_pem())
    signed_files = tmp_path / "signed"
    signed_files.mkdir()
    for filename in checked["files"]:
        shutil.copy(out / filename, signed_files / filename)
    verifying.Config().use_elliptic_key_verifier(public_key=public).verify(
        signed_files, out / "release.sig.json"
    )

    # The provenance names this repository's files by their digests...
    provenance = json.loads((out / signature.PROVENANCE_FILE).read_text())
    build = provenance["predicate"]["buildDefinition"]
    inputs = checked["provenance"]["inputs"]
    assert {Path(n).suffix for n in inputs} >= {".toml", ".csv", ".json", ".lock"}, inputs
    for relative, digest in inputs.items():
        assert hashlib.sha256((REPO / relative).read_bytes()).hexdigest() == digest, relative
    spec_path = REPO / build["externalParameters"]["spec"]
    assert build["externalParameters"]["engine"] == "pandas"

    # ... and retraining from them gives the released bytes.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'again.db'}")
    again = pipeline.run(load_spec_file(spec_path), tmp_path / "bundles")
    assert again.artifact_sha256 == release["sha256"]
