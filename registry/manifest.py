"""The release manifest ``models/<name>/release.json``: which S3 object version is production.

Consumers (infra's deploy scripts, the Lambda) read this object and fetch the bundle *by its
VersionId*; the latest version of ``model.joblib`` means nothing on its own."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from registry.errors import StorageError

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


def bundle_key(name: str) -> str:
    return f"models/{name}/model.joblib"


def manifest_key(name: str) -> str:
    return f"models/{name}/release.json"


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
    previous: dict[str, Any] | None = None  # the release this one replaced, without its previous

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(self, k) for k in CORE_FIELDS}
        out["action"] = self.action
        out.update(self.extra)
        out["previous"] = self.previous
        return out

    def as_previous(self) -> dict[str, Any]:
        out = self.to_dict()
        del out["previous"]
        return out

    def same_target(self, other: Release) -> bool:
        """Same bytes *and* same MLflow version: two versions can hold identical bundles."""
        mine = (self.key, self.version_id, self.sha256, self.mlflow_version)
        return mine == (other.key, other.version_id, other.sha256, other.mlflow_version)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Release:
        try:
            core = {k: str(raw[k]) for k in CORE_FIELDS}
        except (KeyError, TypeError) as exc:
            raise StorageError(f"release manifest lacks field {exc}") from exc
        known = {*CORE_FIELDS, "action", "previous"}
        previous = raw.get("previous")
        if previous is not None and not isinstance(previous, dict):
            raise StorageError("release manifest field 'previous' is not an object or null")
        return cls(
            **core,
            action=str(raw.get("action", "promote")),
            extra={k: v for k, v in raw.items() if k not in known},
            previous=previous,
        )


def dumps(release: Release) -> bytes:
    """The stored form: indented for people reading the bucket."""
    return (json.dumps(release.to_dict(), indent=2) + "\n").encode()


def loads(data: bytes) -> Release:
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StorageError(f"release manifest is not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise StorageError("release manifest is not a JSON object")
    return Release.from_dict(raw)


def one_line(release: Release) -> str:
    """What promote/rollback/current print on stdout: one JSON object for CI."""
    return json.dumps(release.to_dict())
