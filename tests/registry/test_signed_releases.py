"""Signed releases through the real path (MLflow SQLite, the loopback S3, the CLI): promotion
signs, ``verify`` accepts exactly what was signed and refuses a one-byte change in every kind
of file a release is made of, a rollback carries the signature it returns to and never lands
on an unsigned release, and ``history --at`` names the release live at a moment."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from inference import signature
from inference.bundle import sha256_hex
from registry import cli, errors, manifest, signing
from registry.store import ReleaseStore
from tests.registry.registry_helpers import Versions, approve

pytestmark = pytest.mark.integration


def _promote(versions: Versions, tmp_path: Path, capsys: Any, name: str = "wqi") -> dict:
    version, _ = versions.add(name)
    approvals = approve(tmp_path / f"approved-{version}.toml", **{name: version})
    assert cli.main(["promote", name, "--approvals", str(approvals)]) == 0
    return json.loads(capsys.readouterr().out)


def _verify(capsys: Any, *args: str) -> tuple[int, dict | str]:
    code = cli.main(["verify", "wqi", *args])
    out, err = capsys.readouterr()
    return code, json.loads(out) if code == 0 else err


def test_promotion_signs_and_verify_checks_every_file(
    versions: Versions, s3_env: dict[str, str], tmp_path: Path, capsys: Any
) -> None:
    release = _promote(versions, tmp_path, capsys)
    assert release["signature_key"] == "models/wqi/release.sig.json"
    assert set(release["attestations"]) == {
        signature.CARD_FILE, signature.VALIDATION_FILE, signature.PROVENANCE_FILE}  # fmt: skip
    code, checked = _verify(capsys, "--out", str(tmp_path / "out"))
    assert code == 0, checked
    assert isinstance(checked, dict)
    assert (checked["version_id"], checked["sha256"]) == (release["version_id"], release["sha256"])
    assert checked["approved_by"] == "tester" and checked["live"] is True
    written = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    for name, digest in checked["files"].items():
        assert sha256_hex(written[name]) == digest
    # The signature checks with nothing but the public key, as the function checks it.
    pem = signature.public_key_pem(signing.configured_signer().spki_der)
    signed = signature.verify(written["release.sig.json"], pem)
    assert signed.release["version_id"] == release["version_id"]


def _put(store: ReleaseStore, key: str, data: bytes) -> str:
    return store.put(key, data, Metadata={"sha256": sha256_hex(data)})


# Where in a file the changed byte is: its first byte, its middle, its last byte.
WHERE = (0.0, 0.5, 1.0)


def _flip(data: bytes, where: float) -> bytes:
    at = min(int(where * len(data)), len(data) - 1)
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def _publish(store: ReleaseStore, release: dict[str, Any]) -> None:
    """What someone with write access to the bucket can do: a new release.json, with the
    digest metadata that makes it read as genuine."""
    body = json.dumps(release).encode()
    store.put(manifest.manifest_key("wqi"), body, Metadata=manifest.stored_metadata(body))


def _tampered_file(name: str) -> Callable[[ReleaseStore, dict, float], dict]:
    """Replace one signed attachment by a copy with one byte changed, and point at it."""

    def tamper(store: ReleaseStore, release: dict, at: float) -> dict:
        found = release["attestations"][name]
        key = manifest.attachment_key("wqi", name)
        data = _flip(store.get(key, found["version_id"]).body, at)
        changed = {**found, "version_id": _put(store, key, data), "sha256": sha256_hex(data)}
        return {**release, "attestations": {**release["attestations"], name: changed}}

    return tamper


def _tampered_bundle(store: ReleaseStore, release: dict, at: float) -> dict:
    data = _flip(store.get(release["key"], release["version_id"]).body, at)
    return {**release, "version_id": _put(store, release["key"], data), "sha256": sha256_hex(data)}


def _tampered_signature_file(store: ReleaseStore, release: dict, at: float) -> dict:
    data = _flip(store.get(release["signature_key"], release["signature_version_id"]).body, at)
    return {**release, "signature_version_id": _put(store, release["signature_key"], data)}


def _tampered_envelope(part: str) -> Callable[[ReleaseStore, dict, float], dict]:
    """One byte of the statement (the DSSE payload) or of the ECDSA signature, re-encoded."""

    def tamper(store: ReleaseStore, release: dict, at: float) -> dict:
        key, version_id = release["signature_key"], release["signature_version_id"]
        bundle = json.loads(store.get(key, version_id).body)
        envelope = bundle["dsseEnvelope"]
        field = envelope if part == "payload" else envelope["signatures"][0]
        name = "payload" if part == "payload" else "sig"
        raw = base64.b64decode(field[name])
        field[name] = base64.b64encode(_flip(raw, at)).decode()
        return {**release, "signature_version_id": _put(store, key, json.dumps(bundle).encode())}

    return tamper


def _tampered_manifest(field: str) -> Callable[[ReleaseStore, dict, float], dict]:
    def tamper(store: ReleaseStore, release: dict, at: float) -> dict:
        value = str(release[field])
        return {**release, field: value[:-1] + ("x" if value[-1] != "x" else "y")}

    return tamper


TAMPERS: dict[str, Callable[[ReleaseStore, dict, float], dict]] = {
    "bundle": _tampered_bundle,
    "card": _tampered_file(signature.CARD_FILE),
    "validation": _tampered_file(signature.VALIDATION_FILE),
    "provenance": _tampered_file(signature.PROVENANCE_FILE),
    "statement": _tampered_envelope("payload"),
    "signature": _tampered_envelope("sig"),
    "signature file": _tampered_signature_file,
    "release.json approved_by": _tampered_manifest("approved_by"),
    "release.json mlflow_version": _tampered_manifest("mlflow_version"),
}


def test_a_one_byte_change_in_any_part_of_a_release_is_refused(
    versions: Versions, s3_env: dict[str, str], tmp_path: Path, capsys: Any
) -> None:
    release = _promote(versions, tmp_path, capsys)
    store = ReleaseStore.from_env()
    refused: list[str] = []
    for kind, tamper in TAMPERS.items():
        for at in WHERE:
            _publish(store, tamper(store, release, at))
            code, why = _verify(capsys)
            assert code == errors.SignatureInvalid.exit_code, (kind, at, why)
            assert "does not verify" in str(why), (kind, why)
            refused.append(kind)
    assert set(refused) == set(TAMPERS)
    _publish(store, release)  # the genuine manifest again: verified
    assert _verify(capsys)[0] == 0


def test_another_keys_valid_signature_is_refused(
    versions: Versions, s3_env: dict[str, str], tmp_path: Path, capsys: Any
) -> None:
    _promote(versions, tmp_path, capsys)
    other = signing.LocalKeySigner.load(tmp_path / "other" / "key.pem", create=True)
    pem = tmp_path / "other.pub.pem"
    pem.write_bytes(signature.public_key_pem(other.spki_der))
    code, why = _verify(capsys, "--public-key", str(pem))
    assert code == errors.SignatureInvalid.exit_code and "does not verify" in str(why)


def test_rollback_reuses_the_signature_and_never_lands_on_an_unsigned_release(
    versions: Versions, s3_env: dict[str, str], tmp_path: Path, capsys: Any
) -> None:
    store = ReleaseStore.from_env()
    first = _promote(versions, tmp_path, capsys)
    second = _promote(versions, tmp_path, capsys)
    assert second["signature_version_id"] != first["signature_version_id"]
    assert cli.main(["rollback", "wqi"]) == 0
    back = json.loads(capsys.readouterr().out)
    assert back["version_id"] == first["version_id"]
    for field in manifest.SIGNATURE_FIELDS:
        assert back[field] == first[field]
    assert len(store.versions(manifest.signature_key("wqi"))) == 2  # nothing signed again
    assert _verify(capsys)[0] == 0


def test_rollback_never_lands_on_an_unsigned_release(
    versions: Versions, s3_env: dict[str, str], tmp_path: Path, capsys: Any
) -> None:
    """A release from before promotion signed: the function would refuse it."""
    store = ReleaseStore.from_env()
    first = _promote(versions, tmp_path, capsys)
    (signed,) = store.versions(manifest.manifest_key("wqi"))
    _publish(store, {k: v for k, v in first.items() if k not in manifest.SIGNATURE_FIELDS})
    store.delete_version(manifest.manifest_key("wqi"), signed["VersionId"])
    _promote(versions, tmp_path, capsys)
    assert cli.main(["rollback", "wqi"]) == errors.NoRelease.exit_code
    assert "not signed" in capsys.readouterr().err


def test_history_names_the_release_live_at_a_moment(
    versions: Versions, s3_env: dict[str, str], tmp_path: Path, capsys: Any
) -> None:
    first = _promote(versions, tmp_path, capsys)
    assert cli.main(["rollback", "wqi"]) == errors.NoRelease.exit_code  # nothing before it
    capsys.readouterr()
    store = ReleaseStore.from_env()
    (written,) = store.versions(manifest.manifest_key("wqi"))
    since = written["LastModified"]

    assert cli.main(["history", "wqi", "--at", since.isoformat()]) == 0
    live = json.loads(capsys.readouterr().out)
    assert (live["version_id"], live["sha256"]) == (first["version_id"], first["sha256"])
    assert live["approved_by"] == "tester" and live["signed_by"] == first["signed_by"]
    assert live["until"] is None and live["rollback"] is None

    assert cli.main(["history", "wqi", "--at", "2001-01-01T00:00:00Z"]) == 14
    assert "no release of wqi was live" in capsys.readouterr().err
    assert cli.main(["history", "wqi", "--at", "yesterday"]) == errors.UsageError.exit_code
    assert "ISO 8601" in capsys.readouterr().err
