"""``rollback MODEL``: re-point the manifest (and `champion`) at an earlier release.

No bytes are uploaded: the earlier S3 object version is read back, checked against its SHA-256,
and the new manifest names that same VersionId.

A relative rollback (``--steps``) depends on what is live, so a retry after a crash would walk
back further than the first attempt meant to. The resolved release is therefore recorded first
(``models/<name>/intent.json``, with the release it starts from); a re-run of the same command
resumes that intent: it writes the same release, or reports it already done."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from registry import bundles, failpoints, intents, manifest, publish
from registry.commit import Log, commit, orphaned_champion, reconcile
from registry.errors import DigestMismatch, NoRelease, UsageError
from registry.history import ManifestVersion, history
from registry.manifest import Release
from registry.output import stderr
from registry.promote import spec_for
from registry.publish import ManifestState
from registry.store import ReleaseStore
from registry.tracking import Tracking


def pick_target(
    current: Release,
    past: list[ManifestVersion],
    to: str | None,
    steps: int,
    to_version: str | None = None,
) -> Release:
    """``--to``: the release with that bundle VersionId (refused when releases of several MLflow
    versions share it: identical bytes are reused). ``--to-version``: the newest release of that
    MLflow version. ``--steps N``: walk back N promotions from the one now live, so repeated
    rollbacks keep going back instead of bouncing.

    Raises:
        UsageError: both ``to`` and ``to_version``, or a VersionId shared by several MLflow
            versions.
        NoRelease: no such release, or not that many earlier promotions.
    """
    if to is not None and to_version is not None:
        raise UsageError("--to and --to-version are mutually exclusive")
    if to_version is not None:
        for entry in past:
            if entry.release.mlflow_version == to_version:
                return entry.release
        raise NoRelease(
            f"no release of {current.name} is MLflow version {to_version}; see `releases`"
        )
    if to is not None:
        matches = [e.release for e in past if e.release.version_id == to]
        if not matches:
            raise NoRelease(f"no release of {current.name} has versionId {to}; see `releases`")
        mlflow_versions = sorted({r.mlflow_version for r in matches}, key=_numeric)
        if len(mlflow_versions) > 1:
            raise UsageError(
                f"versionId {to} holds the bytes of {current.name} MLflow versions"
                f" {', '.join(mlflow_versions)}; say which with --to-version"
                f" {' or --to-version '.join(mlflow_versions)}"
            )
        return matches[0]
    promotions = [e.release for e in past if e.release.action == "promote"]
    live = next((i for i, r in enumerate(promotions) if r.same_target(current)), None)
    if live is None:
        raise NoRelease(f"the live release of {current.name} is not in its promotion history")
    if live + steps >= len(promotions):
        earlier = len(promotions) - live - 1
        raise NoRelease(
            f"{current.name} has {earlier} earlier promotion(s); cannot go back {steps} step(s)"
        )
    return promotions[live + steps]


def last_good(
    store: ReleaseStore, broken: Release, past: list[ManifestVersion], steps: int
) -> Release:
    """With a broken live release, ``--steps N`` counts back through the earlier releases
    whose bytes still read back verified (the newest good one is step 1).

    Raises:
        NoRelease: fewer than ``steps`` earlier good releases.
        NoCredentials, BucketMissing: S3 refused.
    """
    seen: list[Release] = []
    for entry in past:
        r = entry.release
        if r.same_target(broken) or any(r.same_target(s) for s in seen):
            continue
        if bundles.unreadable(store, r.key, r.version_id, r.sha256) is None:
            seen.append(r)
            if len(seen) == steps:
                return r
    raise NoRelease(
        f"the live release of {broken.name} is broken and it has {len(seen)} earlier good"
        f" release(s); cannot go back {steps} step(s)"
    )


def _numeric(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (0, version)


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
    """``deliver`` hands the result over (the CLI prints it) *before* the intent is closed: a
    run killed before its caller saw the result is finished, not repeated, by a re-run.

    Raises:
        UsageError, UnknownModel: bad arguments or model name, no spec.
        BucketMissing, NoCredentials, UnversionedBucket: the bucket cannot take releases.
        NoRelease: nothing to roll back to (see ``pick_target``), or no release at all.
        DigestMismatch: the target's bytes or MLflow tag disagree with the release.
        VersionNotFound: the target's MLflow version is gone.
        ConcurrentUpdate: another release was written meanwhile; nothing released.
        OutcomeUnknown: the manifest write was sent and S3 could not be read back.
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
    if base.release is None:
        hint = orphaned_champion(tracking, model, store.bucket)
        raise NoRelease(
            hint or f"{model} has no release in s3://{store.bucket}; nothing to roll back"
        )
    reconcile(tracking, base.release, log)
    request = {"command": "rollback", "to": to, "to_version": to_version, "steps": steps}
    release, intent_open = _rollback(store, tracking, base, request, reason, log)
    if deliver is not None:
        deliver(release)
    if intent_open:
        intents.write(store, model, {"state": "done", "release": release})
    return release


def _rollback(
    store: ReleaseStore,
    tracking: Tracking,
    base: ManifestState,
    request: dict[str, Any],
    reason: str | None,
    log: Log,
) -> tuple[Release, bool]:
    """The release this rollback lands on, and whether an intent is open for it."""
    current = base.release
    assert current is not None
    model = current.name
    intent = intents.pending(store, model)
    if intent is not None and intent.get("request") == request:
        wanted: Release = intent["release"]
        if current == wanted:
            log(f"{model}: this rollback was already done by an interrupted run (release"
                f" {_release_id(wanted)})")  # fmt: skip
            return wanted, True
        if intent.get("base_release_id") == _release_id(current):
            log(f"{model}: resuming the interrupted rollback to version"
                f" {wanted.mlflow_version} (release {_release_id(wanted)})")  # fmt: skip
            return commit(store, tracking, wanted, base, log), True
        if any(e.release == wanted for e in history(store, model)):
            log(f"{model}: this rollback was already done by an interrupted run (release"
                f" {_release_id(wanted)}) and has since been replaced; nothing to do")  # fmt: skip
            return current, True

    broken = bundles.problem(store, current)
    past = history(store, model)
    to, to_version, steps = request["to"], request["to_version"], request["steps"]
    if broken:
        log(f"warning: the live release of {model} is broken: {broken}")
    if broken and not (to or to_version):
        target = last_good(store, current, past, steps)
    else:
        target = pick_target(current, past, to, steps, to_version)
    if target.same_target(current) and not broken:
        log(f"{model}: versionId {target.version_id} is already live; nothing to do")
        return current, False

    # Check the bytes and the registry before writing anything.
    store.read_verified(target.key, target.version_id, target.sha256)
    info = tracking.version(model, target.mlflow_version)
    if info.artifact_sha256 != target.sha256:
        raise DigestMismatch(
            f"{model} version {target.mlflow_version}: artifact_sha256 tag"
            f" {info.artifact_sha256} differs from the release's {target.sha256}"
        )
    failpoints.hit("checked")
    release = _rollback_release(current, target, reason, broken)
    intents.write(
        store,
        model,
        {
            "state": "pending",
            "request": request,
            "base_release_id": _release_id(current),
            "release": release,
            "created_at": release.released_at,
        },
    )
    failpoints.hit("intent-written")
    log(f"{model}: rolling back from version {current.mlflow_version} to {target.mlflow_version}"
        f" (versionId {target.version_id}, digest verified)")  # fmt: skip
    return commit(store, tracking, release, base, log), True


def _rollback_release(
    current: Release, target: Release, reason: str | None, broken: str | None
) -> Release:
    extra: dict[str, Any] = {"release_id": uuid.uuid4().hex}
    extra |= {k: v for k, v in target.extra.items() if k in ("approved_by",)}
    extra |= {
        "rolled_back_from": current.mlflow_version,
        "reason": reason or f"rollback from version {current.mlflow_version}",
    }
    extra |= {"repaired": broken} if broken else {}
    return Release(
        name=current.name,
        mlflow_version=target.mlflow_version,
        bucket=target.bucket,
        key=target.key,
        version_id=target.version_id,
        sha256=target.sha256,
        git_sha=target.git_sha,
        released_at=manifest.utc_now(),
        action="rollback",
        extra=extra,
        previous=current.as_previous(),
    )


def _release_id(release: Release | None) -> str:
    return str(release.extra.get("release_id", "")) if release else ""
