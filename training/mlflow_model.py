"""The bundle as an MLflow pyfunc model: the same bytes, answered by the handler's own code.

MLflow stores this file beside the model ("models from code": MLflow 3 refuses pickled
models by default) and runs it at load, with the `inference` package from the model's
``code/`` folder on ``sys.path``. So this module imports nothing from ``training`` and only
what serving has (numpy, onnxruntime, powertools) plus MLflow and pandas, which any pyfunc
host has.

- ``load_context`` reads the bundle (``artifacts/model.joblib``), checks its SHA-256 against
  the one recorded in the MLmodel file (``model_config``) *before* unpickling, and loads it as
  the Lambda does: plain-data unpickler, warnings as errors, runtime and golden checks.
- ``predict`` turns each row into the handler's record (``{"deviceId", "timestamp",
  "readings"}``) and
  answers the batch with ``inference.handler.Service.answer_batch``: the same validation,
  float32 conversion, ONNX session and answer builder as a Lambda batch, so
  ``mlflow models predict`` answers a reading exactly as the handler does.

The signature and input example are derived from the bundle (``signature``/``input_example``)
so the MLflow UI shows the serving schema.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.types import ColSpec, DataType, Schema
from mlflow.types.schema import Array, Object, Property

from inference import loader, sanity
from inference.bundle import loads, verify_digest
from inference.config import DEFAULT_MAX_BATCH
from inference.handler import Service
from inference.predictor import Predictor
from inference.validation import ValidationError

BUNDLE = "bundle"  # the artifact's key; MLflow copies it to <model>/artifacts/model.joblib
# The MLmodel's model_config entry the bundle's bytes must match, written by training/register.py.
# Not the version's tag (training/mlflow_names.py): this file runs inside the logged model, where
# only inference/ is importable, so this contract between the MLmodel and its loader lives here.
SHA256_KEY = "bundle_sha256"
DEVICE_ID = "deviceId"  # optional input; every answer leads with it, as the handler's do
DOMAIN = "domain"  # the answer's domain verdict, for a bundle with a training profile
TIMESTAMP = "timestamp"  # optional input of a model with calendar features (ISO-8601 text)
INPUT_EXAMPLE_ROWS = 2


def answer_columns(output: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, MLflow type) of each answer field after ``deviceId``, in the handler's order
    (inference/outputs.py builds them)."""
    if output["kind"] == "banded_regression":
        value, band = str(output["value_name"]), str(output["band_name"])
        return [(value, "double"), (band, "string"), ("confidence", "double")]
    return [(str(output["label_name"]), "boolean"), ("probability", "double"),
            ("confidence", "double")]  # fmt: skip


def reading_fields(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """The schema's fields a reading carries (calendar features come from the timestamp)."""
    return [f for f in bundle["schema"]["fields"] if f.get("source") is None]


def dated(bundle: dict[str, Any]) -> bool:
    return TIMESTAMP in bundle["schema"]


def signature(bundle: dict[str, Any]) -> ModelSignature:
    """Inputs: the readings as doubles (nullable ones optional), the timestamp of a model with
    calendar features and a deviceId, both optional; outputs: the handler's answer columns."""
    inputs = [ColSpec("double", f["name"], required=not f.get("nullable", False))
              for f in reading_fields(bundle)]  # fmt: skip
    if dated(bundle):
        inputs.append(ColSpec("string", TIMESTAMP, required=False))
    outputs = [ColSpec(kind, name) for name, kind in answer_columns(bundle["output"])]
    if "profile" in bundle:  # {"inside": bool, "outside": [feature, ...]} (inference/domain.py)
        verdict = Object([Property("inside", DataType.boolean),
                          Property("outside", Array(DataType.string))])  # fmt: skip
        outputs.append(ColSpec(verdict, DOMAIN))
    return ModelSignature(
        inputs=Schema([*inputs, ColSpec("string", DEVICE_ID, required=False)]),
        outputs=Schema([ColSpec("string", DEVICE_ID, required=False), *outputs]),
    )


def input_example(bundle: dict[str, Any]) -> pd.DataFrame:
    """The first golden readings: real rows the bundle is proven to answer as recorded."""
    golden = bundle["golden"]
    if "records" in golden:  # readings and their timestamps, as serving receives them
        chosen = golden["records"][:INPUT_EXAMPLE_ROWS]
        frame = pd.DataFrame([r["readings"] for r in chosen], dtype="float64")
        return frame.assign(**{TIMESTAMP: [r.get(TIMESTAMP) for r in chosen]})
    names = [f["name"] for f in bundle["schema"]["fields"]]
    return pd.DataFrame(golden["inputs"][:INPUT_EXAMPLE_ROWS], columns=names, dtype="float64")


def records(
    frame: pd.DataFrame, features: list[str], timestamp: bool = False
) -> list[dict[str, Any]]:
    """The handler's batch records: plain floats (the validator accepts only JSON numbers),
    NaN or a missing optional column as null (refused unless the field is nullable), and the
    timestamp where given when ``timestamp``."""
    columns = []
    for name in features:
        if name in frame.columns:
            values = pd.to_numeric(frame[name], errors="coerce").astype("float64").tolist()
            columns.append([None if math.isnan(v) else v for v in values])
        else:
            columns.append([None] * len(frame))
    readings = [dict(zip(features, row, strict=True)) for row in zip(*columns, strict=True)]
    out: list[dict[str, Any]] = [{"readings": r} for r in readings]
    if timestamp and TIMESTAMP in frame.columns:
        for record, stamp in zip(out, frame[TIMESTAMP].tolist(), strict=True):
            if not pd.isna(stamp):
                record[TIMESTAMP] = str(stamp)
    if DEVICE_ID not in frame.columns:
        return out
    devices = [None if pd.isna(d) else str(d) for d in frame[DEVICE_ID].tolist()]
    return [{DEVICE_ID: d, **r} if d is not None else r
            for d, r in zip(devices, out, strict=True)]  # fmt: skip


class BundleModel(PythonModel):
    """A waterml bundle served through the Lambda handler's Service."""

    service: Service
    features: list[str]
    columns: list[str]
    timestamp: bool

    def load_context(self, context: PythonModelContext) -> None:
        """Load the bundle as the Lambda does, its SHA-256 checked before any unpickling.

        Raises:
            MlflowException: the MLmodel records no digest.
            inference.bundle.BundleError: the bytes do not match it (``DigestMismatch``) or
                are not a bundle this code serves.
            inference.sanity.SanityError: the runtime or the golden samples do not check.
        """
        path = Path(context.artifacts[BUNDLE])
        expected = str((context.model_config or {}).get(SHA256_KEY, ""))
        if not expected:
            raise MlflowException(f"the model's MLmodel records no {SHA256_KEY}")
        data = path.read_bytes()
        verify_digest(data, expected, str(path))  # before any unpickling, as the loader does
        with sanity.strict_warnings():  # the loader's load-time checks, in its order
            bundle = loads(data)
            predictor = Predictor(bundle)
            sanity.check(bundle, predictor)
        model = loader.Model(
            bundle=bundle, predictor=predictor, sha256=expected, version_id="", source="mlflow"
        )
        self.service = Service(model, DEFAULT_MAX_BATCH)
        self.features = [f["name"] for f in reading_fields(bundle)]
        self.timestamp = dated(bundle)
        self.columns = [DEVICE_ID] + [name for name, _ in answer_columns(bundle["output"])]
        if "profile" in bundle:
            self.columns.append(DOMAIN)

    def predict(
        self, context: PythonModelContext, model_input: pd.DataFrame, params: Any = None
    ) -> pd.DataFrame:
        """The handler's answers, a row each, with ``deviceId`` first.

        Raises:
            MlflowException: a reading the handler would refuse (``VALIDATION_ERROR``: the
                message names each field and why).
        """
        frame = pd.DataFrame(model_input)
        batch = records(frame, self.features, self.timestamp)
        answers: list[dict[str, Any]] = []
        try:  # in the handler's batch size, each all or nothing like a Lambda batch
            for start in range(0, len(batch), DEFAULT_MAX_BATCH):
                answers += self.service.answer_batch(batch[start : start + DEFAULT_MAX_BATCH])
        except ValidationError as exc:
            reasons = "; ".join(f"{d['field']}: {d['reason']}" for d in exc.details)
            raise MlflowException.invalid_parameter_value(
                f"VALIDATION_ERROR: {exc.message}: {reasons}"
            ) from None
        # Every answer leads with deviceId (null when not given), as the handler's do.
        return pd.DataFrame(answers, columns=self.columns)


mlflow.models.set_model(BundleModel())
