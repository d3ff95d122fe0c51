"""Helpers for promote.yml: which models the approval file names, and the release each
promotion printed.

    python -m waterml_infra.promotion models registry/approved.toml      # JSON list of names
    python -m waterml_infra.promotion extract promote.log release.json   # validated manifest

The registry CLI prints the release manifest as JSON on stdout; `extract` finds the last JSON
object in that output (anything logged before it is ignored), validates it like a deploy would
and writes it canonically.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from registry import approvals
from registry.errors import RegistryError
from registry.manifest import ManifestError, Release, parse_release


def approved_models(text: str) -> list[str]:
    """Model names in the approval file, read by the registry's own parser: a file the
    registry would refuse is refused here too, before any promotion starts."""
    return sorted(approvals.parse(text))


def last_release_object(output: str) -> dict[str, Any]:
    """The last JSON object with a `version_id` in a promotion's stdout."""
    decoder = json.JSONDecoder()
    found: dict[str, Any] | None = None
    for start in (m.start() for m in re.finditer(r"\{", output)):
        try:
            obj, _ = decoder.raw_decode(output, start)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and "version_id" in obj:
            found = obj
    if found is None:
        raise ManifestError("the promotion printed no release manifest")
    return found


def extract_release(output: str) -> tuple[Release, dict[str, Any]]:
    """The release a promotion printed: validated, plus every field the registry wrote."""
    raw = last_release_object(output)
    return parse_release(raw, complete=False), raw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    models = sub.add_parser("models", help="print the approved model names as a JSON list")
    models.add_argument("approval_file", type=Path)
    extract = sub.add_parser("extract", help="validate the release printed by a promotion")
    extract.add_argument("log", type=Path)
    extract.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "models":
            print(json.dumps(approved_models(args.approval_file.read_text())))
            return 0
        release, raw = extract_release(args.log.read_text())
    except (ValueError, OSError, RegistryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    args.out.write_text(json.dumps(raw, indent=2, sort_keys=True) + "\n")
    print(f"release {release.name} -> {release.key}?versionId={release.version_id}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
