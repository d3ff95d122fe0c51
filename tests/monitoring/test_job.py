"""The scheduled drift job end to end: the real handler answers readings with its prediction
log on, its log lines are delivered to the loopback S3 as Firehose writes them, and
`monitoring.job.handler` reads them with the released bundle (by VersionId, digest checked),
writes the report beside the log and prints the metrics the alarms read."""

from __future__ import annotations

import gzip
import io
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest

from inference import handler
from inference.bundle import sha256_hex
from monitoring import contract, job
from monitoring.errors import OUT_OF_DOMAIN
from tests.inference.serving_helpers import (
    KEY,
    context,
    s3_config,
    signing_env,
    upload,
    upload_signature,
)
from tests.monitoring.test_drift_trained import requests, wqi_training_rows

pytestmark = pytest.mark.integration
DAY = "2026/11/02"  # the requests' second day (monitoring/tests: requests() from 2026-11-01)


def firehose(lines: list[str]) -> bytes:
    """What a subscription filter delivers through Firehose: gzip members of envelopes."""
    envelope = {"messageType": "DATA_MESSAGE", "logGroup": "/aws/lambda/waterml-wqi",
                "logEvents": [{"id": str(i), "timestamp": 0, "message": line}
                              for i, line in enumerate(lines)]}  # fmt: skip
    return gzip.compress(json.dumps(envelope).encode())


def job_env(s3_env: dict[str, str], version_id: str, data: bytes) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    env |= signing_env(upload_signature(s3_env, version_id, "3"))  # as the serving function
    return env | {
        "MODEL_BUCKET": s3_env["bucket"], "MODEL_KEY": KEY, "MODEL_VERSION_ID": version_id,
        "MODEL_SHA256": sha256_hex(data), "MODEL_VERSION": "3", "LOG_BUCKET": s3_env["bucket"],
        "LOG_PREFIX": "predictions/wqi/", "REPORT_PREFIX": "reports/wqi/", "WINDOW_DAYS": "3",
    }  # fmt: skip


def emf(text: str) -> dict[str, Any]:
    (doc,) = [json.loads(x) for x in text.splitlines() if contract.NAMESPACE in x]
    return doc


def test_the_job_reports_fresh_water_beside_the_log_and_alarms(
    trained: dict[str, Any], s3_env: dict[str, str], tmp_path: Path, log_lines: io.StringIO,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    data = Path(trained["bundles"]["wqi"]).read_bytes()
    version_id = upload(s3_env, data)
    cache = tmp_path / "cache"
    cache.mkdir()
    config = s3_config(s3_env, version_id, sha256_hex(data), cache, model_version="3")
    handler.init(replace(config, prediction_log_rate=1.0, prediction_log_seed=0))
    rows = wqi_training_rows()
    rows = rows[np.random.default_rng(6).choice(len(rows), 200, replace=False)]
    answer = handler.lambda_handler({"records": requests(rows, tds=410.0)}, context("req-job"))
    assert answer["statusCode"] == 200
    lines = [x for x in log_lines.getvalue().splitlines() if x.startswith("{")]
    s3 = boto3.client("s3", endpoint_url=s3_env["endpoint"])
    s3.put_object(Bucket=s3_env["bucket"], Key=f"predictions/wqi/{DAY}/10/wqi-1.gz",
                  Body=firehose(lines))  # fmt: skip
    capsys.readouterr()
    got = job.run(job_env(s3_env, version_id, data), job.datetime(2026, 11, 3, 6,
                                                                    tzinfo=job.UTC))  # fmt: skip
    assert got["records"] == 200 and got["code"] == OUT_OF_DOMAIN
    metrics = emf(capsys.readouterr().out)
    assert (metrics["model"], metrics["model_version"]) == ("wqi", "3")
    assert metrics["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["model"]]
    assert metrics[contract.RECORDS] == 200 and metrics[contract.OUT_OF_DOMAIN] == 1.0
    assert metrics[contract.DATA_DRIFT] == 1.0 and metrics[contract.OUT_OF_DOMAIN_SHARE] == 1.0
    assert metrics[contract.ESTIMATED_PREFIX + "rmse"] > 0
    folder = got["report"].removeprefix(f"s3://{s3_env['bucket']}/").removesuffix("report.html")
    assert folder.startswith("reports/wqi/2026-11-03T060000Z")
    page = s3.get_object(Bucket=s3_env["bucket"], Key=folder + "report.html")["Body"].read()
    assert page.startswith(b"<!DOCTYPE html>") and b"Out-of-domain traffic" in page
    summary = json.loads(s3.get_object(Bucket=s3_env["bucket"],
                                       Key=folder + "summary.json")["Body"].read())  # fmt: skip
    assert summary["code"] == OUT_OF_DOMAIN and summary["records"] == 200


def test_a_window_without_records_is_no_drift_and_no_report(
    trained: dict[str, Any], s3_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    data = Path(trained["bundles"]["wqi"]).read_bytes()
    version_id = upload(s3_env, data)
    result = job.run(job_env(s3_env, version_id, data), job.datetime(2026, 1, 1, tzinfo=job.UTC))
    assert result == {"model": "wqi", "records": 0, "report": None}
    assert emf(capsys.readouterr().out)[contract.RECORDS] == 0
    s3 = boto3.client("s3", endpoint_url=s3_env["endpoint"])
    listed = s3.list_objects_v2(Bucket=s3_env["bucket"], Prefix="reports/")
    assert listed.get("KeyCount", 0) == 0
