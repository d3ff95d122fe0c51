"""Helpers for promote.yml: which models the approval file names, and the release each
promotion printed.

    python -m waterml_infra.ci.promotion models registry/approved.toml      # JSON list of names
    python -m waterml_infra.ci.promotion extract promote.log release.json   # validated manifest
    python -m waterml_infra.ci.promotion promoted releases/                 # JSON list of names

The registry CLI prints the release manifest as JSON on stdout; `extract` finds the last JSON
object in that output (anything logged before it is ignored), validates it like a deploy would
and writes it canonically. `promoted` names the models whose release changed: for each
`releases/<model>.json` (written by `extract`), `releases/<model>.before.log` holds what
`python -m registry current <model>` printed before the promotion (nothing: no release yet).
An approved model that was already the release is not promoted again, so it is not deployed.
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


def newly_released(before_output: str, after: dict[str, Any]) -> bool:
    """True when the promotion wrote a new release: what `registry current` printed before
    it (empty: there was none) is not the release it printed."""
    if not before_output.strip():
        return True
    return last_release_object(before_output) != after


def promoted_models(folder: Path) -> list[str]:
    """Models whose `<model>.json` differs from the release in `<model>.before.log`."""
    names = []
    for path in sorted(folder.glob("*.json")):
        before = folder / f"{path.stem}.before.log"
        if not before.is_file():
            raise ManifestError(f"{before} is missing: was the release read before promoting?")
        after = json.loads(path.read_text())
        name = parse_release(after, complete=False).name
        if name != path.stem:
            raise ManifestError(f"{path} is a release of {name!r}")
        if newly_released(before.read_text(), after):
            names.append(name)
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    models = sub.add_parser("models", help="print the approved model names as a JSON list")
    models.add_argument("approval_file", type=Path)
    extract = sub.add_parser("extract", help="validate the release printed by a promotion")
    extract.add_argument("log", type=Path)
    extract.add_argument("out", type=Path)
    promoted = sub.add_parser("promoted", help="print the models whose release changed (JSON)")
    promoted.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "models":
            print(json.dumps(approved_models(args.approval_file.read_text())))
            return 0
        if args.command == "promoted":
            print(json.dumps(promoted_models(args.folder), separators=(",", ":")))
            return 0
        release, raw = extract_release(args.log.read_text())
    except (ValueError, OSError, RegistryError) as exc:  # JSONDecodeError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 1
    args.out.write_text(json.dumps(raw, indent=2, sort_keys=True) + "\n")
    print(f"release {release.name} -> {release.key}?versionId={release.version_id}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
