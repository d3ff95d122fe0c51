"""The approval file: which MLflow version of each model may go to production, who said so, why.

Merging a PR that changes ``registry/approved.toml`` is the approval; CI then runs ``promote``."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from registry.errors import NotApproved

DEFAULT_PATH = Path(__file__).resolve().parent / "approved.toml"
REQUIRED = ("version", "sha256", "approved_by", "reason")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


@dataclass(frozen=True)
class Approval:
    model: str
    version: str
    approved_by: str
    reason: str
    sha256: str  # the bundle's SHA-256 the reviewer approved (the version's artifact_sha256)


def load(path: Path = DEFAULT_PATH) -> dict[str, Approval]:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise NotApproved(f"approval file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise NotApproved(f"approval file {path} is unreadable: {exc}") from exc
    out = {}
    for model, entry in raw.items():
        if not isinstance(entry, dict):
            raise NotApproved(f"{path.name}: [{model}] must be a table")
        missing = [k for k in REQUIRED if not entry.get(k)]
        if missing:
            raise NotApproved(
                f"{path.name}: [{model}] is not approved properly: it lacks {', '.join(missing)}"
                + (
                    " (copy the version's artifact_sha256 tag, printed by `make train`)"
                    if "sha256" in missing
                    else ""
                )
            )
        version = entry["version"]
        # TOML lets people write version = 3; MLflow versions are strings.
        if isinstance(version, bool) or not isinstance(version, str | int):
            raise NotApproved(f'{path.name}: [{model}] version must be a string like "3"')
        sha256 = entry["sha256"]
        if not isinstance(sha256, str) or not _SHA256.match(sha256):
            raise NotApproved(f"{path.name}: [{model}] sha256 must be 64 hex digits")
        out[model] = Approval(
            model, str(version), str(entry["approved_by"]), str(entry["reason"]), sha256.lower()
        )
    return out


def approved(model: str, path: Path = DEFAULT_PATH) -> Approval:
    approvals = load(path)
    if model not in approvals:
        raise NotApproved(
            f"{model!r} has no approved version in {path.name}: add a [{model}] table with"
            " version, sha256, approved_by and reason, and merge it"
        )
    return approvals[model]
