"""The bundle a log is compared with: its bytes proved by SHA-256 before they are unpickled.

By default the version MLflow's ``champion`` alias names (what the registry released), or
``--version N``; its bytes come from the run as promotion downloads them, and must match the
version's ``artifact_sha256`` tag. ``--bundle PATH`` reads a file, which must match
``--sha256`` or the ``artifact_sha256`` of a registered version of the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.bundle import BundleError, is_model_name, loads, sha256_hex, verify_digest
from monitoring.errors import ModelError


@dataclass(frozen=True)
class Loaded:
    bundle: dict[str, Any]
    sha256: str
    where: str  # "wqi version 3 (champion)", or the file
    version: str | None


def load(
    name: str, version: str | None = None, path: Path | None = None, sha256: str | None = None
) -> Loaded:
    if not is_model_name(name):
        raise ModelError(f"invalid model name {name!r}")
    if path is not None:
        data, where, expected = _file(path), str(path), sha256
        if expected is None:
            expected, version = _registered(name, sha256_hex(data), where)
    else:
        data, where, expected, version = _mlflow(name, version)
    try:
        verify_digest(data, expected, where)  # before anything is unpickled
        bundle = loads(data)
    except BundleError as exc:
        raise ModelError(str(exc)) from None
    if bundle.get("name") != name:
        raise ModelError(f"{where} is a bundle of {bundle.get('name')!r}, not {name!r}")
    if not isinstance(bundle.get("profile"), dict):
        raise ModelError(
            f"{where} has no training profile (trained before profiles were recorded): "
            "retrain it, or pass --bundle with a newer one"
        )
    return Loaded(bundle, expected.lower(), where, version)


def _file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read bundle {path}: {exc.strerror or exc}") from None


def _tracking() -> Any:
    from registry.tracking import Tracking

    return Tracking()


def _registered(name: str, digest: str, where: str) -> tuple[str, str]:
    """The digest and version of the registered version holding these bytes."""
    from training.register import existing_version

    try:
        found = existing_version(_tracking().client, name, digest)
    except Exception as exc:  # an unreachable tracking server
        raise ModelError(f"cannot look {where} up in MLflow: {exc}") from None
    if found is None:
        raise ModelError(
            f"{where} (sha256 {digest[:12]}) is no registered version of {name}: pass "
            "--sha256 with the digest you expect"
        )
    return digest, str(found.version)


def _mlflow(name: str, version: str | None) -> tuple[bytes, str, str, str]:
    from registry.errors import RegistryError

    tracking = _tracking()
    try:
        if version is None:
            version = tracking.champion(name)
            if version is None:
                raise ModelError(
                    f"{name} has no champion in MLflow ({tracking.uri}): pass --version N or "
                    "--bundle PATH"
                )
            label = f"{name} version {version} (champion)"
        else:
            label = f"{name} version {version}"
        info = tracking.version(name, version)
        return tracking.bundle_bytes(info), label, info.artifact_sha256, version
    except RegistryError as exc:
        raise ModelError(str(exc)) from None
