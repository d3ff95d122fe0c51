"""Command line: ``python -m registry {promote,rollback,releases,current,reconcile} MODEL``,
``python -m registry models [MODEL]``.

stdout carries only results (one JSON object for promote/rollback/current); progress and the one
line explaining a refusal go to stderr. Exit codes are listed by ``--help`` and the README."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from registry import approvals, errors
from registry.errors import RegistryError

if TYPE_CHECKING:
    from registry.history import ManifestVersion
    from registry.manifest import Release

EXIT_CODES = "\n".join(
    [f"  {errors.OK:>3}  success"]
    + [f"  {e.exit_code:>3}  {e.__name__}" for e in errors.ALL]
    + ["    1  unexpected internal error"]
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m registry",
        description="Promote approved MLflow model versions to a versioned S3 bucket, roll back,"
        " and list releases. Needs MODEL_BUCKET; AWS_ENDPOINT_URL_S3 selects a local S3.",
        epilog="exit codes:\n" + EXIT_CODES + "\n\nSee registry/README.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("promote", help="release the approved version of MODEL")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--approvals", type=Path, default=approvals.DEFAULT_PATH,
                   help="approval file (default: registry/approved.toml)")  # fmt: skip
    p.add_argument("--force", action="store_true",
                   help="release even if worse than the champion (needs --reason)")  # fmt: skip
    p.add_argument("--reason", help="why --force was needed; recorded in the release")

    r = sub.add_parser("rollback", help="re-point MODEL's release at an earlier one")
    r.add_argument("model", metavar="MODEL")
    which = r.add_mutually_exclusive_group()
    which.add_argument(
        "--to",
        metavar="VERSION_ID",
        help="S3 VersionId of the bundle to go back to (refused if several MLflow versions"
        " share it: use --to-version)",
    )
    which.add_argument(
        "--to-version",
        metavar="MLFLOW_VERSION",
        help="MLflow model version to go back to (its newest release)",
    )
    which.add_argument("--steps", type=int, default=1, help="promotions to go back (default 1)")
    r.add_argument("--reason", help="recorded in the release")

    h = sub.add_parser("releases", help="release history of MODEL, newest first")
    h.add_argument("model", metavar="MODEL")
    h.add_argument("--json", action="store_true", help="one JSON array instead of a table")

    c = sub.add_parser("current", help="print MODEL's live release.json (one JSON object)")
    c.add_argument("model", metavar="MODEL")
    c.add_argument("--verify", action="store_true", help="also read back and check the bundle")

    k = sub.add_parser(
        "reconcile", help="make MLflow's champion and release tags agree with release.json"
    )
    k.add_argument("model", metavar="MODEL")

    m = sub.add_parser(
        "models", help="every registered version: aliases, metrics, lineage, live S3 VersionId"
    )
    m.add_argument("model", metavar="MODEL", nargs="?", help="one model (default: all)")
    m.add_argument("--json", action="store_true", help="one JSON array instead of tables")
    return parser


def _run(args: argparse.Namespace) -> int:
    # Imported here so that --help and argument errors stay instant.
    from registry.promote import spec_for

    if args.command == "models":  # MODEL is optional, and may be registered without a spec
        from registry import listing

        return listing.main(args.model, args.json)
    spec_for(args.model)
    if args.command == "promote":
        from registry.promote import promote

        release = promote(args.model, args.approvals, args.force, args.reason)
    elif args.command == "rollback":
        from registry.rollback import rollback

        rollback(
            args.model,
            to=args.to,
            steps=args.steps,
            reason=args.reason,
            to_version=args.to_version,
            deliver=_emit,  # printed before its intent closes: see registry/rollback.py
        )
        return errors.OK
    elif args.command == "reconcile":
        from registry import publish
        from registry.commit import orphaned_champion, reconcile
        from registry.errors import NoRelease
        from registry.output import stderr
        from registry.store import ReleaseStore
        from registry.tracking import Tracking

        store, tracking = ReleaseStore.from_env(), Tracking()
        live = publish.current(store, args.model).release
        if live is None:
            orphan = orphaned_champion(tracking, args.model, store.bucket)
            raise NoRelease(orphan or f"{args.model} has no release; nothing to reconcile")
        if not reconcile(tracking, live, stderr, strict=True):
            stderr(f"{args.model}: MLflow already agrees with release.json")
        release = live
    elif args.command == "current":
        release = _live(args.model, verify=args.verify)
    else:
        return _releases(args.model, args.json)
    _emit(release)
    return errors.OK


def _emit(release: Release) -> None:
    """The result on stdout, for CI. ``done`` is the last point a crash test can stop at."""
    from registry import failpoints, manifest

    failpoints.hit("done")
    print(manifest.one_line(release), flush=True)


def _live(model: str, verify: bool) -> Release:
    """The live release, refused (BrokenRelease) when the bytes it names are not there."""
    from registry import bundles, publish
    from registry.errors import NoRelease
    from registry.store import ReleaseStore

    store = ReleaseStore.from_env()
    live = publish.current(store, model).release
    if live is None:
        raise NoRelease(f"{model} has no release in s3://{store.bucket}")
    problem = bundles.problem(store, live)
    if problem:
        raise errors.BrokenRelease(_broken(model, problem))
    if verify:
        store.read_verified(live.key, live.version_id, live.sha256)
    return live


def _broken(model: str, problem: str) -> str:
    return (
        f"the live release of {model} is broken: {problem}; repair it with `promote` of an"
        f" approved version or `rollback` (to the last good release)"
    )


def _releases(model: str, as_json: bool) -> int:
    """The history, printed even when the live release is broken; then that is flagged."""
    from registry import bundles
    from registry.history import history as read_history
    from registry.store import ReleaseStore

    store = ReleaseStore.from_env()
    history = read_history(store, model)
    live = next((e.release for e in history if e.is_latest), None)
    problem = bundles.problem(store, live) if live else None
    if as_json:
        rows = [
            {"manifest_version_id": e.version_id, "current": e.is_latest}
            | ({"broken": problem} if e.is_latest and problem else {})
            | e.release.to_dict()
            for e in history
        ]
        print(json.dumps(rows))
    else:
        _table(history, broken=bool(problem))
        print(DEPLOYED_HINT)
    if problem:
        raise errors.BrokenRelease(_broken(model, problem))
    return errors.OK


# release.json says what is released; a CodeDeploy rollback leaves it naming the new model.
DEPLOYED_HINT = (
    "what each environment's live alias serves: "
    "PYTHONPATH=infra python -m waterml_infra.ci.status --env ENV"
)


def _table(history: list[ManifestVersion], broken: bool = False) -> None:
    if not history:
        print("no releases")
        return
    print(f"{'':1} {'released_at':20} {'action':8} {'mlflow':>6}  {'s3 versionId':36} sha256")
    for e in history:
        r = e.release
        mark = ("!" if broken else "*") if e.is_latest else " "
        print(f"{mark:1} {r.released_at:20} {r.action:8} {r.mlflow_version:>6}  "
              f"{r.version_id:36} {r.sha256[:12]}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except RegistryError as exc:
        print(f"registry: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("registry: error: interrupted; release.json says what is live (re-run to finish)",
              file=sys.stderr)  # fmt: skip
        return errors.Interrupted.exit_code
    except Exception as exc:  # the contract: one line, never a traceback
        if _is_transport_error(exc):  # a path that missed its translation: still a storage error
            print(f"registry: error: storage unreachable: {type(exc).__name__}: {exc}",
                  file=sys.stderr)  # fmt: skip
            return errors.StorageError.exit_code
        print(f"registry: error: unexpected {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def _is_transport_error(exc: BaseException) -> bool:
    from registry.store import transport_errors  # the one list of what a dead endpoint raises

    return isinstance(exc, transport_errors())
