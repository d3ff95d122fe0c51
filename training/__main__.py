"""`python -m training [MODEL ...]`: train, evaluate and register models from their specs."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from settings import REPO, tracking_uri
from training import openmp
from training import spec as specs
from training.data import DataError
from training.expectations import ValidationFailed

# The one table of exit codes: --help and the README's list are generated or checked from it.
EXIT_CODES = (
    (0, "ok"),
    (2, "unknown model or bad spec"),
    (3, "unreadable or changed data"),
    (4, "data fails its expectations"),
    (5, "the exported model does not answer as the trained one"),
    (6, "the MLflow tracking store failed"),
)
EXIT_OK, EXIT_USAGE, EXIT_DATA, EXIT_VALIDATION, EXIT_EXPORT, EXIT_REGISTRY = (
    code for code, _ in EXIT_CODES
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Validate each model's dataset, train, evaluate, bundle and register it "
        "in MLflow. Each model is trained even if another fails; the exit code is the first "
        "failure's: " + ", ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES) + ".",
    )
    parser.add_argument("models", nargs="*", help=f"models to train (default: all of "
                        f"{', '.join(specs.available())})")  # fmt: skip
    parser.add_argument("--spec", type=Path, action="append", default=[],
                        help="train from this spec file instead of a named model")  # fmt: skip
    parser.add_argument(
        "--bundle-dir", type=Path, help="also keep each bundle as DIR/<model>/model.joblib"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON lines")
    parser.add_argument("--dry-run", action="store_true",
                        help="log each run and its metrics to MLflow but register no version "
                        "(an experiment: no alias moves, nothing to promote)")  # fmt: skip
    args = parser.parse_args(argv)

    try:
        chosen = [specs.load_spec_file(p) for p in args.spec] + [
            specs.load_spec(name) for name in (args.models or ([] if args.spec else
                                                                specs.available()))
        ]  # fmt: skip
    except specs.SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    # Before the imports below load OpenMP, which reads its settings once (training/openmp.py).
    if openmp.choose().get("OMP_WAIT_POLICY") == "PASSIVE":
        print("the CPU is busy: XGBoost's threads sleep while they wait (OMP_WAIT_POLICY="
              "PASSIVE; set it, or GOMP_SPINCOUNT, to choose)", file=sys.stderr)  # fmt: skip
    from training import bundle, pipeline  # heavy imports only once the arguments are good

    for warning in provenance_warnings(bundle.git_sha(), chosen):
        print(warning, file=sys.stderr)
    exit_code = EXIT_OK
    for spec in chosen:
        code = _train(pipeline, spec, args)
        exit_code = exit_code or code
    return exit_code


def _train(pipeline: Any, spec: specs.ModelSpec, args: argparse.Namespace) -> int:
    """Train one model; a failure is one clear message and an exit code, not a traceback."""
    from inference.sanity import GoldenMismatch

    try:
        result = pipeline.run(spec, args.bundle_dir, dry_run=args.dry_run)
    except ValidationFailed as exc:
        fix = f"the data or its suite ({spec.data.expectations.name})"
        if exc.causes:  # a column read as text: the spec's [data] na_values may be the fix
            fix = f"the data, its suite ({spec.data.expectations.name}) or {spec.source.name}"
        return _fail(f"{exc}\ntraining of {spec.name} stopped: fix {fix}", EXIT_VALIDATION)
    except DataError as exc:
        return _fail(str(exc), EXIT_DATA)
    except specs.SpecError as exc:
        return _fail(f"{spec.name}: {exc}", EXIT_USAGE)
    except GoldenMismatch as exc:
        return _fail(f"{spec.name}: {exc}; the bundle was not registered", EXIT_EXPORT)
    except Exception as exc:
        if not type(exc).__module__.startswith("mlflow"):
            raise  # a bug, not a user mistake: keep the traceback
        return _fail(f"{spec.name}: MLflow at {tracking_uri()} failed: {exc}", EXIT_REGISTRY)
    if args.json:
        print(json.dumps(result.__dict__, sort_keys=True))
    else:
        print(summary(result))
    return EXIT_OK


def summary(result: Any) -> str:
    """The line a person reads per model: what was registered (or not), its bytes' SHA-256
    (what an approval pins), its size and time."""
    flag = "" if result.candidate else "  (below its gates: not a candidate)"
    if result.dry_run:
        what, flag = f"dry run logged as run {result.run_id}, no version registered", ""
    elif result.reused:
        what = f"version {result.version} reused (the same bytes: nothing logged)"
    else:
        what = f"registered version {result.version}"
    size = f"{result.bundle_bytes / 1024:.0f} KiB"
    return (f"{result.name}: {what}, sha256 {result.artifact_sha256} ({size}, "
            f"{result.seconds:.1f} s){flag}")  # fmt: skip


def provenance_warnings(commit: str, chosen: list[specs.ModelSpec]) -> list[str]:
    """Said before training, so there is still time to commit: a version records the commit
    it was built from, and a dirty tree or an uncommitted input makes that record untrue."""
    out = []
    if commit.endswith("-dirty"):
        out.append(f"WARNING: tracked files have uncommitted changes: every version trained now "
                   f"is recorded as git_sha {commit}, which no commit reproduces. Commit first "
                   f"(git status shows what differs), then train.")  # fmt: skip
    inputs = {p for s in chosen for p in (s.source, s.data.path, s.data.expectations)}
    missing = sorted(str(p.relative_to(REPO)) for p in inputs - _tracked(inputs))
    if missing and commit != "unknown":
        out.append(f"WARNING: not committed: {', '.join(missing)}. The version will record "
                   f"git_sha {commit}, which does not contain them: git add and commit them "
                   f"first, then train.")  # fmt: skip
    return out


def _tracked(paths: set[Path]) -> set[Path]:
    """The paths git tracks; files outside the checkout (``--spec /tmp/x.toml``) count as
    tracked, since git cannot vouch for them either way."""
    inside = [p for p in paths if p.resolve().is_relative_to(REPO)]
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--", *map(str, inside)], cwd=REPO,
                                capture_output=True, check=True).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return paths  # no git: git_sha() already says "unknown"
    known = {(REPO / name).resolve() for name in listed.decode().split("\0") if name}
    return {p for p in paths if p not in inside or p.resolve() in known}


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
