"""The provenance of a bundle, as a third party can check it: an in-toto statement with a
SLSA v1 provenance predicate, one per trained version (run artifact ``provenance.json``).

It names what produced the bytes: the spec, the dataset and its expectation suite (each with
its SHA-256), the validation result's digest, the commit, the lock file, the engine, Python and
the libraries. Promotion signs it with the release (registry/signing.py), and
``python -m registry verify`` prints it; retraining from what it names gives the same SHA-256,
since bundles are byte-reproducible (tests/registry/test_verify.py retrains from it).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from inference import signature

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


def statement(
    *,
    model: str,
    bundle_sha256: str,
    spec_path: Path,
    data_path: Path,
    data_sha256: str,
    suite_path: Path,
    validation_sha256: str,
    engine: str,
    git_sha: str,
    runtime: dict[str, str],
    libraries: dict[str, str],
    tools: dict[str, str],
    run_id: str,
    repo: Path,
) -> dict[str, Any]:
    """The provenance statement of one trained bundle (a plain dict, JSON-ready)."""
    lock = repo / LOCK_FILE
    dependencies = [
        {"uri": f"git+file:{repo.name}@{git_sha}", "digest": {"gitCommit": git_sha}},
        {"name": _relative(spec_path, repo), "digest": {"sha256": file_digest(spec_path)}},
        {"name": _relative(data_path, repo), "digest": {"sha256": data_sha256}},
        {"name": _relative(suite_path, repo), "digest": {"sha256": file_digest(suite_path)}},
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
                    "model": model,
                    "spec": _relative(spec_path, repo),
                    "engine": engine,
                },
                "internalParameters": {"runtime": runtime, "libraries": libraries},
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
