"""Intents: what a relative rollback resolved, recorded in ``models/<name>/intent.json`` before
its manifest write, so that a retry lands on the same release (registry/README.md, "Retries").

An intent is bound to the manifest version it started from: it is resumed only while that
version is still live (the run died before its write), and finished only while its own
release is live (the run died before it reported). Any other live release means something
happened since, a promotion or another rollback, and the intent is stale: no later command is
taken for its retry."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from registry import manifest
from registry.errors import RegistryError
from registry.manifest import Release
from registry.output import stderr
from registry.publish import ManifestState
from registry.store import ObjectGone, ReleaseStore

PENDING, DONE = "pending", "done"


@dataclass(frozen=True)
class Intent:
    request: dict[str, Any]  # the command's arguments: {"command", "to", "to_version", "steps"}
    release: Release  # what it resolved, with its release_id
    base_version_id: str  # the release.json VersionId live when it started
    created_at: str

    def resumes(self, live: ManifestState) -> bool:
        """The run died before its manifest write: what it started from is still live."""
        return live.version_id == self.base_version_id

    def finished(self, live: ManifestState) -> bool:
        """The run died after its write, before it reported: its own release is live."""
        return live.release == self.release  # release_id makes every write unique


def pending(store: ReleaseStore, name: str) -> Intent | None:
    """The intent an interrupted command left open, or None. An unreadable one is ignored
    with a warning: it only ever makes a retry resume, never decides a release by itself.

    Raises:
        RegistryError: S3 failed (see ``store.translated``).
    """
    key = manifest.intent_key(name)
    try:
        body = store.get(key).body
    except ObjectGone:
        return None
    try:
        data = json.loads(body)
        if not isinstance(data, dict):
            raise ValueError("not an object")
        if data.get("state") != PENDING:
            return None
        return Intent(
            request=dict(data["request"]),
            release=manifest.parse_release(data["release"]),
            base_version_id=str(data["base_manifest_version_id"]),
            created_at=str(data.get("created_at", "")),
        )
    except (ValueError, KeyError, TypeError) as exc:
        stderr(f"warning: ignoring unreadable {store.where(key)}: {exc}")
        return None


def record(store: ReleaseStore, name: str, intent: Intent) -> None:
    """Record an intent before the manifest write it leads to.

    Raises:
        RegistryError: the write failed (see ``store.translated``); nothing was released.
    """
    _write(
        store,
        name,
        {
            "state": PENDING,
            "request": intent.request,
            "base_manifest_version_id": intent.base_version_id,
            "release": intent.release.to_dict(),
            "created_at": intent.created_at,
        },
    )


def close(store: ReleaseStore, name: str, release: Release) -> str | None:
    """Close the intent once its release is live and reported. Returns None when it is
    closed, else why it is still open: a failed write is checked by reading the intent back
    (a lost reply may have closed it all the same). Never raises: the release stands."""
    try:
        _write(store, name, {"state": DONE, "release": release.to_dict()})
        return None
    except RegistryError as exc:
        problem = str(exc)
    try:
        still = pending(store, name)
    except RegistryError as exc:
        return f"{problem}; reading it back: {exc}"
    return problem if still is not None and still.release == release else None


def _write(store: ReleaseStore, name: str, data: dict[str, Any]) -> None:
    body = (json.dumps(data, indent=2) + "\n").encode()
    store.put(manifest.intent_key(name), body, ContentType="application/json")
