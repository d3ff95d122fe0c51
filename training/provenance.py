"""The provenance of a bundle, as a third party can check it: an in-toto statement with a
SLSA v1 provenance predicate, one per trained version (run artifact ``provenance/provenance.json``).

It names what produced the bytes: the spec, the dataset and its expectation suite (each with
its SHA-256), the validation result's digest, the commit, the lock file, the engine, Python and
the libraries. Promotion signs it with the release (registry/signing.py), and
``python -m registry verify`` prints it; retraining from what it names gives the same SHA-256,
since bundles are byte-reproducible (tests/registry/test_verify.py retrains from it).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inference import signature

if TYPE_CHECKING:
    from training.spec import ModelSpec

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
# Identifies how to read externalParameters: a `python -m training` run of one spec.
BUILD_TYPE = "https://github.com/waterml/waterml/training/v1"
BUILDER_ID = "python -m training"
LOCK_FILE = "uv.lock"


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _relative(path: Path, repo: Path) -> str:
    return path.relative_to(repo).as_posix() if path.is_relative_to(repo) else str(path)


def json_text(document: dict[str, Any]) -> str:
    """How training writes the JSON files promotion signs: stable bytes for the same content."""
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def source_uri(git_sha: str, repo: Path) -> str:
    """Where the commit lives: the GitHub repository in CI, else this clone."""
    github = os.environ.get("GITHUB_REPOSITORY")
    if github:
        return f"git+https://github.com/{github}@{git_sha}"
    return f"git+file://{repo.as_posix()}@{git_sha}"


def statement(
    spec: ModelSpec,
    *,
    bundle_sha256: str,
    data_sha256: str,
    validation_sha256: str,
    git_sha: str,
    bundle_metadata: dict[str, Any],
    tools: dict[str, str],
    run_id: str,
    repo: Path,
) -> dict[str, Any]:
    """The provenance statement of one trained bundle (a plain dict, JSON-ready)."""
    lock = repo / LOCK_FILE
    data, suite = spec.data.path, spec.data.expectations
    dependencies = [
        {"uri": source_uri(git_sha, repo), "digest": {"gitCommit": git_sha}},
        {"name": _relative(spec.source, repo), "digest": {"sha256": file_digest(spec.source)}},
        {"name": _relative(data, repo), "digest": {"sha256": data_sha256}},
        {"name": _relative(suite, repo), "digest": {"sha256": file_digest(suite)}},
    ]
    if lock.is_file():
        dependencies.append({"name": LOCK_FILE, "digest": {"sha256": file_digest(lock)}})
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": signature.BUNDLE_FILE, "digest": {"sha256": bundle_sha256}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "model": spec.name,
                    "spec": _relative(spec.source, repo),
                    "engine": spec.engine,
                },
                "internalParameters": {
                    "runtime": bundle_metadata.get("runtime", {}),
                    "libraries": bundle_metadata.get("libraries", {}),
                },
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {"id": BUILDER_ID, "version": tools},
                "metadata": {"invocationId": f"mlflow-run:{run_id}"},
                "byproducts": [
                    {
                        "name": signature.VALIDATION_FILE,
                        "digest": {"sha256": validation_sha256},
                    }
                ],
            },
        },
    }


def dependency_digests(provenance: dict[str, Any]) -> dict[str, str]:
    """``name -> sha256`` of the files a provenance statement names (spec, data, suite, lock)."""
    deps = provenance["predicate"]["buildDefinition"]["resolvedDependencies"]
    return {d["name"]: d["digest"]["sha256"] for d in deps if "sha256" in d.get("digest", {})}
