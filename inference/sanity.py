"""Load-time checks: a bundle serves only if this runtime answers exactly as training recorded.

1. Runtime versions: the bundle must record the Python, numpy and onnxruntime it was exported
   and checked with (a bundle missing any is refused); serving needs the same major.minor of
   each (a patch release may differ).
2. Golden samples: the bundle's recorded inputs go through this predictor; every raw output
   must match what the trained model gave within the bundle's own rtol/atol, and the answers
   built from them must agree (labels exactly, numbers to the answer's rounding), one answer
   per input. ``check_golden`` is public: training runs the same check before it writes.
   A bundle with calendar features also records its golden inputs as records (readings and
   the ISO-8601 ``timestamp``, one without): validation must build exactly the recorded rows
   from them, alone and as a batch, so serving derives those features as training did.
Any warning raised while loading counts as a failure (the class of scikit-learn's
InconsistentVersionWarning): ``strict_warnings`` turns them into errors.
"""

from __future__ import annotations

import contextlib
import math
import platform
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import onnxruntime as ort

from inference.bundle import BundleError
from inference.predictor import Predictor
from inference.validation import ValidationError, Validator

ANSWER_ATOL = 0.011  # answers are rounded to 2-4 decimals; one rounding step apart is equal


# What unpickling and predicting need: every bundle records their versions (training reads
# this list), and serving checks them at load. Distribution names, the same as the modules'.
_SERVING_MODULES = {"numpy": np, "onnxruntime": ort}
SERVING_LIBRARIES = tuple(_SERVING_MODULES)
RUNTIME = ("python", *SERVING_LIBRARIES)
# Golden samples compare float32 tree sums that may be added in another order.
GOLDEN_RTOL, GOLDEN_ATOL = 1e-4, 1e-3


class SanityError(BundleError):
    """The bundle loaded but must not serve; the message says why."""


class GoldenMismatch(SanityError):
    """The predictor does not answer the golden inputs as recorded.

    ``output`` names the raw output (``"margin"``) or answer field (``"answers[1].quality"``)
    that differs, ``worst`` the largest absolute difference (NaN for a label or a shape)."""

    def __init__(self, message: str, output: str, worst: float) -> None:
        super().__init__(message)
        self.output, self.worst = output, worst


@contextlib.contextmanager
def strict_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def installed_versions() -> dict[str, str]:
    """Python's and the serving libraries' versions, read off the imported modules (both are
    loaded to serve): importlib.metadata would add ~1.4 MB of imports to every cold start."""
    versions = {name: str(module.__version__) for name, module in _SERVING_MODULES.items()}
    return {"python": platform.python_version(), **versions}


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def check_runtime(bundle: dict[str, Any], installed: dict[str, str] | None = None) -> None:
    """The serving runtime the bundle records (Python, numpy, onnxruntime) against the
    installed one (``installed``, else this process's), to the minor version.

    Raises:
        SanityError: no runtime recorded, one missing, or a major.minor mismatch.
    """
    recorded = bundle.get("metadata", {}).get("runtime")
    if not isinstance(recorded, dict) or not recorded:
        raise SanityError("bundle metadata records no runtime versions; refusing to guess")
    absent = [name for name in RUNTIME if not recorded.get(name)]
    if absent:
        raise SanityError(
            f"bundle metadata.runtime lacks {', '.join(absent)} (it must record "
            f"{', '.join(RUNTIME)}); refusing to guess"
        )
    installed = installed or installed_versions()
    problems = [
        f"{name} {recorded[name]} recorded, {installed.get(name, 'missing')} installed"
        for name in RUNTIME
        if _major_minor(str(recorded[name])) != _major_minor(installed.get(name, "missing"))
    ]
    if problems:
        raise SanityError("runtime version mismatch: " + "; ".join(problems))


def answer_difference(got: dict[str, Any], want: dict[str, Any]) -> tuple[str, float] | None:
    """The first field where two answers disagree, and by how much (NaN: not a number); None
    when they agree within the golden check's tolerance (labels exactly, numbers to
    ``ANSWER_ATOL``). Public: the pre-traffic hook compares a live version's answers with it."""
    if got.keys() != want.keys():
        return "keys", math.nan
    for key, value in want.items():
        other = got[key]
        if isinstance(value, (bool, str)) or value is None:
            if other != value:
                return key, math.nan
        else:
            diff = abs(float(other) - float(value))
            if diff > ANSWER_ATOL + 1e-6 * abs(float(value)):
                return key, diff
    return None


def check_golden(bundle: dict[str, Any], predictor: Predictor | None = None) -> None:
    """The golden check, the one copy training and serving share.

    Re-predicts the bundle's golden inputs (with ``predictor``, or a new Predictor of the
    bundle) and compares every recorded raw output within the bundle's rtol/atol, then, when
    recorded, the answers built from them.

    Raises:
        GoldenMismatch: naming the output and its worst difference.
        SanityError: the golden section itself is incomplete.
    """
    golden = bundle.get("golden") or {}
    inputs = golden.get("inputs") or []
    if not inputs:
        raise SanityError("bundle has no golden samples; refusing to serve an unchecked model")
    recorded_raw = golden.get("raw") or {}
    if not recorded_raw:
        raise SanityError("bundle golden samples record no raw outputs")
    rtol, atol = float(golden.get("rtol", GOLDEN_RTOL)), float(golden.get("atol", GOLDEN_ATOL))
    if "records" in golden:
        check_golden_records(bundle)
    predictor = predictor or Predictor(bundle)
    raw = predictor.raw(np.asarray(inputs, dtype=np.float32))
    for name, expected in recorded_raw.items():
        if name not in raw:
            raise SanityError(f"golden output {name!r} is not produced by the predictor")
        want = np.asarray(expected, dtype=np.float64)
        got = raw[name].astype(np.float64)
        if got.shape != want.shape:
            raise GoldenMismatch(
                f"golden check failed for {name!r}: shape {got.shape} vs recorded {want.shape}",
                name,
                math.nan,
            )
        if not np.allclose(got, want, rtol=rtol, atol=atol):
            diffs = np.abs(got - want)
            row = int(np.nanargmax(diffs)) if not np.isnan(diffs).all() else 0
            worst = float(diffs[row])
            raise GoldenMismatch(
                f"golden check failed for {name!r} (rtol={rtol}, atol={atol}): worst "
                f"difference {worst:.6g} at row {row}: got {got[row]:.6g}, recorded "
                f"{want[row]:.6g}",
                name,
                worst,
            )
    expected_answers = golden.get("answers")
    if expected_answers is None:  # training checks the raw outputs before recording answers
        return
    got_answers = predictor.output.answers(raw)
    if len(expected_answers) != len(got_answers):
        raise GoldenMismatch(
            f"golden records {len(expected_answers)} answers for {len(got_answers)} inputs",
            "answers",
            math.nan,
        )
    for i, (got_answer, want_answer) in enumerate(zip(got_answers, expected_answers, strict=True)):
        difference = answer_difference(got_answer, want_answer)
        if difference is not None:
            field, worst = difference
            raise GoldenMismatch(
                f"golden answer {i} differs in {field!r}: got {got_answer}, recorded {want_answer}",
                f"answers[{i}].{field}",
                worst,
            )


def check_golden_records(bundle: dict[str, Any]) -> None:
    """The golden records, validated one by one and as a batch, give the golden inputs exactly
    (as the model's float32), NaN where training had a missing value.

    Raises:
        SanityError: records and inputs differ in number, or a record fails validation.
        GoldenMismatch: a record gives another feature value than training recorded.
    """
    golden = bundle["golden"]
    records, inputs = golden["records"], np.asarray(golden["inputs"], dtype=np.float32)
    if len(records) != len(inputs):
        raise SanityError(f"golden records {len(records)} records for {len(inputs)} inputs")
    validator = Validator(bundle["schema"], max(len(records), 1))
    names = [f["name"] for f in bundle["schema"]["fields"]]
    try:
        alone = np.array([validator.single(r)[1] for r in records], dtype=np.float64)
        batch = validator.batch(records)[1]
    except ValidationError as exc:
        raise SanityError(f"golden records fail validation: {exc.details[:3]}") from None
    for how, rows in (("alone", alone), ("in a batch", batch)):
        got = rows.astype(np.float32)
        same = (got == inputs) | (np.isnan(got) & np.isnan(inputs))
        if not same.all():
            i, j = (int(v) for v in np.argwhere(~same)[0])
            raise GoldenMismatch(
                f"golden record {i} {how} gives {names[j]} = {float(got[i, j])!r}, training "
                f"recorded {float(inputs[i, j])!r}: serving does not derive features as "
                f"training did",
                f"inputs[{i}].{names[j]}",
                float(abs(got[i, j] - inputs[i, j])),
            )


def check(bundle: dict[str, Any], predictor: Predictor) -> None:
    """Both checks; raises SanityError with the reason. Call inside ``strict_warnings``."""
    check_runtime(bundle)
    check_golden(bundle, predictor)
