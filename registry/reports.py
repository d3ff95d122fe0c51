"""The commands that report what is released: ``current``, ``releases``, and ``reconcile``
(which writes only MLflow, to make it agree with release.json).

A broken live release is never hidden: a manifest that names missing bytes, or that cannot be
read at all, makes ``current`` and ``reconcile`` refuse (BrokenRelease, naming the repair) and
``releases`` print the history with the live row marked ``!``, then refuse the same way."""

from __future__ import annotations

import json

from registry import bundles, output, publish
from registry.commit import orphaned_champion, reconcile
from registry.errors import BrokenRelease, NoRelease
from registry.history import ManifestVersion, history
from registry.manifest import Release
from registry.output import DEPLOYED_HINT
from registry.publish import ManifestState
from registry.store import ReleaseStore
from registry.tracking import Tracking


def broken(model: str, problem: str) -> BrokenRelease:
    """The refusal for a broken live release, with its repairs."""
    return BrokenRelease(
        f"the live release of {model} is broken: {problem}; repair it with `promote` of an"
        f" approved version, `rollback` (to the last good release) or `rollback --to"
        f' <VersionId>` (registry/README.md, "Repairs")'
    )


def _live_problem(store: ReleaseStore, state: ManifestState) -> str | None:
    if state.problem:
        return f"release.json cannot be read: {state.problem}"
    return bundles.problem(store, state.release) if state.release else None


def current(model: str, verify: bool) -> Release:
    """The live release (``current``).

    Raises:
        NoRelease: there is none.
        BrokenRelease: it cannot be read, or names bytes that are missing or another digest's.
        DigestMismatch: with ``verify``, the bytes read back do not match.
        RegistryError: S3 failed (see ``store.translated``).
    """
    store = ReleaseStore.from_env()
    state = publish.current(store, model)
    problem = _live_problem(store, state)
    if problem:
        raise broken(model, problem)
    if state.release is None:
        raise NoRelease(f"{model} has no release in s3://{store.bucket}")
    if verify:
        store.read_verified(state.release.key, state.release.version_id, state.release.sha256)
    return state.release


def reconciled(model: str) -> Release:
    """Make MLflow agree with the live release (``reconcile``) and return that release.

    Raises:
        NoRelease: there is none (naming a champion MLflow still has, if any).
        BrokenRelease: release.json cannot be read: there is nothing to agree with.
        RegistryError: MLflow or S3 failed.
    """
    store, tracking = ReleaseStore.from_env(), Tracking()
    state = publish.current(store, model)
    if state.problem:
        raise broken(model, f"release.json cannot be read: {state.problem}")
    if state.release is None:
        orphan = orphaned_champion(tracking, model, store.bucket)
        raise NoRelease(orphan or f"{model} has no release; nothing to reconcile")
    if not reconcile(tracking, state.release, output.stderr, strict=True):
        output.stderr(f"{model}: MLflow already agrees with release.json")
    return state.release


def releases(model: str, as_json: bool) -> None:
    """Print the history (``releases``), even when the live release is broken; then refuse.

    Raises:
        BrokenRelease: the live release is broken (after the history was printed).
        RegistryError: S3 failed (see ``store.translated``).
    """
    store = ReleaseStore.from_env()
    state = publish.current(store, model)
    past = history(store, model)
    problem = _live_problem(store, state)
    unreadable = state.version_id if state.problem else None  # the live row history skipped
    if as_json:
        rows: list[dict[str, object]] = (
            [{"manifest_version_id": unreadable, "current": True, "broken": problem}]
            if unreadable
            else []
        )
        rows += [
            {"manifest_version_id": e.version_id, "current": e.is_latest}
            | ({"broken": problem} if e.is_latest and problem else {})
            | e.release.to_dict()
            for e in past
        ]
        output.stdout(json.dumps(rows))
    else:
        output.stdout(_table(past, bool(problem), unreadable) + "\n" + DEPLOYED_HINT)
    if problem:
        raise broken(model, problem)


def _table(past: list[ManifestVersion], broken: bool, unreadable: str | None) -> str:
    if not past and not unreadable:
        return "no releases"
    lines = [f"{'':1} {'released_at':20} {'action':8} {'mlflow':>6}  {'s3 versionId':36} sha256"]
    if unreadable:
        lines.append(f"! {'?':20} {'?':8} {'?':>6}  unreadable release.json (versionId"
                     f" {unreadable})")  # fmt: skip
    for e in past:
        r = e.release
        mark = ("!" if broken else "*") if e.is_latest else " "
        lines.append(f"{mark:1} {r.released_at:20} {r.action:8} {r.mlflow_version:>6}  "
                     f"{r.version_id:36} {r.sha256[:12]}")  # fmt: skip
    return "\n".join(lines)
