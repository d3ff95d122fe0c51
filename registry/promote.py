"""``promote MODEL``: the approved MLflow version becomes the production release.

Order matters for safety: every check runs before the first write; the bundle upload creates a
new, unreferenced object version; only the conditional manifest write makes it current. The
target is fixed by the approval file, so re-running after a crash at any point finishes the
same release or reports it already done (registry/README.md, "Retries")."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from inference.bundle import is_model_name, model_name_problem, sha256_hex
from registry import approvals, bundles, failpoints, gates, manifest, publish
from registry.commit import Log, commit, orphaned_champion, reconcile
from registry.errors import (
    ConcurrentUpdate,
    DigestMismatch,
    RolledBack,
    UnknownModel,
    UsageError,
    VersionNotFound,
)
from registry.history import history
from registry.manifest import Release
from registry.output import stderr
from registry.store import ReleaseStore
from registry.tracking import Tracking, VersionInfo
from training.spec import ModelSpec, SpecError, load_spec


def spec_for(model: str) -> ModelSpec:
    """The model's training spec; every command checks the name through here first.

    Raises:
        UsageError: ``model`` is not a valid model name.
        UnknownModel: there is no ``training/specs/<model>.toml``.
    """
    if not is_model_name(model):
        raise UsageError(model_name_problem(model))
    try:
        return load_spec(model)
    except SpecError as exc:
        raise UnknownModel(str(exc)) from exc


def promote(
    model: str,
    approvals_path: Path = approvals.DEFAULT_PATH,
    force: bool = False,
    reason: str | None = None,
    store: ReleaseStore | None = None,
    tracking: Tracking | None = None,
    log: Log = stderr,
) -> Release:
    """Release the version ``approvals_path`` approves for ``model``, and return the release
    that is live afterwards (the existing one when it already is that version).

    Every check runs before the first write; a re-run after a crash at any point finishes the
    same release or reports it already done.

    Raises:
        UsageError, UnknownModel: a bad model name, or no spec for it.
        NotApproved: no (complete) approval for the model.
        BucketMissing, NoCredentials, UnversionedBucket: the bucket cannot take releases.
        VersionNotFound, BundleMissing: the approved version or its bundle is not there.
        DigestMismatch: the approval, the version's tag and the bundle's bytes disagree.
        GateFailed, WorseThanChampion: the metrics refuse it (``force`` overrides the second).
        RolledBack: it is the version the live release was rolled back from.
        NotSent: the manifest write never reached S3; nothing released.
        ConcurrentUpdate: another release was written meanwhile; nothing released.
        OutcomeUnknown: the manifest write left and S3 could not be read back.
        StorageError: S3 or MLflow failed before anything was released.
    """
    spec = spec_for(model)
    approval = approvals.approved(model, approvals_path)
    gates.require_reason(force, reason)
    store = store or ReleaseStore.from_env()
    store.check_bucket()
    tracking = tracking or Tracking()
    info = _approved_version(tracking, approval)
    base = publish.current(store, model)
    current = base.release
    reconcile(tracking, current, log)
    if base.problem:
        # The gates, `previous` and the bytes to reuse go by the last release production
        # could read; the conditional write replaces the unreadable one.
        past = history(store, model)
        current = past[0].release if past else None
    orphan = None if current or base.problem else orphaned_champion(tracking, model, store.bucket)
    if orphan:
        log(f"warning: {orphan}")
    broken = base.problem or (bundles.problem(store, current) if current else None)
    if broken:
        log(f"warning: the live release of {model} is broken: {broken}; this promotion repairs it")
    elif current is not None and _is_release_of(current, info):
        log(f"{model} version {info.version} is already the release (versionId"
            f" {current.version_id}); nothing uploaded")  # fmt: skip
        return current
    _refuse_rolled_back_version(current, info, force)

    data = _verified_bundle(tracking, info)
    gates.check_thresholds(spec.gates, info)
    note = gates.check_against_champion(
        spec.gates, info, _champion(tracking, current), force, reason
    )
    log(f"{model} version {info.version} (approved by {approval.approved_by}): gates passed")
    if note:
        log(note)
    failpoints.hit("checked")

    version_id = _reuse_or_upload(store, model, data, info, current, log)
    failpoints.hit("uploaded")
    extra: dict[str, Any] = {
        "release_id": uuid.uuid4().hex,
        "approved_by": approval.approved_by,
        "reason": approval.reason,
    }
    extra |= {"forced": True, "force_reason": reason} if note else {}
    extra |= {"repaired": broken} if broken else {}
    release = Release(
        name=model,
        mlflow_version=info.version,
        bucket=store.bucket,
        key=manifest.bundle_key(model),
        version_id=version_id,
        sha256=info.artifact_sha256,
        git_sha=info.git_sha,
        released_at=manifest.utc_now(),
        action="promote",
        extra=extra,
        previous=current.as_previous() if current else None,
    )
    try:
        return commit(store, tracking, release, base, log)
    except ConcurrentUpdate:
        # Someone else released the very same version meanwhile: that is our result too.
        now = publish.current(store, model).release
        if now is not None and _is_release_of(now, info) and not bundles.problem(store, now):
            log(f"{model} version {info.version} was released by a concurrent run")
            return now
        raise


def _approved_version(tracking: Tracking, approval: approvals.Approval) -> VersionInfo:
    """The MLflow version the approval names, whose tag must pin the approved bytes."""
    info = tracking.version(approval.model, approval.version)
    if approval.sha256 != info.artifact_sha256:
        raise DigestMismatch(
            f"{approval.model} version {info.version}: approved sha256 {approval.sha256} differs"
            f" from its artifact_sha256 tag {info.artifact_sha256}; the version changed after"
            " approval, or the approval names other bytes"
        )
    return info


def _is_release_of(release: Release, info: VersionInfo) -> bool:
    return release.mlflow_version == info.version and release.sha256 == info.artifact_sha256


def _refuse_rolled_back_version(current: Release | None, info: VersionInfo, force: bool) -> None:
    """A CI re-run with an unchanged approval must not silently undo a rollback."""
    if (
        current is not None
        and current.action == "rollback"
        and str(current.extra.get("rolled_back_from")) == info.version
        and not force
    ):
        raise RolledBack(
            f"{info.name} version {info.version} was rolled back on {current.released_at};"
            ' approve a new version, or re-promote it with --force --reason "..."'
        )


def _verified_bundle(tracking: Tracking, info: VersionInfo) -> bytes:
    data = tracking.bundle_bytes(info)
    actual = sha256_hex(data)
    if actual != info.artifact_sha256:
        raise DigestMismatch(
            f"{info.name} version {info.version}: bundle SHA-256 {actual} differs from its"
            f" artifact_sha256 tag {info.artifact_sha256}"
        )
    return data


def _champion(tracking: Tracking, current: Release | None) -> VersionInfo | None:
    if current is None:
        return None
    try:
        return tracking.version(current.name, current.mlflow_version)
    except VersionNotFound as exc:
        raise VersionNotFound(f"the live release's version cannot be compared: {exc}") from exc


def _reuse_or_upload(
    store: ReleaseStore,
    model: str,
    data: bytes,
    info: VersionInfo,
    current: Release | None,
    log: Log,
) -> str:
    """Bytes already in S3 are re-pointed to, never uploaded twice: first the live release and
    its predecessor (no request), then the bundle's object versions by their ``sha256``
    metadata (HEAD requests; no manifest version is read). A candidate is used only once it
    reads back verified, so a broken release is never re-pointed to."""
    sha = sha256_hex(data)
    key = manifest.bundle_key(model)
    for version_id in _reuse_candidates(store, model, sha, current):
        problem = bundles.unreadable(store, key, version_id, sha)
        if problem:
            log(f"not reusing versionId {version_id}: {problem}")
            continue
        log(f"bytes already in S3 (versionId {version_id}); not uploading again")
        return version_id
    version_id = bundles.upload(store, model, data, sha, info.version, info.git_sha)
    store.read_verified(key, version_id, sha)
    log(f"uploaded s3://{store.bucket}/{key} versionId {version_id}")
    return version_id


def _reuse_candidates(
    store: ReleaseStore, model: str, sha: str, current: Release | None
) -> Iterator[str]:
    key = manifest.bundle_key(model)
    known = [r for r in (current, current.previous if current else None) if r is not None]
    seen = set()
    for r in known:
        if r.sha256 == sha and r.key == key and r.version_id not in seen:
            seen.add(r.version_id)
            yield r.version_id
    found = bundles.find(store, model, sha)
    if found is not None and found not in seen:
        yield found
