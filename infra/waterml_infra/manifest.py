"""The release manifest written by `registry/` (`models/<name>/release.json`), parsed strictly.

A deploy pins exactly what the manifest says, so anything odd in it stops the deploy here
rather than producing a function that cannot load its model.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
# S3 VersionIds are opaque URL-safe strings of up to 1024 characters; "null" is what S3 returns
# for an object written while versioning was off, which a release must never point at.
_VERSION_ID = re.compile(r"^[A-Za-z0-9._+/=-]{1,1024}$")
REQUIRED = ("name", "bucket", "key", "version_id", "sha256")


class ManifestError(ValueError):
    """The release manifest is missing, malformed or inconsistent."""


@dataclasses.dataclass(frozen=True)
class Release:
    name: str
    bucket: str
    key: str
    version_id: str
    sha256: str
    mlflow_version: str = ""
    git_sha: str = ""
    released_at: str = ""
    previous: Release | None = None

    def environment(self) -> dict[str, str]:
        """The function's model environment variables, as the handler reads them
        (inference/config.py): the pinned object, and the MLflow version when known."""
        env = {
            "MODEL_BUCKET": self.bucket,
            "MODEL_KEY": self.key,
            "MODEL_VERSION_ID": self.version_id,
            "MODEL_SHA256": self.sha256,
        }
        if self.mlflow_version:
            env["MODEL_VERSION"] = self.mlflow_version
        return env

    def to_context(self) -> dict[str, str]:
        """The fields the CDK app needs (`-c release=<json>`)."""
        return {
            "name": self.name,
            "bucket": self.bucket,
            "key": self.key,
            "version_id": self.version_id,
            "sha256": self.sha256,
            "mlflow_version": self.mlflow_version,
        }


def _parse(data: Mapping[str, Any], *, nested: bool) -> Release:
    if not isinstance(data, Mapping):
        raise ManifestError("a release must be a JSON object")
    missing = [k for k in REQUIRED if not data.get(k)]
    if missing:
        raise ManifestError(f"release is missing {', '.join(missing)}")
    values = {k: data[k] for k in REQUIRED}
    for key, value in values.items():
        if not isinstance(value, str):
            raise ManifestError(f"{key} must be a string")
    if not _NAME.match(values["name"]):
        raise ManifestError(f"invalid model name {values['name']!r}")
    if values["key"] != f"models/{values['name']}/model.joblib":
        raise ManifestError(f"key {values['key']!r} is not models/{values['name']}/model.joblib")
    if not _SHA256.match(values["sha256"]):
        raise ManifestError("sha256 must be 64 lowercase hex digits")
    if values["version_id"] == "null" or not _VERSION_ID.match(values["version_id"]):
        raise ManifestError(f"invalid S3 VersionId {values['version_id']!r}")
    previous_data = data.get("previous")
    previous = None
    if previous_data is not None:
        if nested:
            raise ManifestError("previous must not itself have a previous release")
        previous = _parse(previous_data, nested=True)
        if previous.name != values["name"]:
            raise ManifestError("previous release is for another model")
    mlflow_version = data.get("mlflow_version", "")
    return Release(
        **values,
        mlflow_version=str(mlflow_version) if mlflow_version is not None else "",
        git_sha=str(data.get("git_sha") or ""),
        released_at=str(data.get("released_at") or ""),
        previous=previous,
    )


def parse_release(data: Mapping[str, Any]) -> Release:
    """Validate a decoded manifest."""
    return _parse(data, nested=False)


def loads(text: str | bytes) -> Release:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"release manifest is not JSON: {exc}") from exc
    return parse_release(data)
