"""The approval file: which MLflow version of each model may go to production, who said so, why.

Merging a PR that changes ``registry/approved.toml`` is the approval; CI then runs ``promote``."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from inference.bundle import is_model_name, model_name_problem, normalize_sha256
from registry.errors import NotApproved
from settings import APPROVALS_FILE

DEFAULT_PATH = APPROVALS_FILE
REQUIRED = ("version", "sha256", "approved_by", "reason")


@dataclass(frozen=True)
class Approval:
    model: str
    version: str
    approved_by: str
    reason: str
    sha256: str  # the bundle's SHA-256 the reviewer approved (the version's artifact_sha256)


def load(path: Path = DEFAULT_PATH) -> dict[str, Approval]:
    """Every approval in the file at ``path``, by model name.

    Raises:
        NotApproved: the file is missing, unreadable or malformed (see ``parse``).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise NotApproved(f"approval file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise NotApproved(f"approval file {path} is unreadable: {exc}") from exc
    return parse(text, path.name)


def parse(text: str, where: str = DEFAULT_PATH.name) -> dict[str, Approval]:
    """The one parser of the approval format (the registry and promote.yml's helper use it):
    one top-level ``[<model>]`` table per approved model.

    Raises:
        NotApproved: the text is not TOML, a table is named for an invalid model name, or an
            entry lacks a field or has a malformed version or sha256.
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise NotApproved(f"approval file {where} is unreadable: {exc}") from exc
    out = {}
    for model, entry in raw.items():
        if not is_model_name(model):
            raise NotApproved(f"{where}: [{model}]: {model_name_problem(model)}")
        if not isinstance(entry, dict):
            raise NotApproved(f"{where}: [{model}] must be a table")
        missing = [k for k in REQUIRED if not entry.get(k)]
        if missing:
            raise NotApproved(
                f"{where}: [{model}] is not approved properly: it lacks {', '.join(missing)}"
                + (
                    " (copy the version's artifact_sha256 tag, printed by `make train`)"
                    if "sha256" in missing
                    else ""
                )
            )
        version = entry["version"]
        # TOML lets people write version = 3; MLflow versions are strings.
        if isinstance(version, bool) or not isinstance(version, str | int):
            raise NotApproved(f'{where}: [{model}] version must be a string like "3"')
        sha256 = normalize_sha256(entry["sha256"])
        if sha256 is None:
            raise NotApproved(f"{where}: [{model}] sha256 must be 64 hex digits")
        out[model] = Approval(
            model, str(version), str(entry["approved_by"]), str(entry["reason"]), sha256
        )
    return out


def approved(model: str, path: Path = DEFAULT_PATH) -> Approval:
    """The approval of ``model``.

    Raises:
        NotApproved: the file has no entry for it, or cannot be read (see ``load``).
    """
    approvals = load(path)
    if model not in approvals:
        raise NotApproved(
            f"{model!r} has no approved version in {path.name}: add a [{model}] table with"
            " version, sha256, approved_by and reason, and merge it"
        )
    return approvals[model]
