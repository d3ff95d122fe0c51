"""Which earlier release a rollback lands on.

``--to`` and ``--to-version`` name it; ``--steps N`` walks back N releases from the live one.
The walk counts only releases that can serve: an entry whose bytes are gone or carry another
digest (a hand edit that a later promotion repaired, say) is skipped and named, and so is an
entry that is the live release again; the walk never lands on a no-op or on broken bytes."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from registry.errors import NoRelease, UsageError
from registry.history import ManifestVersion
from registry.manifest import Release

Problem = Callable[[Release], str | None]  # why a release cannot serve, or None
Log = Callable[[str], None]


def _servable(_: Release) -> str | None:
    return None


def _quiet(_: str) -> None:
    pass


def pick_target(
    current: Release | None,
    past: list[ManifestVersion],
    to: str | None,
    steps: int,
    to_version: str | None = None,
    *,
    broken: bool = False,
    problem: Problem = _servable,
    log: Log = _quiet,
) -> Release:
    """``--to``: the release with that bundle VersionId (refused when releases of several MLflow
    versions share it: identical bytes are reused). ``--to-version``: the newest release of that
    MLflow version that can serve. ``--steps N``: walk back N releases that can serve.

    Walking back from a healthy live release follows the promotions, from the one now live, so
    repeated rollbacks keep going back instead of bouncing. From a ``broken`` live release (or
    none readable, ``current`` None) every earlier entry counts: the newest one that can serve
    is the last good release, step 1.

    Raises:
        UsageError: both ``to`` and ``to_version``, or a VersionId shared by several MLflow
            versions.
        NoRelease: no such release, or not that many earlier releases that can serve.
    """
    name = current.name if current else past[0].release.name if past else "the model"
    if to is not None and to_version is not None:
        raise UsageError("--to and --to-version are mutually exclusive")
    if to_version is not None:
        matches = [e.release for e in past if e.release.mlflow_version == to_version]
        if not matches:
            raise NoRelease(f"no release of {name} is MLflow version {to_version}; see `releases`")
        return _first_servable(matches, problem, log, f"MLflow version {to_version}")
    if to is not None:
        matches = [e.release for e in past if e.release.version_id == to]
        if not matches:
            raise NoRelease(f"no release of {name} has versionId {to}; see `releases`")
        mlflow_versions = sorted({r.mlflow_version for r in matches}, key=_numeric)
        if len(mlflow_versions) > 1:
            raise UsageError(
                f"versionId {to} holds the bytes of {name} MLflow versions"
                f" {', '.join(mlflow_versions)}; say which with --to-version"
                f" {' or --to-version '.join(mlflow_versions)}"
            )
        return _first_servable(matches, problem, log, f"versionId {to}")
    return walk(current, _candidates(current, past, broken), steps, problem, log)


def _candidates(
    current: Release | None, past: list[ManifestVersion], broken: bool
) -> list[Release]:
    if broken or current is None:
        return [e.release for e in past]
    promotions = [e.release for e in past if e.release.action == "promote"]
    live = next((i for i, r in enumerate(promotions) if r.same_target(current)), None)
    if live is None:
        raise NoRelease(f"the live release of {current.name} is not in its promotion history")
    return promotions[live + 1 :]


def walk(
    current: Release | None,
    candidates: Iterable[Release],
    steps: int,
    problem: Problem = _servable,
    log: Log = _quiet,
) -> Release:
    """The ``steps``-th of ``candidates`` (newest first) that can serve, counting each release
    once and never the live one.

    Raises:
        NoRelease: fewer than ``steps`` of them can serve.
    """
    counted: list[Release] = []
    for r in candidates:
        if (current is not None and r.same_target(current)) or any(
            r.same_target(c) for c in counted
        ):
            continue  # the same bytes and version again: going there is not a step
        why = problem(r)
        if why:
            log(f"skipping the release of version {r.mlflow_version} from {r.released_at}"
                f" (versionId {r.version_id}): it cannot serve: {why}")  # fmt: skip
            continue
        counted.append(r)
        if len(counted) == steps:
            return r
    name = current.name if current else "the model"
    raise NoRelease(
        f"{name} has {len(counted)} earlier release(s) that can serve; cannot go back"
        f" {steps} step(s)"
    )


def _first_servable(matches: list[Release], problem: Problem, log: Log, what: str) -> Release:
    for r in matches:
        why = problem(r)
        if not why:
            return r
        log(f"skipping the release from {r.released_at} of {what}: it cannot serve: {why}")
    raise NoRelease(f"no release of {what} can serve (see the lines above)")


def _numeric(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (0, version)
