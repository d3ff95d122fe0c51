"""The release manifest ``models/<name>/release.json``: which S3 object version is production.

This module is the one home of the manifest contract: field names, key layout, strict parsing
and what deploys derive from a release (the Lambda's model environment, the CDK context).
registry/ writes and reads it; infra/ (``waterml_infra``) imports it from here. Keep it
import-light: no boto3 or mlflow at import time (the CDK app and the workflow scripts load it).

Consumers (infra's deploy scripts, the Lambda) read this object and fetch the bundle *by its
VersionId*; the latest version of ``model.joblib`` means nothing on its own. A deploy pins
exactly what the manifest says, so anything odd in it is refused when it is parsed rather than
producing a function that cannot load its model."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from inference.bundle import BUNDLE_FILENAME, MODEL_NAME, normalize_sha256, sha256_hex
from inference.release import DIGEST_METADATA, digest_problem, pins
from registry.errors import DigestMismatch, StorageError

# Field names are a contract with infra/ and inference/: keep them.
CORE_FIELDS = (
    "name",
    "mlflow_version",
    "bucket",
    "key",
    "version_id",
    "sha256",
    "git_sha",
    "released_at",
)
# What a deploy cannot do without: non-empty strings in every form of a release.
REQUIRED = ("name", "bucket", "key", "version_id", "sha256")
# The fields the CDK app needs (`-c release=<json>`, see Release.to_context).
CONTEXT_FIELDS = ("name", "bucket", "key", "version_id", "sha256", "mlflow_version")

# S3 VersionIds are opaque URL-safe strings of up to 1024 characters; "null" is what S3 returns
# for an object written while versioning was off, which a release must never point at.
_VERSION_ID = re.compile(r"^[A-Za-z0-9._+/=-]{1,1024}$")


class ManifestError(StorageError, ValueError):
    """The release manifest is missing, malformed or inconsistent.

    A StorageError, so the registry CLI exits with StorageError's code; a ValueError for
    infra's scripts, which know nothing of the registry's error classes."""


class ManifestDigestError(DigestMismatch, ValueError):
    """The stored manifest's bytes do not match the digest stored beside them (corruption, a
    truncated body, a hand edit that did not update the metadata)."""


# The bucket's layout: every object the registry writes lives under MODELS_PREFIX, one folder
# per model. Deploy roles and the promotion role are scoped to it (infra/).
MODELS_PREFIX = "models/"


def bundle_key(name: str) -> str:
    return f"{MODELS_PREFIX}{name}/{BUNDLE_FILENAME}"


def manifest_key(name: str) -> str:
    return f"{MODELS_PREFIX}{name}/release.json"


def intent_key(name: str) -> str:
    """What an interrupted rollback had resolved (see registry/README.md, "Retries")."""
    return f"{MODELS_PREFIX}{name}/intent.json"


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Release:
    name: str
    mlflow_version: str
    bucket: str
    key: str
    version_id: str
    sha256: str
    git_sha: str
    released_at: str
    action: str = "promote"  # or "rollback"
    # release_id (unique per write, so no two manifest versions share an ETag), approved_by,
    # reason, rolled_back_from, forced/force_reason.
    extra: dict[str, Any] = field(default_factory=dict)
    previous: Release | None = None  # the release this one replaced, without its previous

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(self, k) for k in CORE_FIELDS}
        out["action"] = self.action
        out.update(self.extra)
        out["previous"] = self.previous.to_dict_without_previous() if self.previous else None
        return out

    def to_dict_without_previous(self) -> dict[str, Any]:
        out = self.to_dict()
        del out["previous"]
        return out

    def as_previous(self) -> Release:
        """This release as the next one records it: without its own previous."""
        return replace(self, extra=dict(self.extra), previous=None)

    def same_target(self, other: Release) -> bool:
        """Same bytes *and* same MLflow version: two versions can hold identical bundles."""
        mine = (self.key, self.version_id, self.sha256, self.mlflow_version)
        return mine == (other.key, other.version_id, other.sha256, other.mlflow_version)

    def environment(self) -> dict[str, str]:
        """The function's model environment variables, as the handler reads them
        (inference/config.py): the pinned object, and the MLflow version when known."""
        return pins(self.to_dict())

    def to_context(self) -> dict[str, str]:
        """The fields the CDK app needs (`-c release=<json>`)."""
        return {k: getattr(self, k) for k in CONTEXT_FIELDS}


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _parse(data: Any, *, complete: bool, nested: bool) -> Release:
    if not isinstance(data, Mapping):
        raise ManifestError("release manifest is not a JSON object")
    if complete:
        for k in CORE_FIELDS:
            if k not in data:
                raise ManifestError(f"release manifest lacks field {k!r}")
    missing = [k for k in REQUIRED if not data.get(k)]
    if missing:
        raise ManifestError(f"release is missing {', '.join(missing)}")
    values = {k: data[k] for k in REQUIRED}
    for key, value in values.items():
        if not isinstance(value, str):
            raise ManifestError(f"{key} must be a string")
    if not MODEL_NAME.match(values["name"]):
        raise ManifestError(f"invalid model name {values['name']!r}")
    if values["key"] != bundle_key(values["name"]):
        raise ManifestError(f"key {values['key']!r} is not {bundle_key(values['name'])}")
    if normalize_sha256(values["sha256"]) != values["sha256"]:  # stored in canonical form
        raise ManifestError("sha256 must be 64 lowercase hex digits")
    if values["version_id"] == "null" or not _VERSION_ID.match(values["version_id"]):
        raise ManifestError(f"invalid S3 VersionId {values['version_id']!r}")
    previous_data = data.get("previous")
    previous = None
    if previous_data is not None:
        if nested:
            raise ManifestError("previous must not itself have a previous release")
        if not isinstance(previous_data, Mapping):
            raise ManifestError("release manifest field 'previous' is not an object or null")
        previous = _parse(previous_data, complete=complete, nested=True)
        if previous.name != values["name"]:
            raise ManifestError("previous release is for another model")
    known = {*CORE_FIELDS, "action", "previous"}
    return Release(
        name=values["name"],
        mlflow_version=_text(data.get("mlflow_version")),
        bucket=values["bucket"],
        key=values["key"],
        version_id=values["version_id"],
        sha256=values["sha256"],
        git_sha=_text(data.get("git_sha")),
        released_at=_text(data.get("released_at")),
        action=str(data.get("action", "promote")),
        extra={k: v for k, v in data.items() if k not in known},
        previous=previous,
    )


def parse_release(data: Mapping[str, Any], *, complete: bool = True) -> Release:
    """Validate a decoded release; raise ManifestError on anything a deploy could not pin.

    ``complete`` requires every CORE_FIELDS key, as the registry writes release.json. With
    ``complete=False`` mlflow_version, git_sha and released_at may be absent: the CDK context
    form (Release.to_context) that infra passes around, and what infra's scripts accept.

    Raises:
        ManifestError: a field is missing, of the wrong type or malformed.
    """
    return _parse(data, complete=complete, nested=False)


def dumps(release: Release) -> bytes:
    """The stored form: indented for people reading the bucket."""
    return (json.dumps(release.to_dict(), indent=2) + "\n").encode()


def loads(data: str | bytes, *, complete: bool = True) -> Release:
    """Parse the stored form (see ``parse_release``).

    Raises:
        ManifestError: not JSON, or not a valid release.
    """
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"release manifest is not JSON: {exc}") from exc
    return parse_release(raw, complete=complete)


def read_stored(
    body: bytes, metadata: Mapping[str, str] | None, where: str, *, complete: bool = True
) -> Release:
    """Parse ``release.json`` as read from S3: its bytes must match the ``sha256`` user
    metadata written with them. Every reader goes through here (the registry, ``make invoke``,
    the deploy scripts), so a damaged or hand-edited manifest is refused the same way.

    Raises:
        ManifestDigestError: the bytes do not match the stored digest.
        ManifestError: they do not parse as a release.
    """
    problem = digest_problem(body, metadata, where)  # the one check, shared with the image
    if problem:
        raise ManifestDigestError(problem)
    return loads(body, complete=complete)


def stored_metadata(body: bytes) -> dict[str, str]:
    """The user metadata a manifest is written with (see ``read_stored``)."""
    return {DIGEST_METADATA: sha256_hex(body)}


def one_line(release: Release) -> str:
    """What promote/rollback/current print on stdout: one JSON object for CI."""
    return json.dumps(release.to_dict())
