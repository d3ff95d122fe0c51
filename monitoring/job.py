"""The scheduled drift report: ``monitoring.job.handler``, a Lambda function from the serving
image with that command, run on a schedule (infra: waterml_infra/constructs/drift_job.py).

Each run reads the last ``WINDOW_DAYS`` days of one model's sampled prediction log from S3
(``s3://LOG_BUCKET/LOG_PREFIX``, where a subscription filter delivers the function's
prediction records through Firehose, under ``YYYY/MM/DD/HH/``), compares them with the
released bundle (loaded as the serving function loads it: by S3 VersionId, SHA-256 checked
before it is unpickled, from the same ``MODEL_*`` variables), writes the report beside the log
(``s3://LOG_BUCKET/REPORT_PREFIX<time>/report.html`` and ``summary.json``) and prints one EMF
document of the metrics the alarms read (monitoring/contract.py, dimension ``model``). numpy,
onnxruntime and boto3 only: the image has nothing else.

A window without any record of the model prints ``DriftRecords`` 0 and writes no report (no
traffic is not drift). Any other failure raises: Lambda counts the error, its alarm says so.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any

from inference import config as config_mod
from inference import loader
from monitoring import analysis, log, sections
from monitoring.compare import Thresholds
from monitoring.contract import (
    DATA_DRIFT,
    DEFAULT_WINDOW_DAYS,
    ESTIMATED_LOSS,
    ESTIMATED_PREFIX,
    LOG_BUCKET,
    LOG_PREFIX,
    MODEL_DIMENSION,
    NAMESPACE,
    OUT_OF_DOMAIN,
    OUT_OF_DOMAIN_SHARE,
    RECORDS,
    REPORT_PREFIX,
    WINDOW_DAYS,
)
from monitoring.errors import LogError


def day_prefixes(prefix: str, end: datetime, days: int) -> list[str]:
    """Firehose's date folders (UTC) of the ``days`` days up to ``end``."""
    return [f"{prefix}{(end - timedelta(days=k)):%Y/%m/%d}/" for k in range(days - 1, -1, -1)]


def records_of(bucket: str, prefixes: list[str], model: str) -> tuple[list[dict[str, Any]], str]:
    """The model's records under the prefixes (a day without objects is skipped)."""
    found: list[dict[str, Any]] = []
    for prefix in prefixes:
        try:
            read = log.read(f"s3://{bucket}/{prefix}")
        except LogError as exc:
            if "no objects under" in str(exc):
                continue
            raise
        found += [r for r in read.records if r["model"].get("name") == model]
    return found, f"s3://{bucket}/{prefixes[0]} .. {prefixes[-1]}"


def metrics(report: analysis.Report | None, model: str, version: str, records: int) -> str:
    """The run's EMF document: one line of JSON."""
    values: dict[str, float] = {RECORDS: float(records)}
    if report is not None:
        found = report.sections
        values[DATA_DRIFT] = float(bool(found["data drift"]))
        values[OUT_OF_DOMAIN] = float(bool(found["out of domain"]))
        values[OUT_OF_DOMAIN_SHARE] = round(float(report.domain.outside), 4)
        values[ESTIMATED_LOSS] = float(bool(found["estimated performance"]))
        e = report.estimate
        if e.primary in e.metrics:
            values[ESTIMATED_PREFIX + e.primary] = round(float(e.metrics[e.primary][0]), 6)
    return json.dumps({
        "_aws": {
            "Timestamp": int(datetime.now(UTC).timestamp() * 1000),
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [[MODEL_DIMENSION]],
                "Metrics": [{"Name": k, "Unit": "None" if k.startswith(ESTIMATED_PREFIX)
                             or k == OUT_OF_DOMAIN_SHARE else "Count"} for k in values],
            }],
        },
        MODEL_DIMENSION: model,
        "model_version": version,  # a property of the document, not a dimension
        **values,
    }, separators=(",", ":"))  # fmt: skip


def run(env: dict[str, str], now: datetime) -> dict[str, Any]:
    """One run; what it found, as the handler returns it.

    Raises:
        inference.config.ConfigError: a variable is missing or malformed.
        inference.loader errors: the released bundle cannot be fetched or verified.
        monitoring.errors.LogError: the log cannot be read.
        botocore errors: the report cannot be written.
    """
    import boto3

    cfg = config_mod.from_env(env)
    model = loader.load(cfg)
    bucket, prefix = env[LOG_BUCKET], env[LOG_PREFIX]
    days = int(env.get(WINDOW_DAYS, DEFAULT_WINDOW_DAYS))
    records, source = records_of(bucket, day_prefixes(prefix, now, days), model.name)
    version = str(model.identity.get("version") or "unversioned")
    if not records:
        print(metrics(None, model.name, version, 0))
        return {"model": model.name, "records": 0, "report": None}
    bundle = model.bundle
    primary = analysis.primary_of(bundle)
    t = Thresholds()
    features, output, traffic, estimated, tested, uncovered, _ = analysis.assess(
        records, bundle, t, primary
    )
    report = analysis.Report(
        model.name, f"{model.name} version {version} (released, s3 {model.version_id})",
        model.sha256, source, len(records), len(records), 0, 0, {},
        analysis.versions(records), analysis.period(records), features, output, traffic,
        estimated, t, [], tested, uncovered,
    )  # fmt: skip
    folder = f"{env[REPORT_PREFIX]}{now:%Y-%m-%dT%H%M%SZ}/"
    s3 = boto3.client("s3", endpoint_url=env.get("AWS_ENDPOINT_URL_S3") or None)
    s3.put_object(Bucket=bucket, Key=folder + "report.html", Body=sections.render(report, "html"),
                  ContentType="text/html; charset=utf-8")  # fmt: skip
    summary = sections.summary(report)
    s3.put_object(Bucket=bucket, Key=folder + "summary.json", Body=json.dumps(summary, indent=2),
                  ContentType="application/json")  # fmt: skip
    print(metrics(report, model.name, version, len(records)))
    return {"model": model.name, "records": len(records), "code": report.code,
            "alarms": report.alarms, "report": f"s3://{bucket}/{folder}report.html"}  # fmt: skip


def handler(event: Any, context: Any = None) -> dict[str, Any]:
    """The scheduled event's time ends the window (now, without one)."""
    when = event.get("time") if isinstance(event, dict) else None
    now = datetime.fromisoformat(when.replace("Z", "+00:00")) if when else datetime.now(UTC)
    return run(dict(os.environ), now)
