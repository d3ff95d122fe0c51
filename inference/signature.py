"""Signed releases, as the function and the pre-traffic hook check them before unpickling.

Promotion signs what it releases in the OpenSSF model-signing v1.0 format: an in-toto
Statement (``predicateType`` ``https://model_signing/signature/v1.0``) listing the SHA-256 of
each released file (the bundle, its model card, the validation result, the provenance), in a
DSSE envelope, in a Sigstore bundle (v0.3, a public-key hint instead of a certificate). Our
own fields (model, MLflow version, approver) ride in the predicate, which v1.0 verifiers
ignore beyond ``serialization`` and ``resources``; upstream ``model_signing`` verifies our
files unchanged (``tests/registry/test_signing_interop.py``).

This module is the format's one home: the registry builds and writes it from here, the image
reads it here. It needs nothing but the standard library and ``inference.ecdsa_p256``: the
one ECDSA check costs about 2 ms, and the bundle's digest was computed anyway.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from inference import ecdsa_p256

MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
# How the resources were serialized, as model-signing records it: files by name, SHA-256 each.
SERIALIZATION = {"method": "files", "hash_type": "sha256", "allow_symlinks": False}
# The released files, by the names the statement gives them (also their names on disk when
# `python -m registry verify` lays a release out for an upstream verifier).
BUNDLE_FILE = "model.joblib"
CARD_FILE = "model_card.md"
VALIDATION_FILE = "validation_result.json"
PROVENANCE_FILE = "provenance.json"
# Our fields in the predicate.
RELEASE_FIELD = "waterml_release"


class SignatureError(ValueError):
    """A release signature is missing, malformed, by another key, or does not cover what the
    release names; the message says which."""


@dataclass(frozen=True)
class SignedRelease:
    """What a verified signature says: the model, its files' digests and our release fields."""

    model: str
    files: dict[str, str]  # file name -> SHA-256 (lowercase hex)
    release: dict[str, Any]  # RELEASE_FIELD of the predicate: mlflow_version, approved_by, ...
    key_hint: str

    def require(
        self, bundle_sha256: str, mlflow_version: str | None, model: str | None = None
    ) -> None:
        """Check that this signature covers exactly the release being served: its bundle's
        bytes, its MLflow version when the release names one, and its model when known.

        Raises:
            SignatureError: other bundle bytes, another MLflow version, or another model.
        """
        signed = self.files.get(BUNDLE_FILE)
        if signed != bundle_sha256.lower():
            raise SignatureError(
                f"the signature covers bundle sha256 {signed}, the release pins {bundle_sha256}"
            )
        signed_version = str(self.release.get("mlflow_version") or "")
        if mlflow_version and signed_version != mlflow_version:
            raise SignatureError(
                f"the signature is for MLflow version {signed_version!r}, the release pins"
                f" {mlflow_version!r}"
            )
        if model is not None and self.model != model:
            raise SignatureError(f"the signature is for model {self.model!r}, not {model!r}")

    def differences(self, release: Mapping[str, Any]) -> list[str]:
        """Every field a release.json names that this signature does not (a hand edit)."""
        fields = {
            "sha256": self.files.get(BUNDLE_FILE),
            **{k: self.release.get(k) for k in ("version_id", "mlflow_version", "approved_by")},
        }
        return [
            f"release.json's {field} is {release.get(field)!r}, its signature says {value!r}"
            for field, value in fields.items()
            if str(release.get(field) or "") != str(value or "")
        ]


def pae(payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what the signature is computed over."""
    return b"DSSEv1 %d %s %d %s" % (
        len(PAYLOAD_TYPE),
        PAYLOAD_TYPE.encode(),
        len(payload),
        payload,
    )


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def public_key_pem(spki_der: bytes) -> bytes:
    """The PEM of a public key exactly as ``cryptography`` (and model-signing's hint) writes it."""
    b64 = base64.b64encode(spki_der).decode()
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    body = "\n".join(lines)
    return f"-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n".encode()


def public_key_der(pem: str | bytes) -> bytes:
    """The DER of a PEM public key (whitespace around it tolerated).

    Raises:
        SignatureError: not a single PEM ``PUBLIC KEY`` block of base64.
    """
    text = pem.decode() if isinstance(pem, bytes) else pem
    text = text.strip().replace("\\n", "\n")  # a PEM pasted into one environment line
    head, tail = "-----BEGIN PUBLIC KEY-----", "-----END PUBLIC KEY-----"
    if not (text.startswith(head) and text.endswith(tail)):
        raise SignatureError("the pinned public key is not a PEM 'PUBLIC KEY' block")
    try:
        return base64.b64decode("".join(text[len(head) : -len(tail)].split()), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("the pinned public key's PEM body is not base64") from None


def key_hint(spki_der: bytes) -> str:
    """model-signing's key identifier: the SHA-256 of the key's PEM."""
    return hashlib.sha256(public_key_pem(spki_der)).hexdigest()


def root_digest(files: Mapping[str, str]) -> str:
    """The subject's digest: SHA-256 over the files' digests in name order (model-signing)."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(bytes.fromhex(files[name]))
    return h.hexdigest()


def statement(model: str, files: Mapping[str, str], release: Mapping[str, Any]) -> bytes:
    """The in-toto statement promotion signs, as canonical JSON bytes."""
    return canonical_json(
        {
            "_type": STATEMENT_TYPE,
            "subject": [{"name": model, "digest": {"sha256": root_digest(files)}}],
            "predicateType": PREDICATE_TYPE,
            "predicate": {
                "serialization": SERIALIZATION,
                "resources": [
                    {"name": name, "algorithm": "sha256", "digest": files[name]}
                    for name in sorted(files)
                ],
                RELEASE_FIELD: dict(release),
            },
        }
    )


def envelope(payload: bytes, der_signature: bytes, spki_der: bytes) -> bytes:
    """The Sigstore bundle holding ``payload`` and its signature, as canonical JSON bytes."""
    return canonical_json(
        {
            "mediaType": MEDIA_TYPE,
            "verificationMaterial": {"publicKey": {"hint": key_hint(spki_der)}, "tlogEntries": []},
            "dsseEnvelope": {
                "payload": base64.b64encode(payload).decode(),
                "payloadType": PAYLOAD_TYPE,
                "signatures": [{"sig": base64.b64encode(der_signature).decode(), "keyid": ""}],
            },
        }
    )


def verify(signature_file: bytes, public_key: str | bytes) -> SignedRelease:
    """The signed release in ``signature_file`` once it verified against ``public_key`` (PEM).

    Strict by design: the file must be byte for byte the canonical form promotion writes, so a
    one-byte change anywhere is refused even where it would not change the meaning.

    Raises:
        SignatureError: malformed, altered, signed by another key, or not a model-signing v1.0
            statement whose subject digest matches its resources.
    """
    spki = public_key_der(public_key)
    try:
        point = ecdsa_p256.public_key_from_spki(spki)
    except ecdsa_p256.InvalidKey as exc:
        raise SignatureError(f"the pinned public key: {exc}") from None
    try:
        doc = json.loads(signature_file)
        dsse = doc["dsseEnvelope"]
        payload = base64.b64decode(dsse["payload"], validate=True)
        (sig_entry,) = dsse["signatures"]
        der_signature = base64.b64decode(sig_entry["sig"], validate=True)
        hint = doc["verificationMaterial"]["publicKey"]["hint"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise SignatureError(
            "the signature file is not a Sigstore bundle with one DSSE signature"
        ) from None
    if envelope(payload, der_signature, spki) != signature_file:
        if hint != key_hint(spki):
            raise SignatureError("the signature names another key than the pinned one")
        raise SignatureError("the signature file was altered (not the form promotion writes)")
    if not ecdsa_p256.verify(point, pae(payload), der_signature):
        raise SignatureError("the signature does not verify with the pinned public key")
    return _signed_release(payload, hint)


def _signed_release(payload: bytes, hint: str) -> SignedRelease:
    try:
        doc = json.loads(payload)
        (subject,) = doc["subject"]
        predicate = doc["predicate"]
        resources = predicate["resources"]
        files = {r["name"]: r["digest"] for r in resources if r["algorithm"] == "sha256"}
        release = predicate.get(RELEASE_FIELD) or {}
        ok = (
            doc["_type"] == STATEMENT_TYPE
            and doc["predicateType"] == PREDICATE_TYPE
            and len(files) == len(resources)
            and subject["digest"]["sha256"] == root_digest(files)
            and isinstance(release, dict)
        )
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise SignatureError("the signed statement is not a model-signing v1.0 statement")
    return SignedRelease(subject["name"], files, release, hint)
