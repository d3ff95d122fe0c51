"""Who signs a release: an AWS KMS key in AWS, a key pair in ``.local/signing/`` locally.

``WATERML_SIGNING_KEY`` chooses:

- ``kms:<key id, ARN or alias/...>``: an asymmetric KMS key (``ECC_NIST_P256``, usage
  ``SIGN_VERIFY``); only the promotion role may call ``kms:Sign`` on it (infra/README.md);
- a path to a PEM private key (P-256);
- unset: ``.local/signing/release-key.pem``, generated on first use (mode 0600, git-ignored),
  its public key beside it as ``release-key.pub.pem``: what local serving pins.

Both sign the same bytes the same way (ECDSA-SHA256 over the DSSE PAE of the statement), so
the serving side cannot tell them apart, and neither can model-signing's verifier.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from inference import ecdsa_p256, signature
from registry.errors import SigningFailed
from settings import LOCAL_DIR

__all__ = ["SigningFailed"]

ENV_VAR = "WATERML_SIGNING_KEY"
LOCAL_KEY = LOCAL_DIR / "signing" / "release-key.pem"
KMS_PREFIX = "kms:"
KMS_ALGORITHM = "ECDSA_SHA_256"
KMS_KEY_SPEC = "ECC_NIST_P256"
KMS_RAW_LIMIT = 4096  # bytes: KMS signs a longer message only as a precomputed digest


class Signer(Protocol):
    spki_der: bytes  # the public key, DER SubjectPublicKeyInfo
    identity: str  # what the release records as its signer

    def sign(self, message: bytes) -> bytes:
        """A DER ECDSA-SHA256 signature of ``message``."""
        ...


def public_key_path(private_key: Path) -> Path:
    return private_key.with_name(private_key.name.removesuffix(".pem") + ".pub.pem")


@dataclass
class LocalKeySigner:
    path: Path
    spki_der: bytes
    identity: str
    _key: Any

    @classmethod
    def load(cls, path: Path, create: bool = False) -> LocalKeySigner:
        """The signer of the PEM private key at ``path``; ``create`` makes one if missing.

        Raises:
            SigningFailed: no such file (and not ``create``), unreadable, or not a P-256 key.
        """
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        if create and not path.exists():
            _generate(path)
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise SigningFailed(f"signing key {path}: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise SigningFailed(f"signing key {path} is not a P-256 (prime256v1) EC key")
        spki = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return cls(path, spki, f"key {signature.key_hint(spki)[:12]} ({path.name})", key)

    def sign(self, message: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        return bytes(self._key.sign(message, ec.ECDSA(hashes.SHA256())))


def _generate(path: Path) -> None:
    """A new P-256 key pair: private key at ``path`` (0600), public key beside it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    public_key_path(path).write_bytes(signature.public_key_pem(public))
    os.replace(tmp, path)  # last: a half-made pair is never taken for a key


@dataclass
class KmsSigner:
    key_id: str
    spki_der: bytes
    identity: str
    _client: Any

    @classmethod
    def connect(cls, key_id: str, client: Any = None) -> KmsSigner:
        """The signer of KMS key ``key_id``, after checking it is a P-256 signing key.

        Raises:
            SigningFailed: KMS refused or could not be reached, or the key is of another kind.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        kms = client or _kms_client()
        try:
            answer = kms.get_public_key(KeyId=key_id)
        except (BotoCoreError, ClientError) as exc:
            raise SigningFailed(f"KMS key {key_id}: {exc}") from None
        spki = bytes(answer.get("PublicKey") or b"")
        try:
            ecdsa_p256.public_key_from_spki(spki)
            usable = KMS_ALGORITHM in answer.get("SigningAlgorithms", [])
        except ecdsa_p256.InvalidKey:
            usable = False
        if not usable:
            raise SigningFailed(
                f"KMS key {key_id} cannot sign releases: they are signed with an {KMS_KEY_SPEC}"
                f" key (usage SIGN_VERIFY, {KMS_ALGORITHM})"
            )
        return cls(key_id, spki, f"kms {answer.get('KeyId', key_id)}", kms)

    def sign(self, message: bytes) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        if len(message) > KMS_RAW_LIMIT:
            raise SigningFailed(
                f"the statement to sign is {len(message)} bytes; KMS signs at most"
                f" {KMS_RAW_LIMIT} as a message"
            )
        try:
            answer = self._client.sign(
                KeyId=self.key_id,
                Message=message,
                MessageType="RAW",
                SigningAlgorithm=KMS_ALGORITHM,
            )
        except (BotoCoreError, ClientError) as exc:
            raise SigningFailed(f"KMS sign with {self.key_id}: {exc}") from None
        return bytes(answer["Signature"])


def _kms_client() -> Any:
    import boto3

    return boto3.client("kms")


def configured_signer() -> Signer:
    """The signer ``WATERML_SIGNING_KEY`` names (module docstring).

    Raises:
        SigningFailed: the key cannot be loaded or reached.
    """
    choice = os.environ.get(ENV_VAR, "").strip()
    if choice.startswith(KMS_PREFIX):
        return KmsSigner.connect(choice.removeprefix(KMS_PREFIX))
    if choice:
        return LocalKeySigner.load(Path(choice))
    return LocalKeySigner.load(LOCAL_KEY, create=True)


def public_key_pem() -> str:
    """The configured signer's public key, as a function pins it (MODEL_SIGNING_PUBLIC_KEY).

    Raises:
        SigningFailed: the key cannot be loaded or reached.
    """
    return signature.public_key_pem(configured_signer().spki_der).decode()


def sign_release(
    signer: Signer, model: str, files: dict[str, str], release: dict[str, Any]
) -> bytes:
    """The signature file (a Sigstore bundle) for ``model``'s ``files`` (name -> SHA-256) and
    our ``release`` fields, checked with the serving side's own verifier before it is returned.

    Raises:
        SigningFailed: the signer failed, or its signature does not verify with its own key.
    """
    payload = signature.statement(model, files, release)
    der = signer.sign(signature.pae(payload))
    signed = signature.envelope(payload, der, signer.spki_der)
    try:
        signature.verify(signed, signature.public_key_pem(signer.spki_der))
    except signature.SignatureError as exc:
        problem = f"{signer.identity} produced a signature that does not verify: {exc}"
        raise SigningFailed(problem) from None
    return signed
