"""The drift job's roles, run: the prediction log's way into S3 and the job that reads it, each
through the IAM gate (tools/iam_gate.py) with exactly its role's statements from dev's
synthesized wqi serving stack, against the loopback S3 (and its Firehose).

- CloudWatch Logs' role on the subscription filter (``firehose:PutRecordBatch`` on the stream):
  the real handler's prediction records, in the envelopes a subscription sends, put into a
  stream of the template's name in the loopback Firehose (moto's, which writes them to S3 in
  Firehose's layout; that write is moto's own, under no role).
- Firehose's delivery role: the S3 calls AWS documents for an S3 destination (bucket location,
  listing, multipart uploads and their abort, the object written and read back), writing an
  object under ``predictions/<model>/YYYY/MM/DD/HH/<stream>-<version>-<time>-<id>``,
  uncompressed as the stream is configured (each record is a subscription's own gzip member).
- The job's role: ``monitoring.job.handler`` itself (the released bundle and its signature by
  VersionId, the log listed and read, ``report.html`` and ``summary.json`` written), reading
  exactly what the two producers wrote.

Every grant of the job's and the subscription's roles is used by a call above; the delivery
role holds AWS's documented S3 destination actions and nothing else, each called above.
Not run: each role's CloudWatch Logs writes (``logs:CreateLogStream``/``PutLogEvents``, made by
the Lambda runtime and by Firehose itself; the gate does not model CloudWatch Logs).
"""

from __future__ import annotations

import gzip
import io
import json
import types
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
import synthetic
from botocore.exceptions import ClientError
from serving_helpers import local_config, signed
from synth_helpers import GOLDEN_DOMAIN, functions, released_bundle, serving_template

from inference import handler, loader
from inference.bundle import sha256_hex
from monitoring import job
from registry.manifest import Release
from tools import local_s3
from tools.iam_gate import Gate, Names, role_statements, unused_grants

ACCOUNT, REGION = "111111111111", "eu-west-1"
STREAM = "waterml-dev-wqi-DriftJobDelivery-GATE"  # the name CloudFormation makes up
# What AWS documents for a Firehose role writing to S3 ("Grant Firehose access to an Amazon S3
# destination"), the delivery role's S3 actions exactly.
FIREHOSE_S3_ACTIONS = {
    "s3:AbortMultipartUpload",
    "s3:GetBucketLocation",
    "s3:GetObject",
    "s3:ListBucket",
    "s3:ListBucketMultipartUploads",
    "s3:PutObject",
}
# Made by the Lambda runtime and by Firehose itself, not by code run here (no CloudWatch Logs
# in the gate): the only grants the unused-grant check leaves out.
NOT_RUN = {"logs:CreateLogStream", "logs:PutLogEvents"}
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def drift(s3_endpoint: str) -> Iterator[dict[str, Any]]:
    """dev's wqi released (signed) in the loopback S3, its serving stack synthesized for that
    release, the drift job's log bucket under a made-up name, the gate with the three roles."""
    from waterml_infra.config import load_settings, resolve

    cfg = resolve(load_settings(), "dev").model("wqi")
    bucket = cfg.env.bucket_name
    local_s3.ensure_bucket(s3_endpoint, bucket)
    admin = boto3.client("s3", endpoint_url=s3_endpoint, **local_s3._client_credentials())
    bundle = released_bundle()
    # The reference rows the windowed drift tests draw from (training keeps its split's rows):
    # readings spread over the golden domain.
    lo, hi = (np.array([v[k] for v in GOLDEN_DOMAIN.values()]) for k in (0, 1))
    rows = np.random.default_rng(0).uniform(lo, hi, (400, len(lo))).astype("<f4")
    bundle["profile"]["reference"] = {
        "names": list(GOLDEN_DOMAIN),
        "rows": len(rows),
        "values": rows.tobytes(),
    }
    data = synthetic.dumps(bundle)
    version = admin.put_object(Bucket=bucket, Key=cfg.model_key, Body=data)["VersionId"]
    release = Release(
        "wqi",
        "3",
        bucket,
        cfg.model_key,
        version,
        sha256_hex(data),
        "a" * 40,
        "2026-12-07T00:00:00Z",
    )
    release = signed(
        release,
        data,
        lambda key, body: admin.put_object(Bucket=bucket, Key=key, Body=body)["VersionId"],
    )
    serving = serving_template("dev", release, bundle)
    resources = serving["Resources"]
    (bucket_id,) = [
        k
        for k, r in resources.items()
        if r["Type"] == "AWS::S3::Bucket" and k.startswith("DriftJobBucket")
    ]
    (stream_id,) = [
        k for k, r in resources.items() if r["Type"] == "AWS::KinesisFirehose::DeliveryStream"
    ]
    log_bucket = f"waterml-dev-wqi-driftjobbucket-{uuid.uuid4().hex[:8]}"
    local_s3.ensure_bucket(s3_endpoint, log_bucket)
    names = Names(ACCOUNT, REGION, [serving], physical={bucket_id: log_bucket, stream_id: STREAM})
    roles = {
        "job": role_statements(names, "DriftJobRole"),
        "delivery": role_statements(names, "DriftJobDeliveryRole"),
        "subscription": role_statements(names, "DriftJobPredictionLogCloudWatchLogsCanPutRecords"),
    }
    # The stream as the template configures it, in the loopback Firehose.
    configured = resources[stream_id]["Properties"]["ExtendedS3DestinationConfiguration"]
    assert "CompressionFormat" not in configured  # UNCOMPRESSED: the records' own gzip
    destination = {
        k: names.value(configured[k]) for k in ("BucketARN", "Prefix", "ErrorOutputPrefix")
    }
    destination["RoleARN"] = f"arn:aws:iam::{ACCOUNT}:role/delivery"  # moto assumes nothing
    hose = boto3.client(
        "firehose",
        endpoint_url=s3_endpoint,
        **(local_s3._client_credentials() | {"region_name": REGION}),
    )
    hose.create_delivery_stream(
        DeliveryStreamName=STREAM,
        DeliveryStreamType="DirectPut",
        ExtendedS3DestinationConfiguration={
            k: destination[k] for k in ("RoleARN", "BucketARN", "Prefix", "ErrorOutputPrefix")
        },
    )
    (subscription,) = [
        r for r in resources.values() if r["Type"] == "AWS::Logs::SubscriptionFilter"
    ]
    gate = Gate(roles, {"s3": s3_endpoint, "firehose": s3_endpoint}, ACCOUNT, REGION).start()
    env = names.value(functions(serving)[f"{cfg.function_name}-drift"]["Environment"]["Variables"])
    try:
        yield {
            "cfg": cfg,
            "gate": gate,
            "admin": admin,
            "data": data,
            "env": env,
            "log_bucket": log_bucket,
            "destination": destination,
            "roles": roles,
            "subscription": {
                k: names.value(subscription["Properties"][k])
                for k in ("LogGroupName", "DestinationArn")
            },
        }
    finally:
        gate.stop()
        hose.delete_delivery_stream(DeliveryStreamName=STREAM)


def keys(role: str) -> dict[str, str]:
    found = Gate.credentials(role)
    return {
        "aws_access_key_id": found["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": found["AWS_SECRET_ACCESS_KEY"],
        "aws_session_token": found["AWS_SESSION_TOKEN"],
    }


def client(drift: dict[str, Any], service: str, role: str) -> Any:
    return boto3.client(
        service, endpoint_url=drift["gate"].endpoint, region_name=REGION, **keys(role)
    )


def prediction_lines(data: bytes, cache: Path, log_lines: io.StringIO) -> list[str]:
    """The real handler's log lines for 40 readings with its prediction log on, those the
    subscription filter ``{ $.message.kind = "prediction" }`` passes."""
    handler.reset()
    handler.init(
        replace(
            local_config(data, cache, model_version="3"),
            prediction_log_rate=1.0,
            prediction_log_seed=0,
        )
    )
    lo = {k: v[0] for k, v in GOLDEN_DOMAIN.items()}
    hi = {k: v[1] for k, v in GOLDEN_DOMAIN.items()}
    records = [
        {
            "deviceId": f"buoy-{i % 3}",
            "readings": {k: lo[k] + (hi[k] - lo[k]) * ((i * 7) % 40) / 40 for k in lo},
        }
        for i in range(40)
    ]
    context = types.SimpleNamespace(aws_request_id="req-drift", function_name="waterml-dev-wqi")
    try:
        assert handler.lambda_handler({"records": records}, context)["statusCode"] == 200
    finally:
        handler.reset()
    lines = [x for x in log_lines.getvalue().splitlines() if x.startswith("{")]
    passed = [x for x in lines if kind(json.loads(x).get("message")) == "prediction"]
    assert passed and len(passed) < len(lines)  # the filter drops the other log lines
    return passed


def kind(message: Any) -> Any:
    return message.get("kind") if isinstance(message, dict) else None


def envelopes(lines: list[str], group: str) -> list[bytes]:
    """What the subscription sends Firehose: gzip'd envelopes, a control message first (sent
    when the filter is created), then the log events in batches."""
    control = {
        "messageType": "CONTROL_MESSAGE",
        "owner": "CloudwatchLogs",
        "logGroup": "",
        "logStream": "",
        "subscriptionFilters": [],
        "logEvents": [
            {
                "id": "",
                "timestamp": 0,
                "message": "CWL CONTROL MESSAGE: Checking health of destination Firehose.",
            }
        ],
    }
    found = [gzip.compress(json.dumps(control).encode())]
    for start in range(0, len(lines), 16):
        batch = lines[start : start + 16]
        found.append(
            gzip.compress(
                json.dumps(
                    {
                        "messageType": "DATA_MESSAGE",
                        "owner": ACCOUNT,
                        "logGroup": group,
                        "logStream": "2026/11/02/[3]0123456789abcdef",
                        "subscriptionFilters": ["Prediction"],
                        "logEvents": [
                            {"id": f"{start + i}", "timestamp": 1793577600000 + i, "message": m}
                            for i, m in enumerate(batch)
                        ],
                    }
                ).encode()
            )
        )
    return found


def run_job(
    drift: dict[str, Any], monkeypatch: pytest.MonkeyPatch, cache: Path, when: str
) -> dict[str, Any]:
    """``monitoring.job.handler`` as the function runs it: its environment from the template,
    the job role's keys, S3 through the gate, an empty /tmp (the bundle is fetched)."""
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    for name, value in {
        **drift["env"],
        **Gate.credentials("job"),
        "AWS_ENDPOINT_URL_S3": drift["gate"].endpoint,
        "AWS_DEFAULT_REGION": REGION,
        "MODEL_CACHE_DIR": str(cache),
    }.items():
        monkeypatch.setenv(name, value)
    loader.clear_memory()
    try:
        return job.handler({"time": when, "detail-type": "Scheduled Event"})
    finally:
        loader.clear_memory()


def test_the_log_reaches_s3_and_the_job_reports_on_it_each_under_its_role(
    drift: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    log_lines: io.StringIO,
) -> None:
    gate, bucket, admin = drift["gate"], drift["log_bucket"], drift["admin"]
    gate.refused.clear()
    gate.granted.clear()
    (tmp_path / "serving").mkdir()
    lines = prediction_lines(drift["data"], tmp_path / "serving", log_lines)
    members = envelopes(lines, drift["subscription"]["LogGroupName"])
    assert drift["subscription"]["DestinationArn"].endswith(f":deliverystream/{STREAM}")

    # CloudWatch Logs puts the subscription's records into the stream (today's folder): AWS's
    # subscription example grants PutRecord, CDK's destination PutRecordBatch too; both run.
    hose = client(drift, "firehose", "subscription")
    hose.put_record(DeliveryStreamName=STREAM, Record={"Data": members[0]})
    put = hose.put_record_batch(
        DeliveryStreamName=STREAM, Records=[{"Data": m} for m in members[1:]]
    )
    assert put["FailedPutCount"] == 0

    # Firehose's delivery of a buffer from 2026-11-02 10:00 UTC, as its role: the documented
    # calls, the object in its layout (a multipart upload; a second one aborted).
    prefix = drift["destination"]["Prefix"]
    assert prefix == drift["env"]["LOG_PREFIX"] == "predictions/wqi/"
    key = f"{prefix}2026/11/02/10/{STREAM}-1-2026-11-02-10-05-00-{uuid.uuid4()}"
    s3 = client(drift, "s3", "delivery")
    s3.get_bucket_location(Bucket=bucket)
    s3.head_bucket(Bucket=bucket)
    s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix)
    started = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    part = s3.upload_part(
        Bucket=bucket, Key=key, UploadId=started, PartNumber=1, Body=b"".join(members)
    )["ETag"]
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=started,
        MultipartUpload={"Parts": [{"ETag": part, "PartNumber": 1}]},
    )
    abandoned = s3.create_multipart_upload(Bucket=bucket, Key=key + "-retry")["UploadId"]
    s3.abort_multipart_upload(Bucket=bucket, Key=key + "-retry", UploadId=abandoned)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"".join(members)

    # The job, as its role, reads both deliveries: the buffer's day and today's.
    (tmp_path / "job").mkdir()
    got = run_job(drift, monkeypatch, tmp_path / "job", "2026-11-03T06:00:00Z")
    assert got["records"] == len(lines) and got["report"], got
    today = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert run_job(drift, monkeypatch, tmp_path / "job2", today)["records"] == len(lines)
    assert gate.refused == [], gate.refused  # every call of the three roles was granted
    folder = got["report"].removeprefix(f"s3://{bucket}/").removesuffix("report.html")
    assert folder.startswith(drift["env"]["REPORT_PREFIX"] + "2026-11-03T060000Z")
    page = admin.get_object(Bucket=bucket, Key=folder + "report.html")["Body"].read()
    assert page.startswith(b"<!DOCTYPE html>")
    summary = json.loads(
        admin.get_object(Bucket=bucket, Key=folder + "summary.json")["Body"].read()
    )
    assert summary["records"] == len(lines)

    # No grant without a call: every action of the job's and the subscription's roles was
    # used above, on each of its resources; the delivery role holds AWS's documented actions
    # only, each called above (on the log's prefix: its errors prefix is written by Firehose
    # only when a delivery fails, which the replay does not make happen).
    by_role = {role: [r for who, r in gate.granted if who == role] for role in drift["roles"]}
    for role in ("job", "subscription"):
        assert unused_grants(drift["roles"][role], by_role[role], ignore=NOT_RUN) == []
    delivery = {
        a
        for s in drift["roles"]["delivery"]
        for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
    } - NOT_RUN
    assert delivery == FIREHOSE_S3_ACTIONS
    assert (
        unused_grants(
            drift["roles"]["delivery"], by_role["delivery"], ignore=NOT_RUN, per_resource=False
        )
        == []
    )


def test_each_role_is_refused_what_is_not_its_own(drift: dict[str, Any]) -> None:
    bucket, models = drift["log_bucket"], drift["cfg"].env.bucket_name
    job_s3, delivery = client(drift, "s3", "job"), client(drift, "s3", "delivery")
    refused: list[Any] = [
        # The job neither rewrites the log nor writes beside another model's reports...
        lambda: job_s3.put_object(Bucket=bucket, Key="predictions/wqi/2026/x", Body=b"{}"),
        lambda: job_s3.put_object(Bucket=bucket, Key="reports/potability/x/report.html", Body=b""),
        lambda: job_s3.delete_object(Bucket=bucket, Key="reports/wqi/x/report.html"),
        # ...nor lists outside its model's log, nor reads a release or another model's bundle.
        lambda: job_s3.list_objects_v2(Bucket=bucket, Prefix="reports/"),
        lambda: job_s3.list_objects_v2(Bucket=bucket, Prefix="predictions/potability/"),
        lambda: job_s3.get_object(Bucket=models, Key=drift["cfg"].release_key),
        lambda: job_s3.get_object(Bucket=models, Key="models/potability/model.joblib"),
        # Firehose writes its model's log prefixes only, deletes nothing, reads no model.
        lambda: delivery.put_object(Bucket=bucket, Key="reports/wqi/x/summary.json", Body=b"{}"),
        lambda: delivery.put_object(Bucket=bucket, Key="predictions/potability/x", Body=b""),
        lambda: delivery.delete_object(Bucket=bucket, Key="predictions/wqi/2026/x"),
        lambda: delivery.get_object(Bucket=models, Key=drift["cfg"].model_key),
    ]
    for call in refused:
        with pytest.raises(ClientError, match="AccessDenied"):
            call()
    # CloudWatch Logs' role puts into this stream only.
    with pytest.raises(ClientError, match="AccessDenied"):
        client(drift, "firehose", "subscription").put_record_batch(
            DeliveryStreamName="waterml-dev-potability-other", Records=[{"Data": b"x"}]
        )
