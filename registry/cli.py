"""Command line: ``python -m registry {promote,rollback,releases,current,reconcile} MODEL``,
``python -m registry models [MODEL]``.

stdout carries only results (one JSON object for promote/rollback/current); progress and the one
line explaining a refusal go to stderr. Exit codes are listed by ``--help`` and the README."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from registry import approvals, deadline, errors, outcome, output
from registry.deadline import DeadlineExceeded
from registry.errors import RegistryError
from registry.output import DEPLOYED_HINT

__all__ = ["DEPLOYED_HINT", "main"]  # the hint `releases` ends with, for infra's status tests

if TYPE_CHECKING:
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
        epilog="exit codes:\n" + EXIT_CODES + f"\n\nEvery command ends within {deadline.ENV}"
        f" seconds (default {deadline.DEFAULT_S:g}). See registry/README.md.",
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
        help="MLflow model version to go back to (its newest release that can serve)",
    )
    which.add_argument(
        "--steps",
        type=int,
        default=1,
        help="releases that can serve to go back (default 1); CI names its target instead",
    )
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
    from registry import reports
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
        release = reports.reconciled(args.model)
    elif args.command == "current":
        release = reports.current(args.model, verify=args.verify)
    else:
        reports.releases(args.model, args.json)
        return errors.OK
    _emit(release)
    return errors.OK


def _emit(release: Release) -> None:
    """The result on stdout, for CI. ``done`` is the last point a crash test can stop at."""
    from registry import failpoints, manifest

    failpoints.hit("done")
    output.stdout(manifest.one_line(release))
    outcome.current().printed = True


# Settling a manifest write in doubt may use this much of the deadline, a third at most.
SETTLE_RESERVE_S = 30.0
WRITES = ("promote", "rollback")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        seconds = deadline.seconds_from_env()
    except ValueError as exc:
        output.stderr(f"error: {exc}")
        return errors.UsageError.exit_code
    reserve = min(SETTLE_RESERVE_S, seconds / 3) if args.command in WRITES else 0.0
    code: int | None = None
    with outcome.recording(getattr(args, "model", None) or "") as record:
        try:
            with deadline.command(seconds, reserve):
                code = _run(args)
        except (Exception, KeyboardInterrupt, DeadlineExceeded) as exc:
            if code is None:  # else only the timer's teardown was hit: the command had ended
                return _failed(exc, record, args.command)
    return code


def _failed(exc: BaseException, record: outcome.Outcome, command: str) -> int:
    """The exit code and the one line for a command that did not return: it states what
    happened to production, from the record, whatever the exception (see registry/outcome.py)."""
    if record.shipped is not None:  # released: nothing after it makes the command fail
        output.stderr(f"warning: released; after that: {_describe(exc)}")
        if not record.printed:
            _emit(record.shipped)
        return errors.OK
    if record.writing:
        # commit() settles a write in doubt itself; this cut it short (an interrupt, a bug).
        output.stderr(f"error: {_describe(exc)} while the manifest write was on its way:"
                      " whether it was released is unknown; `python -m registry current"
                      f" {record.model}` says (re-running the command finishes or confirms"
                      " it)")  # fmt: skip
        interrupted = isinstance(exc, KeyboardInterrupt)
        return (errors.Interrupted if interrupted else errors.OutcomeUnknown).exit_code
    nothing = "; nothing was released" if command in WRITES else ""
    if isinstance(exc, KeyboardInterrupt):
        output.stderr(f"error: interrupted{nothing} (release.json says what is live; re-run"
                      " to finish)")  # fmt: skip
        return errors.Interrupted.exit_code
    if isinstance(exc, DeadlineExceeded):
        output.stderr(f"error: {_describe(exc)}{nothing}")
        return errors.StorageError.exit_code
    if isinstance(exc, RegistryError):
        output.stderr(f"error: {exc}")
        return exc.exit_code
    if _is_transport_error(exc):  # a path that missed its translation: still a storage error
        output.stderr(f"error: storage unreachable: {type(exc).__name__}: {exc}{nothing}")
        return errors.StorageError.exit_code
    output.stderr(f"error: unexpected {type(exc).__name__}: {exc}")  # one line, no traceback
    return 1


def _describe(exc: BaseException) -> str:
    if isinstance(exc, DeadlineExceeded):
        doing = f" while trying to {exc.doing}" if exc.doing else ""
        return f"the {exc.seconds:g} s deadline ({deadline.ENV}) passed{doing}"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return str(exc) if isinstance(exc, RegistryError) else f"{type(exc).__name__}: {exc}"


def _is_transport_error(exc: BaseException) -> bool:
    from registry.store import transport_errors  # the one list of what a dead endpoint raises

    return isinstance(exc, transport_errors())
