"""Our release signatures are model-signing v1.0 signatures: OpenSSF's own verifier (the
``model_signing`` package, test-only ``interop`` group) accepts them, for a local key and for
a KMS key (moto's KMS over HTTP), and refuses them when a released file changes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import boto3
import pytest
from model_signing import verifying

from inference import signature
from registry import signing

FILES = {
    signature.BUNDLE_FILE: b"\x80\x05bundle bytes",
    signature.CARD_FILE: b"# wqi v3\n",
    signature.VALIDATION_FILE: b'{"success": true}',
    signature.PROVENANCE_FILE: b'{"_type": "https://in-toto.io/Statement/v1"}',
}
RELEASE = {"mlflow_version": "3", "approved_by": "jane.doe", "bucket": "b", "version_id": "v1"}


def _lay_out(root: Path) -> dict[str, str]:
    root.mkdir()
    for name, data in FILES.items():
        (root / name).write_bytes(data)
    return {name: hashlib.sha256(data).hexdigest() for name, data in FILES.items()}


def _upstream_verify(tmp_path: Path, signer: signing.Signer) -> Path:
    model = tmp_path / "wqi"
    files = _lay_out(model)
    sig = tmp_path / "release.sig.json"
    sig.write_bytes(signing.sign_release(signer, "wqi", files, RELEASE))
    public = tmp_path / "release.pub.pem"
    public.write_bytes(signature.public_key_pem(signer.spki_der))
    verifying.Config().use_elliptic_key_verifier(public_key=public).verify(model, sig)
    return model


def test_upstream_verifies_a_local_key_signature(tmp_path):
    signer = signing.LocalKeySigner.load(tmp_path / "keys" / "release-key.pem", create=True)
    model = _upstream_verify(tmp_path, signer)
    (model / signature.CARD_FILE).write_bytes(b"# wqi v4\n")
    with pytest.raises(ValueError):
        verifying.Config().use_elliptic_key_verifier(
            public_key=tmp_path / "release.pub.pem"
        ).verify(model, tmp_path / "release.sig.json")


def test_upstream_verifies_a_kms_signature(tmp_path, s3_endpoint, monkeypatch):
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(name, value)
    kms = boto3.client("kms", endpoint_url=s3_endpoint)  # moto's server answers every service
    key = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]
    signer = signing.KmsSigner.connect(key["KeyId"], client=kms)
    _upstream_verify(tmp_path, signer)
    assert key["KeyId"] in signer.identity


def test_a_kms_key_of_another_kind_is_refused(s3_endpoint, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    kms = boto3.client("kms", endpoint_url=s3_endpoint, region_name="eu-west-1")
    rsa = kms.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    with pytest.raises(signing.SigningFailed, match="ECC_NIST_P256"):
        signing.KmsSigner.connect(rsa, client=kms)
