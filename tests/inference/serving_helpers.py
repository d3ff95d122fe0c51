"""Helpers shared by the serving tests (a module name no other test folder uses)."""

from __future__ import annotations

import json
import shutil
import types
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from inference import signature
from inference.bundle import BundleError, loads, sha256_hex
from inference.config import Config
from inference.contract import SIGNING_PUBLIC_KEY

KEY = "models/wqi/model.joblib"
SIGNATURE_KEY = "models/wqi/release.sig.json"
REPO = Path(__file__).resolve().parents[2]


class MemorySigner:
    """A P-256 key pair in memory: signs as registry.signing's signers do (the tests' stand-in
    for the promotion's key)."""

    def __init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        self.spki_der = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.identity = f"key {signature.key_hint(self.spki_der)[:12]} (tests)"
        self.public_pem = signature.public_key_pem(self.spki_der).decode()

    def sign(self, message: bytes) -> bytes:
        return bytes(self._key.sign(message, ec.ECDSA(hashes.SHA256())))


SIGNER = MemorySigner()  # one key for the session; a test that needs another makes its own


def signature_file(
    data: bytes, model_version: str | None = None, signer: MemorySigner = SIGNER
) -> bytes:
    """A release signature covering bundle ``data`` (its own name, ``model_version``)."""
    from registry.signing import sign_release

    try:
        name = str(loads(data)["name"])
    except BundleError:
        name = "wqi"  # bytes that will not load: any name
    files = {signature.BUNDLE_FILE: sha256_hex(data)}
    return sign_release(signer, name, files, {"mlflow_version": model_version or ""})


def signed(
    release: Any, data: bytes, put: Any, signer: MemorySigner = SIGNER, approved_by: str = "tester"
) -> Any:
    """``release`` (a registry Release of bundle ``data``) as promotion writes it: signed over
    the fields promotion signs, the signature stored through ``put(key, body) -> VersionId``."""
    from dataclasses import replace

    from registry.manifest import signature_key
    from registry.signing import sign_release

    fields = {
        "mlflow_version": release.mlflow_version,
        "approved_by": approved_by,
        "bucket": release.bucket,
        "key": release.key,
        "version_id": release.version_id,
    }
    body = sign_release(signer, release.name, {signature.BUNDLE_FILE: sha256_hex(data)}, fields)
    key = signature_key(release.name)
    extra = {**release.extra, "approved_by": approved_by, "signature_key": key,
             "signature_version_id": put(key, body), "signed_by": signer.identity}  # fmt: skip
    return replace(release, extra=extra)


def signing_env(version_id: str, public_key: str = SIGNER.public_pem) -> dict[str, str]:
    """The signature pins and the key, as a function's environment carries them."""
    return {
        "MODEL_SIGNATURE_KEY": SIGNATURE_KEY,
        "MODEL_SIGNATURE_VERSION_ID": version_id,
        SIGNING_PUBLIC_KEY: public_key,
    }


def uv() -> str:
    """The uv binary: `.tools/bin/uv` (bootstrapped by `make venv`), else uv on PATH.

    Never a skip: a test that quietly skips hides the check it stands for."""
    import pytest

    local = REPO / ".tools" / "bin" / "uv"
    found = str(local) if local.exists() else shutil.which("uv")
    if not found:
        pytest.fail(
            f"uv not found at {local} nor on PATH: run `make venv` (it bootstraps uv) or "
            "install uv; the image's dependency checks cannot run without it"
        )
    return found


def local_config(data: bytes, cache_dir: Path, **overrides: Any) -> Config:
    """A config whose bundle and signature sit in the /tmp cache already, as GETs by their pins
    left them (no S3 needed)."""
    from inference import loader

    fields: dict[str, Any] = {
        "bucket": "unused", "key": KEY, "version_id": "v-local", "sha256": sha256_hex(data),
        "signature_key": SIGNATURE_KEY, "signature_version_id": "s-local",
        "public_key": SIGNER.public_pem, "endpoint_url": "http://127.0.0.1:9",
        "cache_dir": cache_dir,
    }  # fmt: skip
    fields.update(overrides)
    config = Config(**fields)
    loader.cache_verified(config, data)
    path = loader.signature_path(config)
    path.write_bytes(signature_file(data, config.model_version))
    return config


def upload(s3_env: dict[str, str], data: bytes, key: str = KEY) -> str:
    """Put ``data`` into the test's versioned bucket; returns the new VersionId."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_env["endpoint"])
    return str(s3.put_object(Bucket=s3_env["bucket"], Key=key, Body=data)["VersionId"])


_SIGNED: dict[tuple[str, str, str | None], str] = {}  # (bucket, VersionId, version) -> its sig


def upload_signature(
    s3_env: dict[str, str], version_id: str, model_version: str | None = None
) -> str:
    """Sign the bundle that ``version_id`` of KEY holds (any bytes when there is none) and put
    the signature into the bucket, once per pin; returns the signature's VersionId."""
    import boto3
    from botocore.exceptions import ClientError

    pin = (s3_env["bucket"], version_id, model_version)
    if pin in _SIGNED:
        return _SIGNED[pin]
    s3 = boto3.client("s3", endpoint_url=s3_env["endpoint"])
    try:
        data = s3.get_object(Bucket=s3_env["bucket"], Key=KEY, VersionId=version_id)["Body"].read()
    except ClientError:
        data = b"no such bundle"
    _SIGNED[pin] = upload(s3_env, signature_file(data, model_version), SIGNATURE_KEY)
    return _SIGNED[pin]


def pinned_env(
    s3_env: dict[str, str], data: bytes, model_version: str | None = None
) -> dict[str, str]:
    """Upload ``data`` and its signature; the MODEL_* environment a deploy would pin them with."""
    version_id = upload(s3_env, data)
    env = {
        "MODEL_BUCKET": s3_env["bucket"], "MODEL_KEY": KEY, "MODEL_VERSION_ID": version_id,
        "MODEL_SHA256": sha256_hex(data),
        **signing_env(upload_signature(s3_env, version_id, model_version)),
    }  # fmt: skip
    if model_version:
        env["MODEL_VERSION"] = model_version
    return env


def s3_config(
    s3_env: dict[str, str],
    version_id: str,
    sha: str,
    cache_dir: Path,
    model_version: str | None = None,
) -> Config:
    """A config pinning ``version_id`` of KEY and a signature of what it holds."""
    return Config(
        bucket=s3_env["bucket"], key=KEY, version_id=version_id, sha256=sha,
        signature_key=SIGNATURE_KEY,
        signature_version_id=upload_signature(s3_env, version_id, model_version),
        public_key=SIGNER.public_pem, endpoint_url=s3_env["endpoint"], cache_dir=cache_dir,
        model_version=model_version,
    )  # fmt: skip


def context(request_id: str = "req-123") -> Any:
    return types.SimpleNamespace(
        aws_request_id=request_id,
        function_name="waterml-inference",
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:waterml-inference",
    )


def body(response: dict[str, Any]) -> Any:
    return json.loads(response["body"])
