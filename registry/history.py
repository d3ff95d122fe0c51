"""The release history: every S3 version of ``models/<name>/release.json``, newest first."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from registry import manifest, publish
from registry.errors import DigestMismatch, NoRelease, StorageError
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
