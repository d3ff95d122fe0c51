"""release.json as the serving side reads it: the digest check and the pins it names.

The manifest contract (strict parsing, writing, history) is ``registry.manifest``, which the
image does not carry. Two pieces of it are needed in the image too, by the pre-traffic hook
(``inference/pretraffic.py``), so they live here and the registry imports them: the check that
a stored manifest's bytes match the SHA-256 stored beside them (every reader refuses a damaged
or hand-edited manifest the same way), and which release field pins which ``MODEL_*`` variable
of a function (inference/config.py reads them).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from inference.bundle import sha256_hex

# The S3 user-metadata key holding the SHA-256 of release.json's own bytes.
DIGEST_METADATA = "sha256"
# release field -> the function's environment variable that pins it. MODEL_VERSION (the
# MLflow version) is set only when the release knows it.
PINS = (
    ("bucket", "MODEL_BUCKET"),
    ("key", "MODEL_KEY"),
    ("version_id", "MODEL_VERSION_ID"),
    ("sha256", "MODEL_SHA256"),
    ("mlflow_version", "MODEL_VERSION"),
)


class ReleaseError(ValueError):
    """release.json cannot be trusted or read; the message says why."""


def digest_problem(body: bytes, metadata: Mapping[str, str] | None, where: str) -> str | None:
    """Why ``body`` (release.json as read from S3) does not match the ``sha256`` user metadata
    it was written with, or None when it does."""
    stored = (metadata or {}).get(DIGEST_METADATA)
    if not stored:
        return f"{where} has no {DIGEST_METADATA} metadata"
    actual = sha256_hex(body)
    if actual != stored.strip().lower():
        return (
            f"SHA-256 mismatch for {where}: its {DIGEST_METADATA} metadata says {stored},"
            f" its bytes hash to {actual}"
        )
    return None


def read_verified(body: bytes, metadata: Mapping[str, str] | None, where: str) -> dict[str, Any]:
    """The manifest's fields once its digest matched. Only the JSON shape is checked here:
    callers compare the fields they use against what they expect.

    Raises:
        ReleaseError: the bytes do not match their stored digest, or are not a JSON object.
    """
    problem = digest_problem(body, metadata, where)
    if problem:
        raise ReleaseError(problem)
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise ReleaseError(f"{where} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ReleaseError(f"{where} is not a JSON object")
    return data


def pins(release: Mapping[str, Any]) -> dict[str, str]:
    """The ``MODEL_*`` environment a function serving ``release`` carries."""
    env = {variable: str(release.get(field) or "") for field, variable in PINS}
    if not env["MODEL_VERSION"]:
        del env["MODEL_VERSION"]
    return env


def pin_differences(release: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    """Every ``MODEL_*`` pin of a function's environment that is not what ``release`` names
    (an absent variable counts as empty), as ``"MODEL_X: released A, pinned B"``."""
    wanted = pins(release)
    return [
        f"{variable}: released {wanted.get(variable, '')!r}, pinned {env.get(variable, '')!r}"
        for _, variable in PINS
        if wanted.get(variable, "") != env.get(variable, "")
    ]
