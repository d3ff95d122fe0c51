"""`python -m training [MODEL ...]`: train, evaluate and register models from their specs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from training import spec as specs
from training.config import tracking_uri
from training.data import DataError
from training.expectations import ValidationFailed

EXIT_OK, EXIT_USAGE, EXIT_DATA, EXIT_VALIDATION, EXIT_EXPORT, EXIT_REGISTRY = 0, 2, 3, 4, 5, 6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Validate each model's dataset, train, evaluate, bundle and register it "
        "in MLflow. Each model is trained even if another fails; the exit code is the first "
        "failure's: 0 ok, 2 unknown model or bad spec, 3 unreadable or changed data, 4 data "
        "fails its expectations, 5 the exported model does not answer as the trained one, "
        "6 the MLflow tracking store failed.",
    )
    parser.add_argument("models", nargs="*", help=f"models to train (default: all of "
                        f"{', '.join(specs.available())})")  # fmt: skip
    parser.add_argument("--spec", type=Path, action="append", default=[],
                        help="train from this spec file instead of a named model")  # fmt: skip
    parser.add_argument(
        "--bundle-dir", type=Path, help="also keep each bundle as DIR/<model>/model.joblib"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON lines")
    args = parser.parse_args(argv)

    try:
        chosen = [specs.load_spec_file(p) for p in args.spec] + [
            specs.load_spec(name) for name in (args.models or ([] if args.spec else
                                                                specs.available()))
        ]  # fmt: skip
    except specs.SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    from training import pipeline  # heavy imports only once the arguments are good

    exit_code = EXIT_OK
    for spec in chosen:
        code = _train(pipeline, spec, args)
        exit_code = exit_code or code
    return exit_code


def _train(pipeline: Any, spec: specs.ModelSpec, args: argparse.Namespace) -> int:
    """Train one model; a failure is one clear message and an exit code, not a traceback."""
    from inference.sanity import GoldenMismatch

    try:
        result = pipeline.run(spec, args.bundle_dir)
    except ValidationFailed as exc:
        return _fail(f"{exc}\ntraining of {spec.name} stopped: fix the data or its suite "
                     f"({spec.data.expectations.name})", EXIT_VALIDATION)  # fmt: skip
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
        flag = "" if result.candidate else "  (below its gates: not a candidate)"
        size = f"{result.bundle_bytes / 1024:.0f} KiB"
        print(f"{result.name}: registered version {result.version}, sha256 "
              f"{result.artifact_sha256} ({size}, {result.seconds:.1f} s){flag}")  # fmt: skip
    return EXIT_OK


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
