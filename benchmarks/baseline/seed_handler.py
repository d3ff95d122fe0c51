"""The seed article's handler and model loader, as written there (one file here).

It is the benchmark's reference: module-level imports of boto3, joblib and pandas; on a cold
start a boto3 client downloads whatever sits at the key to /tmp and ``joblib.load`` unpickles
it unchecked; then ``predict([features])`` per event. The article also calls
``predict_proba``, which a regressor pipeline does not have; that call is left out. Runs only
in the seed's own virtualenv (scikit-learn 1.4.0, xgboost 2.0.3, pandas 2.1.4, ...).
"""

import json
import logging
import os

import boto3
import joblib
import pandas  # noqa: F401 - imported by the seed's feature code

logger = logging.getLogger()
logger.setLevel(logging.INFO)

MODEL_S3_BUCKET = os.environ["MODEL_BUCKET"]
MODEL_S3_KEY = os.environ["MODEL_KEY"]
LOCAL_MODEL_PATH = os.environ.get("SEED_MODEL_PATH", "/tmp/model.joblib")

_model_cache = None


def get_model():
    global _model_cache
    if _model_cache is not None:
        return _model_cache
    if os.path.exists(LOCAL_MODEL_PATH):
        _model_cache = joblib.load(LOCAL_MODEL_PATH)
        return _model_cache
    s3 = boto3.client("s3")
    s3.download_file(MODEL_S3_BUCKET, MODEL_S3_KEY, LOCAL_MODEL_PATH)
    _model_cache = joblib.load(LOCAL_MODEL_PATH)
    return _model_cache


def extract_features(readings):
    return [readings["pH"], readings["turbidity"], readings["tds"], readings["temperature"]]


def classify_wqi(wqi):
    if wqi >= 90:
        return "Excellent"
    if wqi >= 70:
        return "Good"
    if wqi >= 50:
        return "Fair"
    if wqi >= 25:
        return "Poor"
    return "Very Poor"


def lambda_handler(event, context):
    try:
        readings = event.get("readings", {})
        device_id = event.get("deviceId", "unknown")
        required = ["pH", "turbidity", "tds", "temperature"]
        missing = [f for f in required if f not in readings]
        if missing:
            return {
                "statusCode": 400,
                "body": json.dumps(
                    {"error": f"Missing fields: {missing}", "code": "VALIDATION_ERROR"}
                ),
            }
        features = extract_features(readings)
        model = get_model()
        wqi = float(model.predict([features])[0])
        quality = classify_wqi(wqi)
        logger.info(
            "Inference complete", extra={"deviceId": device_id, "wqi": wqi, "quality": quality}
        )
        return {
            "statusCode": 200,
            "body": json.dumps({"wqi": round(wqi, 2), "quality": quality, "deviceId": device_id}),
        }
    except Exception as e:
        logger.error(f"Inference error: {e}", exc_info=True)
        return {
            "statusCode": 500,
            "body": json.dumps({"error": "Inference failed", "code": "INFERENCE_ERROR"}),
        }


def bench_batch(records):
    """The seed has no batch path; the benchmark grants it the best one: a single predict."""
    model = get_model()
    features = [extract_features(r["readings"]) for r in records]
    return model.predict(features)


def bench_raw_rows_per_s(records):
    import time

    import numpy as np

    model = get_model()
    X = np.array([extract_features(r["readings"]) for r in records], dtype=np.float32)
    times = []
    for _ in range(5):
        t = time.perf_counter()
        model.predict(X)
        times.append(time.perf_counter() - t)
    return round(len(X) / sorted(times)[2])
