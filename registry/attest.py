"""Promotion signs what it releases: the bundle with the version's model card, validation
result and provenance, as one model-signing statement (inference/signature.py).

The three files are copied beside the bundle (``models/<name>/<file>``, one object version
each, found again by digest on a re-run) and the signature goes to
``models/<name>/release.sig.json``; the release names all of them by VersionId
(``manifest.SIGNATURE_FIELDS``). The statement binds the model, its MLflow version, the bundle's
S3 VersionId and who approved it, so a hand-edited ``release.json`` or function environment
cannot ship bytes nobody approved: the function and the pre-traffic hook verify it with the
environment's public key before anything is unpickled. A rollback reuses the signature of the
release it returns to; nothing is signed without an approval.
"""

from __future__ import annotations

import base64
from typing import Any

from inference import signature
from inference.bundle import sha256_hex
from registry import manifest, signing
from registry.approvals import Approval
from registry.manifest import Release
from registry.store import ReleaseStore
from registry.tracking import VersionInfo
from training.mlflow_names import CARD_MARKDOWN, PROVENANCE_ARTIFACT, VALIDATION_ARTIFACT

# statement file name -> the run artifact training logged it as
ATTACHMENTS = {
    signature.CARD_FILE: CARD_MARKDOWN,
    signature.VALIDATION_FILE: VALIDATION_ARTIFACT,
    signature.PROVENANCE_FILE: PROVENANCE_ARTIFACT,
}
# The signature object's metadata: the SHA-256 of the statement it signs, so a re-run after a
# crash finds it instead of signing again.
STATEMENT_METADATA = "statement-sha256"


def sign(
    store: ReleaseStore,
    tracking: Any,
    info: VersionInfo,
    approval: Approval,
    bundle_version_id: str,
    signer: signing.Signer | None = None,
) -> dict[str, Any]:
    """Store the version's attachments and a signature over them and the bundle; the release
    fields that name them (``manifest.SIGNATURE_FIELDS``).

    Raises:
        BundleMissing: the version's run lacks an attachment (trained before they were logged).
        SigningFailed: the signing key cannot be loaded or reached, or its signature is bad.
        RegistryError: S3 or MLflow failed (see ``store.translated``).
    """
    model = info.name
    files = {signature.BUNDLE_FILE: info.artifact_sha256}
    attachments: dict[str, dict[str, str]] = {}
    for filename, artifact in ATTACHMENTS.items():
        data = tracking.run_artifact(info, artifact)
        sha = sha256_hex(data)
        files[filename] = sha
        attachments[filename] = {"version_id": _stored(store, model, filename, data, sha)}
        attachments[filename]["sha256"] = sha
    fields = {
        "mlflow_version": info.version,
        "approved_by": approval.approved_by,
        "bucket": store.bucket,
        "key": manifest.bundle_key(model),
        "version_id": bundle_version_id,
    }
    statement = signature.statement(model, files, fields)
    statement_sha = sha256_hex(statement)
    signer = signer or signing.configured_signer()
    key = manifest.signature_key(model)
    version_id = _existing_signature(store, key, statement_sha, signer)
    if version_id is None:
        signed = signing.sign_release(signer, model, files, fields)
        version_id = store.put(
            key,
            signed,
            ContentType="application/json",
            Metadata={STATEMENT_METADATA: statement_sha, "sha256": sha256_hex(signed)},
        )
    return {
        "signature_key": key,
        "signature_version_id": version_id,
        "signed_by": signer.identity,
        "attestations": attachments,
    }


def carried(release: Release) -> dict[str, Any]:
    """The signature fields of ``release``, for a release that returns to the same bytes."""
    return {k: release.extra[k] for k in manifest.SIGNATURE_FIELDS if k in release.extra}


def unsigned(release: Release) -> str | None:
    """Why ``release`` cannot serve a function that verifies signatures: it was never signed
    (released before promotion signed). Only a promotion, with its approval, signs it."""
    if release.signed:
        return None
    return (f"release of MLflow version {release.mlflow_version} is not signed (released "
            "before promotion signed; promote it to sign it)")  # fmt: skip


def _stored(store: ReleaseStore, model: str, filename: str, data: bytes, sha: str) -> str:
    """The VersionId of an object version of the attachment holding ``data``: an earlier one
    with the same digest, else a new upload (S3 checks the SHA-256 as it stores it)."""
    key = manifest.attachment_key(model, filename)
    found = store.find_version(key, "sha256", sha)
    if found is not None:
        return found
    return store.put(
        key,
        data,
        ChecksumAlgorithm="SHA256",
        ChecksumSHA256=base64.b64encode(bytes.fromhex(sha)).decode(),
        ContentType="application/json" if filename.endswith(".json") else "text/markdown",
        Metadata={"sha256": sha},
    )


def _existing_signature(
    store: ReleaseStore, key: str, statement_sha: str, signer: signing.Signer
) -> str | None:
    """A signature object an interrupted run stored for this very statement, by this key."""
    found = store.find_version(key, STATEMENT_METADATA, statement_sha)
    if found is None:
        return None
    body = store.get(key, found).body
    try:
        signature.verify(body, signature.public_key_pem(signer.spki_der))
    except signature.SignatureError:
        return None  # signed by a key since replaced: sign again
    return found
