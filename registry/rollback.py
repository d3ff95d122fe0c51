"""``rollback MODEL``: re-point the manifest (and `champion`) at an earlier release.

No bytes are uploaded: the earlier S3 object version is read back, checked against its SHA-256,
and the new manifest names that same VersionId. Which release: ``registry.targets``.

A relative rollback (``--steps``) depends on what is live, so a retry after a crash would walk
back further than the first attempt meant to. The resolved release is therefore recorded first
(``registry.intents``, bound to the manifest version it starts from); a re-run of the same
command resumes that intent: it writes the same release, or reports it already done. Anything
released since makes the intent stale, and the command is a new rollback. Automation names its
target instead (``--to``): every run prints that form of what it did.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from registry import bundles, failpoints, intents, manifest, publish
from registry.commit import Log, commit, orphaned_champion, reconcile
from registry.deadline import DeadlineExceeded
from registry.errors import DigestMismatch, NoRelease, RegistryError, UsageError
from registry.history import ManifestVersion, history
from registry.intents import Intent
from registry.manifest import Release
from registry.output import stderr
from registry.promote import spec_for
from registry.publish import ManifestState
from registry.store import ReleaseStore
from registry.targets import pick_target
from registry.tracking import Tracking


def rollback(
    model: str,
    to: str | None = None,
    steps: int = 1,
    reason: str | None = None,
    store: ReleaseStore | None = None,
    tracking: Tracking | None = None,
    log: Log = stderr,
    to_version: str | None = None,
    deliver: Callable[[Release], None] | None = None,
) -> Release:
    """Roll ``model`` back and return the release that is live afterwards (the live one when
    the target already is). ``deliver`` hands the result over (the CLI prints it) *before* the
    intent is closed: a run killed before its caller saw the result is finished, not repeated,
    by a re-run.

    Raises:
        UsageError, UnknownModel: bad arguments or model name, no spec.
        BucketMissing, NoCredentials, UnversionedBucket: the bucket cannot take releases.
        NoRelease: nothing to roll back to (see ``targets.pick_target``), or no release at all.
        DigestMismatch: the target's bytes or MLflow tag disagree with the release.
        VersionNotFound: the target's MLflow version is gone.
        NotSent: the manifest write never reached S3; nothing released.
        ConcurrentUpdate: another release was written meanwhile; nothing released.
        OutcomeUnknown: the manifest write left and S3 could not be read back.
        StorageError: S3 or MLflow failed before anything was released.
    """
    spec_for(model)
    if steps < 1:
        raise UsageError("--steps must be 1 or more")
    if to is not None and to_version is not None:
        raise UsageError("--to and --to-version are mutually exclusive")
    store = store or ReleaseStore.from_env()
    store.check_bucket()
    base = publish.current(store, model)
    tracking = tracking or Tracking()
    if base.release is None and base.problem is None:
        hint = orphaned_champion(tracking, model, store.bucket)
        raise NoRelease(
            hint or f"{model} has no release in s3://{store.bucket}; nothing to roll back"
        )
    reconcile(tracking, base.release, log)
    request = {"command": "rollback", "to": to, "to_version": to_version, "steps": steps}
    release, intent_open, past = _rollback(store, tracking, model, base, request, reason, log)
    try:
        again = repeat_form(store, release, past)
        log(f"to name this release again (a no-op while it is live, as CI should):"
            f" python -m registry rollback {model} {again}")  # fmt: skip
    except (RegistryError, DeadlineExceeded) as exc:  # released all the same: only the hint
        log(f"warning: could not read the history to name this release: {exc}")
    if deliver is not None:
        deliver(release)
    if intent_open:
        try:
            still_open = intents.close(store, model, release)
        except DeadlineExceeded as exc:
            still_open = f"the {exc} deadline passed"
        if still_open:
            log(f"warning: released, but this rollback's intent is still open ({still_open}):"
                f" the next plain `rollback {model}` reports this release as done and closes"
                " it, instead of going further back; run it twice, or name the target with"
                " --to")  # fmt: skip
    return release


def _rollback(
    store: ReleaseStore,
    tracking: Tracking,
    model: str,
    base: ManifestState,
    request: dict[str, Any],
    reason: str | None,
    log: Log,
) -> tuple[Release, bool, list[ManifestVersion] | None]:
    """The release this rollback lands on, whether an intent is open for it, and the history
    when it was read."""
    intent = intents.pending(store, model)
    if intent is not None and intent.request == request:
        rid = _release_id(intent.release)
        if intent.finished(base):
            log(f"{model}: this rollback was already done by an interrupted run (release {rid})")
            return intent.release, True, None
        if intent.resumes(base):
            log(f"{model}: resuming the interrupted rollback to version"
                f" {intent.release.mlflow_version} (release {rid})")  # fmt: skip
            return commit(store, tracking, intent.release, base, log), True, None
        log(f"{model}: the intent of an interrupted rollback ({intent.created_at}) no longer"
            " applies: release.json changed since; this is a new rollback")  # fmt: skip

    past = history(store, model)
    current = base.release
    broken = base.problem or (bundles.problem(store, current) if current else None)
    if broken:
        log(f"warning: the live release of {model} is broken: {broken}")
    target = pick_target(
        current,
        past,
        request["to"],
        request["steps"],
        request["to_version"],
        broken=bool(broken),
        problem=lambda r: bundles.problem(store, r),
        log=lambda line: log(f"{model}: {line}"),
    )
    if current is not None and target.same_target(current) and not broken:
        log(f"{model}: versionId {target.version_id} is already live; nothing to do")
        return current, False, past

    # Check the bytes and the registry before writing anything.
    store.read_verified(target.key, target.version_id, target.sha256)
    info = tracking.version(model, target.mlflow_version)
    if info.artifact_sha256 != target.sha256:
        raise DigestMismatch(
            f"{model} version {target.mlflow_version}: artifact_sha256 tag"
            f" {info.artifact_sha256} differs from the release's {target.sha256}"
        )
    failpoints.hit("checked")
    # An unreadable live manifest replaced nothing a release can name: the newest readable one
    # is what production last had.
    replaced = current or (past[0].release if past else None)
    release = _rollback_release(model, replaced, target, reason, broken, known=current is not None)
    assert base.version_id is not None  # a manifest is live (readable or not)
    intents.record(store, model, Intent(request, release, base.version_id, release.released_at))
    failpoints.hit("intent-written")
    log(f"{model}: rolling back from version {current.mlflow_version if current else '?'} to"
        f" {target.mlflow_version} (versionId {target.version_id}, digest verified)")  # fmt: skip
    return commit(store, tracking, release, base, log), True, past


def _rollback_release(
    model: str,
    replaced: Release | None,
    target: Release,
    reason: str | None,
    broken: str | None,
    known: bool,
) -> Release:
    extra: dict[str, Any] = {"release_id": uuid.uuid4().hex}
    extra |= {k: v for k, v in target.extra.items() if k in ("approved_by",)}
    if known and replaced is not None:
        extra["rolled_back_from"] = replaced.mlflow_version
    extra["reason"] = reason or (
        f"rollback from version {replaced.mlflow_version}"
        if known and replaced is not None
        else "rollback from an unreadable release.json"
    )
    extra |= {"repaired": broken} if broken else {}
    return Release(
        name=model,
        mlflow_version=target.mlflow_version,
        bucket=target.bucket,
        key=target.key,
        version_id=target.version_id,
        sha256=target.sha256,
        git_sha=target.git_sha,
        released_at=manifest.utc_now(),
        action="rollback",
        extra=extra,
        previous=replaced.as_previous() if replaced else None,
    )


def repeat_form(
    store: ReleaseStore, release: Release, past: list[ManifestVersion] | None = None
) -> str:
    """The target-based arguments that name ``release``: ``--to <VersionId>``, or
    ``--to-version`` when releases of several MLflow versions share that VersionId.

    Raises:
        RegistryError: the history could not be read (only when ``past`` is not given).
    """
    if past is None:
        past = history(store, release.name, warn=lambda _: None)
    sharing = {e.release.mlflow_version for e in past if e.release.version_id == release.version_id}
    if len(sharing - {release.mlflow_version}) > 0:
        return f"--to-version {release.mlflow_version}"
    return f"--to {release.version_id}"


def _release_id(release: Release) -> str:
    return str(release.extra.get("release_id", ""))
