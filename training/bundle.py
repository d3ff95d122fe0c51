"""Builds the serving bundle (DESIGN.md §2) and writes it atomically with joblib."""

from __future__ import annotations

import os
import platform
import subprocess
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import xgboost as xgb

from inference import bundle as contract
from inference import calendar_features
from inference.domain import Domain
from inference.features import matrix_from_columns
from inference.predictor import Predictor
from inference.sanity import GOLDEN_ATOL, GOLDEN_RTOL, SERVING_LIBRARIES, check_golden
from settings import REPO
from training import profile
from training.model import Fitted, Split
from training.onnx_export import INPUT, to_onnx
from training.spec import ModelSpec

GOLDEN_ROWS = 8
# What produced the model (SERVING_LIBRARIES, what serves it, comes from inference.sanity).
# Tools that do not touch the bytes (MLflow, great-expectations) are logged to the run
# instead, so bumping them does not change the bundle.
TRAINING_LIBRARIES = ("xgboost", "xgboost-cpu", "scikit-learn", "onnx", "joblib")


def git_sha() -> str:
    """HEAD's commit, with ``-dirty`` when tracked files differ from it: a bundle never claims
    a commit it was not built from."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()  # fmt: skip

    try:
        sha = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def _versions(names: tuple[str, ...]) -> dict[str, str]:
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except Exception:  # not installed on this platform (xgboost vs xgboost-cpu)
            continue
    return found


def schema(spec: ModelSpec, ranges: dict[str, dict[str, float]]) -> dict[str, Any]:
    fields: list[dict[str, Any]] = [
        {"name": name, "type": "number", **ranges[name], "nullable": name in spec.nullable}
        for name in spec.features
    ]
    if not spec.calendar_features:
        return {"fields": fields}
    assert spec.data.timestamp is not None
    for field in fields:  # serving derives these from the record's timestamp
        if field["name"] in spec.calendar_features:
            field["source"] = calendar_features.SOURCE
    return {"fields": fields, "timestamp": {"utc_offset": spec.data.timestamp.utc_offset}}


def golden_records(
    rows: np.ndarray, stamps: list[str | None], feature_schema: dict[str, Any]
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """The golden inputs as serving receives them: readings and the ISO-8601 timestamp, plus
    the first reading again without its timestamp (its calendar features missing), so the
    load-time check covers both. Returns the inputs with that row appended, and the records."""
    fields = feature_schema["fields"]
    derived = np.array([f.get("source") is not None for f in fields])
    undated = rows[:1].copy()
    undated[:, derived] = np.nan
    rows = np.vstack([rows, undated])
    records = []
    for row, stamp in zip(rows, [*stamps, None], strict=True):
        readings = {f["name"]: None if np.isnan(v) else float(v)
                    for f, v, d in zip(fields, row, derived, strict=True) if not d}  # fmt: skip
        records.append({"readings": readings} | ({} if stamp is None else {"timestamp": stamp}))
    return rows, records


def golden_positions(parts: Split, inside: np.ndarray | None = None) -> np.ndarray:
    """Evenly spaced held-out rows: a fixed choice, so the bundle bytes are reproducible.

    With ``inside`` (per held-out row: inside the training domain), only such rows, when
    there are enough: an answer outside has its confidence capped by serving, and the golden
    answers are what every serving version (older ones ignore the profile) and the pre-traffic
    check compare exactly."""
    candidates = np.arange(len(parts.X_test))
    if inside is not None and int(inside.sum()) >= GOLDEN_ROWS:
        candidates = candidates[inside]
    return candidates[np.linspace(0, len(candidates) - 1, GOLDEN_ROWS).round().astype(int)]


def boosters(fitted: Fitted) -> dict[str, xgb.Booster]:
    out = {"margin": fitted.model.get_booster()}
    if fitted.error_model is not None:
        out["abs_error"] = fitted.error_model.get_booster()
    return out


def build(
    spec: ModelSpec,
    fitted: Fitted,
    parts: Split,
    ranges: dict[str, dict[str, float]],
    metrics: dict[str, float],
    data_sha256: str,
    commit: str,
) -> dict[str, Any]:
    feature_schema = schema(spec, ranges)
    models = boosters(fitted)
    onnx = to_onnx(models, len(spec.features))
    output = dict(spec.output)
    if output["kind"] == "banded_regression":
        output["sigma_scale"] = fitted.sigma_scale
        if fitted.window_log_ratio is not None:  # optional: estimate.py widens by it when there
            output["window_log_ratio"] = fitted.window_log_ratio
    graph = {"engine": "onnxruntime", "onnx": onnx, "input": INPUT, "outputs": list(models)}
    # The training rows' profile, from the graph serving runs (its answers' mix), and the
    # domain it defines, which the golden rows are chosen inside.
    fit_profile = profile.build(spec, parts, Predictor({"predictor": graph, "output": output}))
    held_out = matrix_from_columns(parts.X_test, feature_schema)
    inside = ~np.asarray(Domain(fit_profile, list(spec.features)).check(held_out).outside_rows)
    positions = golden_positions(parts, inside)
    rows = held_out[positions]
    records = None
    if spec.calendar_features:
        assert parts.timestamps_test is not None
        stamps = [parts.timestamps_test[i] for i in positions]
        rows, records = golden_records(rows, stamps, feature_schema)
    # What the trained booster itself gives: the reference serving must reproduce.
    matrix = xgb.DMatrix(rows, feature_names=list(spec.features))
    expected = {
        name: [float(v) for v in booster.predict(matrix, output_margin=True)]
        for name, booster in models.items()
    }
    bundle: dict[str, Any] = {
        "format": contract.FORMAT_CALENDAR if records is not None else contract.FORMAT,
        "name": spec.name,
        "schema": feature_schema,
        "predictor": graph,
        "output": output,
        "golden": {
            "inputs": rows.astype(float).tolist(),
            "raw": expected,
            "rtol": GOLDEN_RTOL,
            "atol": GOLDEN_ATOL,
        },
        "metadata": {
            "model": spec.name,
            "description": spec.description,
            "params": fitted.params,
            "metrics": metrics,
            "data_sha256": data_sha256,
            "git_sha": commit,
            "runtime": {"python": platform.python_version(), **_versions(SERVING_LIBRARIES)},
            "libraries": _versions(SERVING_LIBRARIES + TRAINING_LIBRARIES),
        },
    }
    if records is not None:
        bundle["golden"]["records"] = records
    bundle["profile"] = fit_profile  # optional for serving: older code ignores it
    # The same check serving runs at load: the graph must answer as the booster did, and (with
    # calendar features) validation must build the recorded rows from the records.
    predictor = Predictor(bundle)
    check_golden(bundle, predictor)
    # Without the domain verdict: the golden check compares the output's answers (sanity.py).
    bundle["golden"]["answers"] = predictor.output.answers(predictor.raw(rows))
    return bundle


def write(bundle: dict[str, Any], path: Path) -> str:
    """Write atomically (temp file + rename) and return the file's SHA-256."""
    contract.check_plain(bundle)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".bundle-", suffix=".tmp")
    os.close(fd)
    try:
        joblib.dump(bundle, tmp, protocol=5)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return contract.sha256_hex(path.read_bytes())
