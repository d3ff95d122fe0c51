"""Load-time checks: a bundle serves only if this runtime answers exactly as training recorded.

1. Runtime versions: the bundle records the Python, numpy and onnxruntime it was exported and
   checked with; serving needs the same major.minor of each (a patch release may differ).
2. Golden samples: the bundle's recorded inputs go through this predictor; every raw output
   must match what the trained model gave within the bundle's own rtol/atol, and the answers
   built from them must agree (labels exactly, numbers to the answer's rounding).
Any warning raised while loading counts as a failure (the class of scikit-learn's
InconsistentVersionWarning): ``strict_warnings`` turns them into errors.
"""

from __future__ import annotations

import contextlib
import platform
import warnings
from collections.abc import Iterator
from importlib import metadata
from typing import Any

import numpy as np

from inference.bundle import BundleError

ANSWER_ATOL = 0.011  # answers are rounded to 2-4 decimals; one rounding step apart is equal


class SanityError(BundleError):
    """The bundle loaded but must not serve; the message says why."""


@contextlib.contextmanager
def strict_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def installed_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for dist in ("numpy", "onnxruntime"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "missing"
    return versions


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def check_runtime(bundle: dict[str, Any], installed: dict[str, str] | None = None) -> None:
    recorded = bundle.get("metadata", {}).get("runtime")
    if not isinstance(recorded, dict) or not recorded:
        raise SanityError("bundle metadata records no runtime versions; refusing to guess")
    installed = installed or installed_versions()
    problems = [
        f"{name} {want} recorded, {installed.get(name, 'missing')} installed"
        for name, want in sorted(recorded.items())
        if name in ("python", "numpy", "onnxruntime")
        and _major_minor(str(want)) != _major_minor(installed.get(name, "missing"))
    ]
    if problems:
        raise SanityError("runtime version mismatch: " + "; ".join(problems))


def _answers_agree(got: dict[str, Any], want: dict[str, Any]) -> bool:
    if got.keys() != want.keys():
        return False
    for key, value in want.items():
        other = got[key]
        if isinstance(value, (bool, str)) or value is None:
            if other != value:
                return False
        elif abs(float(other) - float(value)) > ANSWER_ATOL + 1e-6 * abs(float(value)):
            return False
    return True


def check_golden(bundle: dict[str, Any], predictor: Any) -> None:
    golden = bundle.get("golden") or {}
    inputs = golden.get("inputs") or []
    if not inputs:
        raise SanityError("bundle has no golden samples; refusing to serve an unchecked model")
    rtol, atol = float(golden.get("rtol", 1e-4)), float(golden.get("atol", 1e-3))
    features = np.asarray(inputs, dtype=np.float32)
    raw = predictor.raw(features)
    for name, expected in (golden.get("raw") or {}).items():
        if name not in raw:
            raise SanityError(f"golden output {name!r} is not produced by the predictor")
        want = np.asarray(expected, dtype=np.float64)
        got = raw[name].astype(np.float64)
        if got.shape != want.shape or not np.allclose(got, want, rtol=rtol, atol=atol):
            worst = int(np.argmax(np.abs(got - want))) if got.shape == want.shape else -1
            detail = (
                f"row {worst}: got {got[worst]:.6g}, recorded {want[worst]:.6g}"
                if worst >= 0
                else f"shape {got.shape} vs {want.shape}"
            )
            raise SanityError(
                f"golden check failed for {name!r} (rtol={rtol}, atol={atol}): {detail}"
            )
    if not golden.get("raw"):
        raise SanityError("bundle golden samples record no raw outputs")
    expected_answers = golden.get("answers")
    if expected_answers:
        got_answers = predictor.output.answers(raw)
        for i, (got, want) in enumerate(zip(got_answers, expected_answers, strict=False)):
            if not _answers_agree(got, want):
                raise SanityError(f"golden answer {i} differs: got {got}, recorded {want}")


def check(bundle: dict[str, Any], predictor: Any) -> None:
    """Both checks; raises SanityError with the reason. Call inside ``strict_warnings``."""
    check_runtime(bundle)
    check_golden(bundle, predictor)
