"""Intents: what a relative rollback resolved, recorded in ``models/<name>/intent.json`` before
its manifest write, so that a retry lands on the same release (registry/README.md, "Retries")."""

from __future__ import annotations

import json
from typing import Any

from registry import manifest
from registry.manifest import Release
from registry.output import stderr
from registry.store import ObjectGone, ReleaseStore


def pending(store: ReleaseStore, name: str) -> dict[str, Any] | None:
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
        intent = json.loads(body)
        if not isinstance(intent, dict):
            raise ValueError("not an object")
        intent["release"] = manifest.parse_release(intent["release"])
    except (ValueError, KeyError, TypeError) as exc:
        stderr(f"warning: ignoring unreadable {store.where(key)}: {exc}")
        return None
    return intent if intent.get("state") == "pending" else None


def write(store: ReleaseStore, name: str, intent: dict[str, Any]) -> None:
    """Record (or close) an intent.

    Raises:
        RegistryError: the write failed (see ``store.translated``).
    """
    data = dict(intent)
    if isinstance(data.get("release"), Release):
        data["release"] = data["release"].to_dict()
    body = (json.dumps(data, indent=2) + "\n").encode()
    store.put(manifest.intent_key(name), body, ContentType="application/json")
