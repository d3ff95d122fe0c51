"""The facts a model card says, as one plain dict, from what training produced: the spec, the
bundle (with its training profile), the held-out metrics, the data's dates and lineage, and
what the served confidence is worth inside and outside the domain on the held-out rows.

Registration (training/register.py) logs them with the run (``card/facts.json``) and renders
the card from them (training/card_content.py); the registry's command renders them again
with the release once promoted (registry/card.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np

from inference.features import matrix_from_columns
from inference.predictor import Predictor
from settings import REPO
from training.mlflow_names import ARTIFACT_SHA256, DATA_SHA256, GIT_SHA
from training.model import Split
from training.spec import ISO_8601, ModelSpec

KEPT_OUT = ("reference", "combination")  # profile entries for drift reports, not for reading


def date_range(spec: ModelSpec, parts: Split) -> dict[str, str] | None:
    """The first and last timestamp in the data file, and the first held-out one (a
    chronological split). Only the timestamp column is read, vectorised: about 50 ms for wqi,
    where the whole load with a strptime per row took 1.6 s on a busy machine."""
    import pandas as pd

    from inference.calendar_features import zone

    data, stamp = spec.data, spec.data.timestamp
    if stamp is None:
        return None
    header = next((raw for raw, new in data.rename.items() if new == stamp.column), stamp.column)
    try:
        column = pd.read_csv(
            data.path,
            usecols=[header],
            encoding=data.encoding,
            na_values=list(data.na_values),
            keep_default_na=False,
        )[header]
        moments = pd.to_datetime(column.dropna(), format=stamp.format if stamp.format !=
                                 ISO_8601 else "ISO8601")  # fmt: skip
    except (OSError, ValueError):
        return None  # training read it already; a card without dates rather than no card
    if moments.empty:
        return None
    tz = zone(stamp.utc_offset)
    first, last = (
        m.tz_localize(tz) if m.tzinfo is None else m for m in (moments.min(), moments.max())
    )
    out = {"first": first.isoformat(), "last": last.isoformat()}
    held = [s for s in (parts.timestamps_test or []) if s is not None]
    if held and spec.split["method"] == "chronological":
        out["held_out_from"] = min(datetime.fromisoformat(s) for s in held).isoformat()
    return out


def _side(correct: np.ndarray, confidences: dict[str, np.ndarray]) -> dict[str, Any]:
    """Rows, share answered right, and per confidence its mean and Brier score."""
    if not len(correct):
        return {"rows": 0}
    return {
        "rows": len(correct),
        "right": float(correct.mean()),
        "mean_confidence": {k: float(c.mean()) for k, c in confidences.items()},
        "brier": {k: float(np.mean((c - correct) ** 2)) for k, c in confidences.items()},
    }


def confidence(bundle: dict[str, Any], parts: Split) -> dict[str, Any] | None:
    """What the served confidence is worth on the held-out rows, inside and outside the
    domain: how often the answer was right, and the Brier score of three confidences: the
    model's own, the one served (never above the model's outside the domain), and the
    training labels' share of the answered band or class (the prior). With calendar
    features, the held-out error without a timestamp too. None without a profile."""
    predictor = Predictor(bundle)
    if predictor.domain is None:
        return None
    X = matrix_from_columns(parts.X_test, bundle["schema"])
    y = parts.y_test.to_numpy(np.float64)
    raw = predictor.raw(X)
    output = predictor.output
    own = output.answers(raw)
    checked = predictor.domain.check(X)
    served = output.answered(raw, None, checked).answers
    labels = list(output.labels)
    label = output.names[0] if bundle["output"]["kind"] == "binary_classification" else \
        output.names[1]  # fmt: skip
    answered = np.array([labels.index(a[label]) for a in own])
    if bundle["output"]["kind"] == "banded_regression":
        truth = output.band_index(np.clip(y, output.lower, output.upper))  # type: ignore[attr-defined]
    else:
        truth = (y >= 0.5).astype(np.int64)
    correct = (answered == truth).astype(np.float64)
    prior = np.asarray(bundle["profile"]["outputs"]["label_shares"], dtype=np.float64)
    confidences = {
        "model": np.array([a["confidence"] for a in own]),
        "served": np.array([a["confidence"] for a in served]),
        "prior": prior[answered],
    }
    outside = np.asarray(checked.outside_rows, dtype=bool)
    found: dict[str, Any] = {
        "rows": len(y),
        "inside": _side(correct[~outside], {k: c[~outside] for k, c in confidences.items()}),
        "outside": _side(correct[outside], {k: c[outside] for k, c in confidences.items()}),
        "unusual_rows": int(checked.unusual_rows),
        "raised": int(np.sum(confidences["served"] > confidences["model"])),
    }
    derived = [j for j, f in enumerate(bundle["schema"]["fields"]) if f.get("source")]
    if derived and bundle["output"]["kind"] == "banded_regression":
        undated = X.copy()
        undated[:, derived] = np.nan

        def rmse(matrix: np.ndarray) -> float:
            value = np.clip(predictor.raw(matrix)["margin"], output.lower, output.upper)  # type: ignore[attr-defined]
            return float(np.sqrt(np.mean((value - y) ** 2)))

        found["without_timestamp"] = {"rmse": rmse(undated), "rmse_with": rmse(X)}
    return found


def facts(
    spec: ModelSpec,
    parts: Split,
    bundle: dict[str, Any],
    metrics: dict[str, float],
    data_sha256: str,
    tags: dict[str, str],
    version: str,
    run_id: str,
) -> dict[str, Any]:
    """Everything the card says, as plain JSON, from what training produced."""
    path = spec.data.path
    profile = bundle.get("profile")
    if isinstance(profile, dict):
        grid = profile.get("combination") or {}
        profile = {k: v for k, v in profile.items() if k not in KEPT_OUT}
        if grid:
            profile["combination"] = {k: grid[k] for k in ("method", "radius", "held_out_inside",
                                                            "certified") if k in grid}  # fmt: skip
    return {
        "name": spec.name,
        "version": version,
        "run_id": run_id,
        "description": spec.description,
        "task": spec.task,
        "features": list(spec.features),
        "nullable": list(spec.nullable),
        "calendar": list(spec.calendar_features),
        "label": spec.label,
        "output": bundle["output"],
        "ranges": {
            f["name"]: [f.get("minimum"), f.get("maximum")] for f in bundle["schema"]["fields"]
        },
        "data": {
            "source": path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else str(path),
            "sha256": data_sha256,
            "filter": spec.data.filter.text if spec.data.filter else None,
            "split": spec.split,
            "dates": date_range(spec, parts),
        },
        "metrics": metrics,
        "gates": {"primary": spec.gates.primary, "greater_is_better": spec.gates.greater_is_better},
        "profile": profile,
        "confidence": confidence(bundle, parts),
        "lineage": {k: tags.get(k, "") for k in (DATA_SHA256, GIT_SHA, ARTIFACT_SHA256)},
    }
