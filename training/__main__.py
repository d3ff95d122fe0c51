"""`python -m training [MODEL ...]`: train, evaluate and register models from their specs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from training import spec as specs
from training.data import DataError
from training.expectations import ValidationFailed

EXIT_OK, EXIT_USAGE, EXIT_DATA, EXIT_VALIDATION = 0, 2, 3, 4


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Validate each model's dataset, train, evaluate, bundle and register it "
        "in MLflow. Exit codes: 0 ok, 2 unknown model or bad spec, 3 unreadable or changed "
        "data, 4 data fails its expectations.",
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

    for spec in chosen:
        try:
            result = pipeline.run(spec, args.bundle_dir)
        except ValidationFailed as exc:
            print(f"error: {exc}\ntraining stopped: fix the data or its suite "
                  f"({spec.data.expectations.name})", file=sys.stderr)  # fmt: skip
            return EXIT_VALIDATION
        except DataError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_DATA
        if args.json:
            print(json.dumps(result.__dict__, sort_keys=True))
        else:
            flag = "" if result.candidate else "  (below its gates: not a candidate)"
            size = f"{result.bundle_bytes / 1024:.0f} KiB"
            print(f"{result.name}: registered version {result.version} ({size}, "
                  f"{result.seconds:.1f} s){flag}")  # fmt: skip
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
