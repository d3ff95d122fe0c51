"""``python -m registry verify MODEL [--version N]``: check a release as a third party would.

It reads the release (the live one, or the newest release of MLflow version N) from the S3
version history, then by VersionId its signature, its bundle and the files signed with it, and
checks, with nothing but the public key:

- the signature (inference/signature.py: the serving side's own verifier) by the given key;
- that it covers this model, these bundle bytes, this MLflow version, bundle VersionId and
  approver (a hand-edited release.json differs);
- every signed file's bytes against the statement's digest;
- the provenance: its subject is the bundle, its validation result is the one signed.

The public key: ``--public-key FILE``, else ``MODEL_SIGNING_PUBLIC_KEY`` (a PEM), else the
configured signer's (registry/signing.py: the local key pair, or KMS GetPublicKey).
``--out DIR`` also writes the verified files under their signed names, with the signature as
``release.sig.json``: what model-signing's own verifier reads (registry/README.md).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from inference import signature
from inference.bundle import sha256_hex
from inference.contract import SIGNING_PUBLIC_KEY
from registry import manifest, signing
from registry.errors import NoRelease, SignatureInvalid, UsageError
from registry.history import ManifestVersion, history
from registry.manifest import Release
from registry.store import ReleaseStore
from training import provenance

SIGNATURE_FILE = "release.sig.json"


def public_key(path: Path | None) -> bytes:
    """The PEM to verify with (module docstring).

    Raises:
        UsageError: ``path`` cannot be read.
        SigningFailed: no key given and the configured signer cannot be reached.
    """
    if path is not None:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise UsageError(f"--public-key {path}: {exc.strerror}") from None
    pinned = os.environ.get(SIGNING_PUBLIC_KEY, "").strip()
    if pinned:
        return pinned.encode()
    return signing.public_key_pem().encode()


def chosen(past: list[ManifestVersion], model: str, version: str | None) -> ManifestVersion:
    """The live release (``version`` None), else the newest release of that MLflow version.

    Raises:
        NoRelease: none.
    """
    if not past:
        raise NoRelease(f"{model} has no release; promote it first")
    if version is None:
        live = [e for e in past if e.is_latest]
        if not live:
            raise NoRelease(f"the live release.json of {model} cannot be read; see `releases`")
        return live[0]
    for entry in past:
        if entry.release.mlflow_version == version:
            return entry
    raise NoRelease(f"no release of {model} is MLflow version {version}; see `releases`")


def verify(
    store: ReleaseStore, model: str, version: str | None, pem: bytes, out: Path | None = None
) -> dict[str, Any]:
    """What the release's signature and provenance say, once every check passed.

    Raises:
        NoRelease: no such release.
        SignatureInvalid: unsigned, signed by another key, or any byte differs.
        RegistryError: S3 failed (see ``store.translated``).
    """
    entry = chosen(history(store, model), model, version)
    release = entry.release
    if not release.signed:
        raise SignatureInvalid(_refused(release, "it is not signed (released before promotion "
                                                 "signed; promote it to sign it)"))  # fmt: skip
    signature_file = store.get(
        str(release.extra["signature_key"]), str(release.extra["signature_version_id"])
    ).body
    try:
        signed = signature.verify(signature_file, pem)
        signed.require(release.sha256, release.mlflow_version, model)
    except signature.SignatureError as exc:
        raise SignatureInvalid(_refused(release, str(exc))) from None
    differences = signed.differences(release.to_dict())
    if differences:
        raise SignatureInvalid(_refused(release, "; ".join(differences)))
    files = {signature.BUNDLE_FILE: store.read_verified(release.key, release.version_id,
                                                         release.sha256)}  # fmt: skip
    attestations = release.extra.get("attestations") or {}
    for name, digest in signed.files.items():
        if name == signature.BUNDLE_FILE:
            continue
        stored = attestations.get(name) or {}
        if not stored.get("version_id"):
            raise SignatureInvalid(_refused(release, f"release.json names no copy of {name}"))
        data = store.get(manifest.attachment_key(model, name), str(stored["version_id"])).body
        if sha256_hex(data) != digest:
            raise SignatureInvalid(
                _refused(
                    release, f"{name} has sha256 {sha256_hex(data)}, the signature says {digest}"
                )
            )
        files[name] = data
    origin = _provenance(release, signed, files)
    if out is not None:
        _write(out, files, signature_file)
    return {
        "model": model,
        "mlflow_version": release.mlflow_version,
        "version_id": release.version_id,
        "sha256": release.sha256,
        "live": entry.is_latest,
        "approved_by": signed.release.get("approved_by"),
        "signed_by": release.extra.get("signed_by"),
        "key_hint": signed.key_hint,
        "files": signed.files,
        "provenance": origin,
    }


def _provenance(
    release: Release, signed: signature.SignedRelease, files: dict[str, bytes]
) -> dict[str, Any]:
    """The provenance's facts, once its subject and validation result match the signed ones."""
    data = files.get(signature.PROVENANCE_FILE)
    if data is None:
        raise SignatureInvalid(_refused(release, "it signs no provenance"))
    try:
        statement = json.loads(data)
        subject = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
        predicate = statement["predicate"]
        build = predicate["buildDefinition"]
        byproducts = {b["name"]: b["digest"]["sha256"]
                      for b in predicate["runDetails"]["byproducts"]}  # fmt: skip
    except (ValueError, KeyError, TypeError) as exc:
        problem = f"its provenance is malformed ({exc!r})"
        raise SignatureInvalid(_refused(release, problem)) from None
    if subject.get(signature.BUNDLE_FILE) != release.sha256:
        raise SignatureInvalid(_refused(release, "its provenance is about other bundle bytes"))
    validation = signed.files.get(signature.VALIDATION_FILE)
    if byproducts.get(signature.VALIDATION_FILE) != validation:
        raise SignatureInvalid(_refused(release, "its provenance names another validation"))
    commit = next((d["digest"]["gitCommit"] for d in build["resolvedDependencies"]
                   if "gitCommit" in d.get("digest", {})), None)  # fmt: skip
    return {
        "build": build["externalParameters"],
        "commit": commit,
        "inputs": provenance.dependency_digests(statement),
        "runtime": build["internalParameters"].get("runtime", {}),
        "run": predicate["runDetails"]["metadata"].get("invocationId"),
    }


def _write(out: Path, files: dict[str, bytes], signature_file: bytes) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (out / name).write_bytes(data)
    (out / SIGNATURE_FILE).write_bytes(signature_file)


def _refused(release: Release, why: str) -> str:
    return (f"{release.name} MLflow version {release.mlflow_version} (versionId "
            f"{release.version_id}) does not verify: {why}")  # fmt: skip
