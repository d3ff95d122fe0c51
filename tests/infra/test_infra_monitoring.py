"""Monitoring (issue 11 §2, §3): a dashboard per model, the out-of-domain and answer-mix alarms
on the handler's EMF metrics of the deployed version, the answer-mix alarm in prod's deployment
group, the prediction log's rate, and the training mix from the digest-checked bundle."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_cdk import Environment
from aws_cdk.assertions import Annotations, Match, Template
from synth_helpers import key_context, signature_fields
from waterml_infra.config import ConfigError, load_settings, resolve
from waterml_infra.training_mix import TrainingMix, TrainingMixError

from inference.observability import metric_text
from registry.manifest import Release, parse_release, stored_metadata

from .conftest import DIGEST, FLEET, RELEASE

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inference"))
import synthetic  # tests/inference/synthetic.py: bundles with a profile

VERSION = "7"
# One mix per model: bands, classes (JSON booleans), and a third model with three bands.
MIXES = {
    "wqi": TrainingMix(
        labels=("Excellent", "Good", "Fair", "Poor", "Very Poor"),
        shares=(0.2, 0.65, 0.14, 0.01, 0.0),
        features=("pH", "turbidity", "tds", "temperature", "hour_of_day"),
    ),
    "potability": TrainingMix(
        labels=(False, True), shares=(0.61, 0.39), features=("ph", "Hardness", "Sulfate")
    ),
    "third_test_model": TrainingMix(
        labels=("High", "Low", "Medium"), shares=(0.3, 0.3, 0.4), features=("x",)
    ),
}


def release(cfg: Any, version: str = VERSION) -> Release:
    return Release(name=cfg.name, mlflow_version=version, bucket=cfg.env.bucket_name,
                   key=cfg.model_key, version_id="v-" + cfg.name, sha256="5" * 64, git_sha="",
                   released_at="", extra=signature_fields(cfg.name))  # fmt: skip


def serving(overrides: dict[str, Any] | None = None, *, topic: bool = False) -> dict:
    """Every (env, model) serving stack of three models, each deployed with its release and
    training mix, as deploy_context gives them."""
    from waterml_infra.app import make_app
    from waterml_infra.stacks.serving import ServingStack

    app = make_app({"nag": "false"})
    settings = load_settings()
    out = {}
    for env in ("dev", "prod"):
        extra = {"models": FLEET, **(overrides or {})}
        if topic:
            extra["alarm_topic_arn"] = "arn:aws:sns:eu-west-1:111111111111:paging"
        cfg = resolve(settings, env, overrides=extra)
        for model in FLEET:
            model_cfg = cfg.model(model)
            out[(env, model)] = ServingStack(
                app, model_cfg.stack_name, config=model_cfg, image_digest=DIGEST,
                release=release(model_cfg), training=MIXES[model],
                env=Environment(account=cfg.account, region=cfg.region),
            )  # fmt: skip
    return out


@pytest.fixture(scope="module")
def stacks() -> dict:
    return serving(topic=True)


@pytest.fixture(scope="module")
def fleet(stacks) -> dict[tuple[str, str], Template]:
    return {key: Template.from_stack(stack) for key, stack in stacks.items()}


def alarm(t: Template, construct_id: str) -> tuple[str, dict]:
    found = {k: v for k, v in t.find_resources("AWS::CloudWatch::Alarm").items()
             if k.startswith(f"Monitoring{construct_id}")}  # fmt: skip
    assert len(found) == 1, list(found)
    logical_id, resource = next(iter(found.items()))
    return logical_id, resource["Properties"]


def metric_stats(props: dict) -> dict[str, dict]:
    """The alarm's metrics by id: namespace, name and dimensions."""
    out = {}
    for query in props["Metrics"]:
        if "MetricStat" in query:
            metric = query["MetricStat"]["Metric"]
            out[query["Id"]] = {
                "namespace": metric["Namespace"],
                "name": metric["MetricName"],
                "dimensions": {d["Name"]: d["Value"] for d in metric["Dimensions"]},
                "stat": query["MetricStat"]["Stat"],
                "period": query["MetricStat"]["Period"],
            }
    return out


def expression(props: dict) -> str:
    (expr,) = [q for q in props["Metrics"] if q.get("ReturnData", True) and "Expression" in q]
    return str(expr["Expression"])


def evaluate(text: str, values: dict[str, float | None]) -> float:
    """A CloudWatch metric-math expression of this module's vocabulary on one period's values
    (None: no data point in the period)."""
    names = {
        "IF": lambda cond, yes, no: yes if cond else no,
        "ABS": abs,
        "FILL": lambda value, fill: fill if value is None else value,
    }
    return float(eval(text, {"__builtins__": {}}, {**names, **values}))


def deployment_group_alarms(t: Template) -> set[str]:
    (group,) = t.find_resources("AWS::CodeDeploy::DeploymentGroup").values()
    return {a["Name"]["Ref"] for a in group["Properties"]["AlarmConfiguration"]["Alarms"]}


# The dashboard -----------------------------------------------------------------------------
@pytest.mark.parametrize("env", ["dev", "prod"])
@pytest.mark.parametrize("model", FLEET)
def test_a_dashboard_per_model_and_environment(fleet, env, model):
    t = fleet[(env, model)]
    (dashboard,) = t.find_resources("AWS::CloudWatch::Dashboard").values()
    assert dashboard["Properties"]["DashboardName"] == f"waterml-{env}-{model}"
    body = json.loads("".join(
        part if isinstance(part, str) else "REF" for part in
        dashboard["Properties"]["DashboardBody"]["Fn::Join"][1]
    ))  # fmt: skip
    titles = [w["properties"].get("title") for w in body["widgets"]]
    assert titles[1:] == [
        "Traffic", "Errors", "Latency (ms)", "Out of domain (% of readings)",
        "Answer mix (% of readings)", "Answer mix distance from training",
        "Mean confidence (per invocation)",
    ]  # fmt: skip
    text = json.dumps(body, separators=(",", ":"))
    # Traffic and errors of the alias, latency p50/p99, the EMF metrics of the deployed version.
    for needle in ('"Invocations"', '"Errors"', '"Throttles"', '"InferenceError"', '"p50"',
                   '"p99"', '"Readings"', '"ReadingsOutOfDomain"', '"MeanConfidence"'):  # fmt: skip
        assert needle in text, needle
    mix = MIXES[model]
    for feature in mix.features:
        assert f'"OutOfDomain.{feature}"' in text
    for label, share in zip(mix.labels, mix.shares, strict=True):
        assert f'"Answer.{metric_text(label)}"' in text
        assert f"{metric_text(label)} % (training {share:.1%})" in text
    assert f'"model_version","{VERSION}"' in text
    # Every version's readings (a canary's split) by a search over the model's versions.
    assert f'model=\\"{model}\\" MetricName=\\"Readings\\"' in text


# Out of domain ----------------------------------------------------------------------------
@pytest.mark.parametrize("env", ["dev", "prod"])
@pytest.mark.parametrize("model", FLEET)
def test_out_of_domain_alarm_is_sustained_gated_and_of_the_deployed_version(fleet, env, model):
    t = fleet[(env, model)]
    logical_id, props = alarm(t, "OutOfDomainAlarm")
    stats = metric_stats(props)
    assert {k: v["name"] for k, v in stats.items()} == {
        "outside": "ReadingsOutOfDomain", "readings": "Readings"}  # fmt: skip
    for stat in stats.values():
        # Exactly the handler's dimension set; the version is the release's MLflow version.
        assert stat["namespace"] == "WaterML"
        assert stat["dimensions"] == {"model": model, "model_version": VERSION}
        assert stat["stat"] == "Sum" and stat["period"] == 300
    assert props["Threshold"] == 20
    assert props["EvaluationPeriods"] == 3 and props.get("DatapointsToAlarm", 3) == 3
    assert props["TreatMissingData"] == "notBreaching"
    assert props["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    expr = expression(props)
    assert evaluate(expr, {"readings": 1000, "outside": 250}) == 25.0
    assert evaluate(expr, {"readings": 1000, "outside": None}) == 0.0  # no reading outside
    assert evaluate(expr, {"readings": 3, "outside": 3}) == 0.0  # one odd device does not page
    # It measures the traffic: it notifies, never rolls a deployment back.
    assert logical_id not in deployment_group_alarms(t)
    assert props["AlarmActions"] == ["arn:aws:sns:eu-west-1:111111111111:paging"]
    assert "traffic, not the model" in props["AlarmDescription"]


# Answer mix -------------------------------------------------------------------------------
@pytest.mark.parametrize("env", ["dev", "prod"])
@pytest.mark.parametrize("model", FLEET)
def test_answer_mix_alarm_is_the_total_variation_distance_from_training(fleet, env, model):
    t = fleet[(env, model)]
    logical_id, props = alarm(t, "AnswerMixAlarm")
    mix = MIXES[model]
    stats = metric_stats(props)
    answers = {f"a{i}": "Answer." + metric_text(label) for i, label in enumerate(mix.labels)}
    assert {k: v["name"] for k, v in stats.items()} == {**answers, "readings": "Readings"}
    assert all(s["dimensions"] == {"model": model, "model_version": VERSION}
               for s in stats.values())  # fmt: skip
    assert props["Threshold"] == 0.25 and props["EvaluationPeriods"] == 1
    assert props["TreatMissingData"] == "notBreaching"
    assert props["AlarmActions"] == ["arn:aws:sns:eu-west-1:111111111111:paging"]
    expr = expression(props)
    n = 1000
    # Answers in the training mix: distance 0 (a label without answers has no data point).
    same = {f"a{i}": (share * n or None) for i, share in enumerate(mix.shares)}
    assert evaluate(expr, {**same, "readings": n}) == pytest.approx(0.0, abs=1e-5)
    # Every answer the first label: the distance is 1 - its training share.
    first = {f"a{i}": (n if i == 0 else None) for i in range(len(mix.labels))}
    assert evaluate(expr, {**first, "readings": n}) == pytest.approx(1 - mix.shares[0], abs=1e-5)
    # Below the minimum traffic no verdict, however odd the answers.
    assert evaluate(expr, {**first, "readings": 50}) == 0.0
    # Rolls back where the environment says so (prod), notifies everywhere.
    in_group = logical_id in deployment_group_alarms(t)
    assert in_group is (env == "prod")


def test_answer_mix_rollback_is_a_setting(stacks):
    switched = serving({"answer_mix_rollback": "false"})
    t = Template.from_stack(switched[("prod", "wqi")])
    logical_id, _ = alarm(t, "AnswerMixAlarm")
    assert logical_id not in deployment_group_alarms(t)
    # The fleet's own rollback alarms stay: the errors, duration, throttles and fault rate.
    assert len(deployment_group_alarms(t)) == 4
    assert (
        stacks[("prod", "wqi")].rollback_alarms[-1] is stacks[("prod", "wqi")].monitoring.answer_mix
    )


def test_a_canary_is_judged_on_its_own_version():
    """Another release version, other dimensions: the previous version's answers never count."""
    from waterml_infra.app import make_app
    from waterml_infra.stacks.serving import ServingStack

    cfg = resolve(load_settings(), "prod").model("wqi")
    stack = ServingStack(make_app({"nag": "false"}), cfg.stack_name, config=cfg,
                         image_digest=DIGEST, release=release(cfg, "12"),
                         training=MIXES["wqi"])  # fmt: skip
    t = Template.from_stack(stack)
    for construct_id in ("OutOfDomainAlarm", "AnswerMixAlarm"):
        _, props = alarm(t, construct_id)
        versions = {s["dimensions"]["model_version"] for s in metric_stats(props).values()}
        assert versions == {"12"}


# The metrics the alarms read are the ones the handler writes --------------------------------
def test_alarm_dimensions_and_names_match_a_real_handler_document(capfd, tmp_path):
    """The handler with a profiled bundle, model version 7: its EMF document (Powertools'
    serializer) has exactly the alarms' dimension set (no `service`) and their metric names."""
    from serving_helpers import context, local_config

    from inference import handler

    bundle = synthetic.wqi_profiled_bundle()
    data = synthetic.dumps(bundle)
    cache = tmp_path / "cache"
    cache.mkdir()
    handler.reset()
    try:
        handler.init(local_config(data, cache, model_version=VERSION))
        capfd.readouterr()
        events = Path(__file__).resolve().parents[2] / "inference" / "events"
        handler.lambda_handler(json.loads((events / "freshwater.json").read_text()), context())
        handler.lambda_handler(json.loads((events / "batch.json").read_text()), context())
        out = capfd.readouterr().out
    finally:
        handler.reset()
    docs = [
        json.loads(x) for x in out.splitlines() if x.startswith('{"_aws"') and '"Readings"' in x
    ]
    assert docs
    mix = TrainingMix.from_bundle(bundle)
    assert mix is not None
    cfg = resolve(load_settings(), "prod").model("wqi")
    from waterml_infra.app import make_app
    from waterml_infra.stacks.serving import ServingStack

    t = Template.from_stack(ServingStack(
        make_app({"nag": "false"}), cfg.stack_name, config=cfg, image_digest=DIGEST,
        release=release(cfg), training=mix))  # fmt: skip
    names: set[str] = set()
    for construct_id in ("OutOfDomainAlarm", "AnswerMixAlarm"):
        _, props = alarm(t, construct_id)
        for stat in metric_stats(props).values():
            names.add(stat["name"])
            for doc in docs:
                (directive,) = doc["_aws"]["CloudWatchMetrics"]
                assert directive["Namespace"] == stat["namespace"]
                assert directive["Dimensions"] == [sorted(stat["dimensions"])]
                assert {k: doc[k] for k in stat["dimensions"]} == stat["dimensions"]
    written = {m["Name"] for d in docs for m in d["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    # Every answer and out-of-domain count the handler wrote is one the alarms read.
    assert {n for n in written if n.startswith(("Answer.", "Readings"))} <= names
    assert "ReadingsOutOfDomain" in written  # the freshwater reading: outside


# The prediction log -------------------------------------------------------------------------
def test_prediction_log_rate_per_environment_and_model(fleet):
    def rate(env: str, model: str) -> str:
        (fn,) = (
            fleet[(env, model)]
            .find_resources(
                "AWS::Lambda::Function", {"Properties": {"FunctionName": f"waterml-{env}-{model}"}}
            )
            .values()
        )
        return str(fn["Properties"]["Environment"]["Variables"]["PREDICTION_LOG_RATE"])

    assert {rate("dev", m) for m in FLEET} == {"0.1"}
    assert {rate("prod", m) for m in FLEET} == {"0.01"}
    # Every model's log goes to S3 for its drift job (constructs/drift_job.py) ...
    for stack in fleet.values():
        stack.resource_count_is("AWS::KinesisFirehose::DeliveryStream", 1)
    # ... so a model without a log needs its drift job off too: the log alone is refused.
    with pytest.raises(ConfigError, match="model 'potability': a drift job needs a prediction"):
        serving({"model_settings": json.dumps({"potability": {"prediction_log_rate": 0}})})
    off = serving({"model_settings": json.dumps(
        {"potability": {"prediction_log_rate": 0, "drift_schedule_hours": 0}})})  # fmt: skip
    potability = Template.from_stack(off[("prod", "potability")])
    (fn,) = potability.find_resources(
        "AWS::Lambda::Function", {"Properties": {"FunctionName": "waterml-prod-potability"}}
    ).values()
    assert fn["Properties"]["Environment"]["Variables"]["PREDICTION_LOG_RATE"] == "0"
    potability.resource_count_is("AWS::KinesisFirehose::DeliveryStream", 0)
    Template.from_stack(off[("prod", "wqi")]).resource_count_is(
        "AWS::KinesisFirehose::DeliveryStream", 1
    )


# Settings -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("prediction_log_rate", "1.5", "prediction_log_rate must be within 0..1"),
        ("prediction_log_rate", "-0.01", "prediction_log_rate must be within 0..1"),
        ("prediction_log_rate", "nan", "prediction_log_rate must be within 0..1"),
        ("answer_mix_distance", "0", "answer_mix_distance must be within"),
        ("out_of_domain_rate_percent", "120", "out_of_domain_rate_percent must be within"),
        ("out_of_domain_periods", "0", "out_of_domain_periods must be at least 1"),
        ("out_of_domain_periods", "300", "span at most a day"),
        ("monitoring_period_minutes", "0", "monitoring_period_minutes must be within"),
        ("monitoring_min_readings", "0", "monitoring_min_readings must be at least 1"),
        ("answer_mix_rollback", "sometimes", "answer_mix_rollback must be true or false"),
        ("drift_schedule_hours", "-1", "drift_schedule_hours must be within 0..168"),
        ("drift_window_days", "91", "drift_window_days must be within 1..90"),
    ],
)
def test_monitoring_settings_are_validated(key, value, message):
    with pytest.raises(ConfigError, match=message):
        resolve(load_settings(), "dev", overrides={key: value})
    # Per model too.
    with pytest.raises(ConfigError, match=message):
        resolve(load_settings(), "dev", overrides={"model_settings": {"wqi": {key: value}}})


def test_cdk_json_defaults():
    dev, prod = (resolve(load_settings(), env) for env in ("dev", "prod"))
    assert (dev.answer_mix_rollback, prod.answer_mix_rollback) == (False, True)
    assert (dev.prediction_log_rate, prod.prediction_log_rate) == (0.1, 0.01)
    assert prod.answer_mix_distance == 0.25 and prod.out_of_domain_rate_percent == 20


# The training mix: from the bundle, through the deploy's context, to the stack ------------
def test_training_mix_is_validated():
    with pytest.raises(TrainingMixError, match="sum to"):
        TrainingMix(labels=("a", "b"), shares=(0.5, 0.6), features=())
    with pytest.raises(TrainingMixError, match="one share per label"):
        TrainingMix(labels=("a", "b"), shares=(1.0,), features=())
    with pytest.raises(TrainingMixError, match="not a training profile"):
        TrainingMix.from_context("{nope")
    assert (
        TrainingMix.from_context(json.dumps(MIXES["potability"].to_context()))
        == (MIXES["potability"])
    )
    assert TrainingMix.from_bundle({"profile": None}) is None


def test_the_app_takes_the_mix_from_deploy_context_and_synthesizes_without_it(default_app):
    from waterml_infra.app import build, make_app
    from waterml_infra.ci.deploy_context import context_args

    args = context_args("prod", DIGEST, parse_release(RELEASE | {
        "bucket": "waterml-prod-models-111111111111-eu-west-1"}), MIXES["wqi"])  # fmt: skip
    app = make_app({**dict(a.split("=", 1) for a in args[1::2]), "nag": "false",
                    **key_context("prod")})  # fmt: skip
    t = Template.from_stack(build(app)["prod"].serving["wqi"])
    logical_id, props = alarm(t, "AnswerMixAlarm")
    assert logical_id in deployment_group_alarms(t)
    assert {s["dimensions"]["model_version"] for s in metric_stats(props).values()} == {"3"}
    # The placeholder release of an offline synth: no mix, no answer-mix alarm, a warning.
    _, placeholder = default_app
    stack = placeholder["prod"].serving["wqi"]
    t = Template.from_stack(stack)
    assert not [k for k in t.find_resources("AWS::CloudWatch::Alarm") if "AnswerMix" in k]
    alarm(t, "OutOfDomainAlarm")
    Annotations.from_stack(stack).has_warning("*", Match.string_like_regexp("no answer-mix alarm"))
    # A mix without a release would describe nothing.
    with pytest.raises(ValueError, match="trainingProfile describes a release"):
        build(make_app({"nag": "false", "env": "dev", "model": "wqi",
                        "trainingProfile": json.dumps(MIXES["wqi"].to_context())}))  # fmt: skip


def test_deploy_context_reads_the_mix_from_the_released_bundle_by_version(s3_env, capsys):
    """Real S3 (loopback): the released bundle by VersionId, digest-checked before it is read."""
    from waterml_infra.ci import deploy_context

    from inference.bundle import sha256_hex

    s3 = boto3.client("s3", endpoint_url=s3_env["endpoint"])
    bucket = s3_env["bucket"]
    bundle = synthetic.wqi_profiled_bundle()
    data = synthetic.dumps(bundle)

    def put_release(body: bytes, sha: str) -> None:
        version = s3.put_object(Bucket=bucket, Key="models/wqi/model.joblib", Body=body)
        manifest = json.dumps(RELEASE | {"bucket": bucket, "sha256": sha,
                                         "version_id": version["VersionId"]}).encode()  # fmt: skip
        s3.put_object(Bucket=bucket, Key="models/wqi/release.json", Body=manifest,
                      Metadata=stored_metadata(manifest))  # fmt: skip

    args = ["--env", "dev", "--model", "wqi", "--image-digest", DIGEST, "--bucket", bucket]
    put_release(data, sha256_hex(data))
    assert deploy_context.main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    pairs = dict(a.split("=", 1) for a in lines[1::2])
    mix = TrainingMix.from_context(pairs["trainingProfile"])
    assert mix == TrainingMix.from_bundle(bundle)
    assert mix.labels == tuple(bundle["profile"]["outputs"]["labels"])
    # A later upload of other bytes under the same key changes nothing: the release's version.
    s3.put_object(Bucket=bucket, Key="models/wqi/model.joblib", Body=b"not a bundle")
    assert deploy_context.main(args) == 0
    capsys.readouterr()
    # Bytes that are not the released digest are refused before they are read.
    put_release(data, "6" * 64)
    assert deploy_context.main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and "sha" in err.lower()
    # A bundle without a profile: no mix, a warning, still a deploy.
    plain = synthetic.dumps(synthetic.wqi_bundle())
    put_release(plain, sha256_hex(plain))
    assert deploy_context.main(args) == 0
    captured = capsys.readouterr()
    assert "trainingProfile" not in captured.out and "no answer-mix alarm" in captured.err


def test_deploy_context_with_a_local_bundle(tmp_path, capsys):
    from waterml_infra.ci import deploy_context

    from inference.bundle import sha256_hex

    data = synthetic.dumps(synthetic.wqi_profiled_bundle())
    bundle = tmp_path / "model.joblib"
    bundle.write_bytes(data)
    manifest = tmp_path / "release.json"
    manifest.write_text(json.dumps(RELEASE | {"sha256": sha256_hex(data)}))
    args = ["--env", "dev", "--model", "wqi", "--image-digest", DIGEST,
            "--manifest", str(manifest), "--bundle", str(bundle)]  # fmt: skip
    assert deploy_context.main(args) == 0
    assert any(x.startswith("trainingProfile=") for x in capsys.readouterr().out.splitlines())
    manifest.write_text(json.dumps(RELEASE))  # another digest
    assert deploy_context.main(args) == 1
    assert "Traceback" not in capsys.readouterr().err
    assert math.isclose(sum(MIXES["wqi"].shares), 1.0)
