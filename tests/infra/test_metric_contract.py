"""The metric contract, both sides run: every metric (namespace, name, dimensions and their
values) that an alarm or a dashboard widget of the synthesized serving stack reads is one the
real handler emits, configured by that very stack's function environment.

The handler runs in its own process with the template's `Environment.Variables` (so its
`service` dimension is what infra set) against the loopback S3 holding the release, through
a success, a reading outside the domain, an invalid request and a fault; its EMF documents
are its stdout lines. Before inference/contract.py the handler counted faults as
`INFERENCE_ERROR` while the rollback alarm read `InferenceError`: this test failed on that.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import synthetic
from synth_helpers import OUTSIDE, functions, released_bundle, serving_template

from inference.bundle import sha256_hex
from inference.contract import FAULT_METRIC, METRIC_NAMESPACE
from tools import local_s3

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration
Metric = tuple[str, str, frozenset[tuple[str, str]]]  # namespace, name, {(dimension, value)}

# Runs inside the handler's process: the events in argv[1], one answer per line to argv[2].
# The fault is the predictor failing (what a broken model or runtime does); the metric path
# that counts it is the handler's own.
DRIVER = """
import json, sys, types
from inference import handler
events = json.loads(open(sys.argv[1]).read())
context = types.SimpleNamespace(aws_request_id="req", function_name="fn")
with open(sys.argv[2], "w") as out:
    for name, event in events:
        if name == "fault":
            def broken(*args, **kwargs):
                raise RuntimeError("the model failed")
            handler._service.predictor.answered = broken
        try:
            answer = handler.lambda_handler(event, context)
        except Exception as exc:
            answer = {"raised": type(exc).__name__}
        out.write(json.dumps([name, answer]) + "\\n")
    metrics = handler._service.metrics
    out.write(json.dumps(["names", {"labels": metrics.labels, "features": metrics.features}]))
"""


def _join(value: Any) -> str:
    """A template string (a Fn::Join of literals and references) with each reference as "?"."""
    if isinstance(value, str):
        return value
    parts = value["Fn::Join"][1]
    return "".join(p if isinstance(p, str) else "?" for p in parts)


def read_metrics(template: dict[str, Any]) -> set[Metric]:
    """Every metric in METRIC_NAMESPACE that an alarm or a dashboard widget of the template
    reads (metric math inputs and SEARCH expressions included)."""
    found: set[Metric] = set()

    def add(namespace: str, name: str, dims: dict[str, str]) -> None:
        if namespace == METRIC_NAMESPACE:
            found.add((namespace, name, frozenset(dims.items())))

    for resource in template["Resources"].values():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::CloudWatch::Alarm":
            stats = [
                m["MetricStat"]["Metric"] for m in props.get("Metrics", []) if "MetricStat" in m
            ]
            if "MetricName" in props:
                stats.append(props)
            for m in stats:
                dims = {d["Name"]: d["Value"] for d in m.get("Dimensions", [])}
                add(m["Namespace"], m["MetricName"], dims)
        elif resource["Type"] == "AWS::CloudWatch::Dashboard":
            body = json.loads(_join(props["DashboardBody"]))
            for widget in body["widgets"]:
                for row in widget.get("properties", {}).get("metrics", []):
                    if isinstance(row[0], dict):  # an expression
                        for match in re.finditer(
                            r"SEARCH\('\{(\w+),([\w,]+)\} ((?:\w+=\"[^\"]*\" )*)MetricName="
                            r"\"([^\"]+)\"",
                            row[0].get("expression", ""),
                        ):
                            namespace, names, filters, metric = match.groups()
                            values = dict(re.findall(r"(\w+)=\"([^\"]*)\"", filters))
                            # A SEARCH reads every value of the unfiltered dimensions.
                            add(
                                namespace, metric, {n: values.get(n, "*") for n in names.split(",")}
                            )
                        continue
                    plain = [x for x in row if not isinstance(x, dict)]
                    namespace, name, rest = plain[0], plain[1], plain[2:]
                    add(namespace, name, dict(zip(rest[::2], rest[1::2], strict=True)))
    return found


def emitted(stdout: str) -> set[Metric]:
    """Every metric of every EMF document the handler printed."""
    found: set[Metric] = set()
    for line in stdout.splitlines():
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        doc = json.loads(line)
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            for dims in directive["Dimensions"]:
                values = frozenset((d, str(doc[d])) for d in dims)
                for metric in directive["Metrics"]:
                    found.add((directive["Namespace"], metric["Name"], values))
    return found


@pytest.fixture
def released(s3_endpoint: str) -> dict[str, Any]:
    """The profiled synthetic wqi bundle in the dev bucket of the loopback S3, as a release."""
    import boto3
    from waterml_infra.config import load_settings, resolve

    from registry.manifest import Release

    cfg = resolve(load_settings(), "dev").model("wqi")
    local_s3.ensure_bucket(s3_endpoint, cfg.env.bucket_name)
    bundle = released_bundle()
    data = synthetic.dumps(bundle)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, **local_s3._client_credentials())
    version = s3.put_object(Bucket=cfg.env.bucket_name, Key=cfg.model_key, Body=data)["VersionId"]
    release = Release(name="wqi", mlflow_version="3", bucket=cfg.env.bucket_name,
                      key=cfg.model_key, version_id=version, sha256=sha256_hex(data),
                      git_sha="", released_at="")  # fmt: skip
    return {"bundle": bundle, "release": release, "function": cfg.function_name}


def run_handler(env: dict[str, str], events: list[tuple[str, Any]], tmp: Path) -> tuple[str, dict]:
    (tmp / "events.json").write_text(json.dumps(events))
    result = subprocess.run(
        [sys.executable, "-c", DRIVER, str(tmp / "events.json"), str(tmp / "answers.jsonl")],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    answers = dict(json.loads(line) for line in (tmp / "answers.jsonl").read_text().splitlines())
    return result.stdout, answers


def test_every_metric_an_alarm_or_widget_reads_is_one_the_handler_emits(
    released: dict[str, Any], s3_endpoint: str, tmp_path: Path
) -> None:
    template = serving_template("dev", released["release"], released["bundle"])
    function = functions(template)[released["function"]]
    env = {
        "PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), "MODEL_CACHE_DIR": str(tmp_path),
        **local_s3.LOCAL_ENV, "AWS_ENDPOINT_URL_S3": s3_endpoint,
        **function["Environment"]["Variables"],  # exactly what infra sets
    }  # fmt: skip
    inside = {"deviceId": "a", "readings": synthetic.GOOD_READING}
    outside = OUTSIDE
    http = {"httpMethod": "POST", "path": "/p", "headers": {}, "isBase64Encoded": False,
            "requestContext": {"httpMethod": "POST"}, "body": json.dumps(inside)}  # fmt: skip
    stdout, answers = run_handler(env, [
        ("success", inside), ("outside", outside), ("invalid", {"readings": {"pH": "acid"}}),
        ("fault", http),
    ], tmp_path)  # fmt: skip
    assert answers["success"]["prediction"]["domain"]["inside"] is True
    assert answers["outside"]["prediction"]["domain"]["outside"] == ["tds"]
    assert answers["invalid"]["statusCode"] == 400
    assert answers["fault"]["statusCode"] == 500

    have = emitted(stdout)
    wanted = read_metrics(template)
    fault = (METRIC_NAMESPACE, FAULT_METRIC, frozenset({("service", released["function"])}))
    assert fault in wanted, "the rollback alarm reads the handler's fault count"
    assert fault in have, f"the handler counts faults otherwise: {sorted(have)}"
    # A metric per answer label or per feature appears only when such an answer is given:
    # those this run did not produce must be among the names the loaded handler writes, with
    # the dimensions of the ones it did write.
    names = answers["names"]
    declared = {*names["labels"], *names["features"]}
    model_dims = {dims for _, name, dims in have if name in declared}
    assert len(model_dims) == 1, model_dims  # one dimension set, the release's
    missing = [
        metric for metric in wanted
        if metric not in have
        and not (metric[1] in declared and metric[2] in model_dims)
        and not any(v == "*" for _, v in metric[2])
    ]  # fmt: skip
    assert missing == [], f"read but never emitted: {missing}"
    # The SEARCH over versions reads what the handler writes, whatever the version.
    searched = [m for m in wanted if any(v == "*" for _, v in m[2])]
    assert searched and all(
        any(h[1] == s[1] and {d for d, _ in h[2]} == {d for d, _ in s[2]} for h in have)
        for s in searched
    ), searched


def test_every_variable_infra_sets_is_one_the_image_reads(templates):
    """The function's and the hook's environment, as synthesized, against the names the
    handler (config.from_env, Powertools) and the hook (pretraffic.SETTINGS) read."""
    from inference import contract, pretraffic
    from inference.config import REQUIRED
    from inference.release import PINS

    serving = templates["pinned-serving"].to_json()
    functions = {
        r["Properties"]["FunctionName"]: set(r["Properties"]["Environment"]["Variables"])
        for r in serving["Resources"].values()
        if r["Type"] == "AWS::Lambda::Function"
    }
    read_by_handler = {name for _, name in PINS} | {
        contract.LOG_LEVEL, contract.SERVICE_NAME, contract.PREDICTION_LOG_RATE,
    }  # fmt: skip
    assert set(REQUIRED) <= functions["waterml-dev-wqi"] <= read_by_handler
    assert functions["waterml-dev-wqi-pretraffic"] == {
        *pretraffic.SETTINGS, contract.LOG_LEVEL, contract.SERVICE_NAME,
    }  # fmt: skip
