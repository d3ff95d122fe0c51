"""The release history: every S3 version of ``models/<name>/release.json``, newest first, and
which one was live at a given moment (``python -m registry history MODEL --at TIME``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from registry import manifest, publish
from registry.errors import DigestMismatch, NoRelease, StorageError, UsageError
from registry.manifest import Release
from registry.output import stderr
from registry.store import ReleaseStore, fatal


@dataclass(frozen=True)
class ManifestVersion:
    version_id: str
    is_latest: bool
    last_modified: str
    release: Release


def history(
    store: ReleaseStore, name: str, warn: Callable[[str], None] | None = None
) -> list[ManifestVersion]:
    """Every readable manifest version, newest first, each digest-checked. A version that
    cannot be read (corrupt body, digest mismatch, gone) is skipped with a warning on
    stderr: one bad old version must not block promote, rollback or `releases`.

    Raises:
        NoCredentials, BucketMissing: nothing else would read better.
        RegistryError: the versions could not be listed (see ``store.translated``).
    """
    warn = warn or stderr
    out = []
    key = manifest.manifest_key(name)
    for v in store.versions(key):
        try:
            release, _, _ = publish.read(store, name, v["VersionId"])
        except (DigestMismatch, NoRelease, StorageError) as exc:
            if fatal(exc):
                raise
            warn(f"warning: skipping unreadable {store.where(key, v['VersionId'])}: {exc}")
            continue
        out.append(
            ManifestVersion(
                version_id=v["VersionId"],
                is_latest=bool(v.get("IsLatest")),
                last_modified=v["LastModified"].strftime("%Y-%m-%dT%H:%M:%SZ"),
                release=release,
            )
        )
    return out


def parse_time(text: str) -> datetime:
    """An ISO 8601 moment (``2026-12-07T10:00:00Z``; without an offset, UTC).

    Raises:
        UsageError: not a date and time.
    """
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--at {text!r} is not an ISO 8601 time such as"
                         " 2026-12-07T10:00:00Z") from None  # fmt: skip
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def live_at(past: list[ManifestVersion], at: datetime) -> dict[str, Any]:
    """Which release ``release.json`` named at ``at``: the newest manifest version written by
    then (S3's version history), with who approved and signed it, whether it was a rollback,
    and until when it stayed (None: still live). What a function served joins on its answers'
    ``model.s3VersionId`` and ``model.sha256``.

    Raises:
        NoRelease: nothing was released by then.
    """
    name = past[0].release.name if past else "the model"
    stamp = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for index, entry in enumerate(past):  # newest first
        if entry.last_modified <= stamp:
            release = entry.release
            extra = release.extra
            rollback = None
            if release.action == "rollback":
                rollback = {"from": extra.get("rolled_back_from"), "reason": extra.get("reason")}
            return {
                "model": release.name,
                "at": stamp,
                "mlflow_version": release.mlflow_version,
                "version_id": release.version_id,
                "sha256": release.sha256,
                "approved_by": extra.get("approved_by"),
                "signed_by": extra.get("signed_by"),
                "released_at": release.released_at,
                "manifest_version_id": entry.version_id,
                "since": entry.last_modified,
                "until": past[index - 1].last_modified if index else None,
                "rollback": rollback,
            }
    first = f" (its first release is {past[-1].last_modified})" if past else ""
    raise NoRelease(f"no release of {name} was live at {stamp}{first}")
