"""The alarms of one model's function: which metric sees what, and at which threshold.

Rollback alarms (attached to the CodeDeploy deployment group, so an alarm during a rollout
returns `live` to the previous version) look at one-minute periods: a canary bakes for five
minutes, and a five-minute alarm would not have evaluated before traffic moved on.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from inference.contract import FAULT_METRIC, LIVE_ALIAS, METRIC_NAMESPACE, SERVICE_DIMENSION
from waterml_infra.config import ModelConfig

ROLLOUT_PERIOD = Duration.minutes(1)


def version_metric(
    cfg: ModelConfig, version: lambda_.IVersion, metric_name: str, statistic: str
) -> cloudwatch.Metric:
    """A Lambda metric of `version` as invoked through `live`.

    During a canary the alias routes 10 % to the new version: the alias's own metrics
    (Resource=function:live) mix both versions, so a new version failing every request shows
    as a 10 % error share, and its p99 hides under the old version's. Lambda also publishes
    per-alias metrics split by ExecutedVersion: with the version being deployed (a CloudFormation
    reference, resolved at deploy time) these see exactly the canary's traffic, and after the
    shift all of `live`'s traffic, so the same alarm keeps watching the serving version.
    """
    return cloudwatch.Metric(
        namespace="AWS/Lambda",
        metric_name=metric_name,
        dimensions_map={
            "FunctionName": cfg.function_name,
            "Resource": f"{cfg.function_name}:{LIVE_ALIAS}",
            "ExecutedVersion": version.version,
        },
        statistic=statistic,
        period=ROLLOUT_PERIOD,
    )


def inference_faults(cfg: ModelConfig, period: Duration) -> cloudwatch.Metric:
    """The handler's count of inference faults (EMF, `service` dimension only: both versions)."""
    return cloudwatch.Metric(
        namespace=METRIC_NAMESPACE,
        metric_name=FAULT_METRIC,
        dimensions_map={SERVICE_DIMENSION: cfg.service_name},
        statistic="Sum",
        period=period,
    )


def rollback_alarms(
    scope: Construct, cfg: ModelConfig, alias: lambda_.Alias, version: lambda_.IVersion
) -> dict[str, cloudwatch.Alarm]:
    live = f"{cfg.function_name}:{LIVE_ALIAS}"
    errors = version_metric(cfg, version, "Errors", "Sum")
    duration = version_metric(cfg, version, "Duration", "p99")
    # A throttled request never executes, so it carries no ExecutedVersion: throttles are
    # counted on the alias (a new version that needs more concurrency still shows here).
    throttles = alias.metric_throttles(period=ROLLOUT_PERIOD, statistic="Sum")
    # Model quality: the handler counts each inference fault (a 5xx answer of a proxy event,
    # which Lambda's Errors metric does not see, or a raised invocation) as an EMF metric with
    # only a `service` dimension, so it sums over both versions; divided by every invocation of
    # `live`, a version faulting on all of its 10 % canary share reads as a 10 % rate. Keep
    # inference_error_rate_percent below the canary share.
    faults = inference_faults(cfg, ROLLOUT_PERIOD)
    invocations = alias.metric_invocations(period=ROLLOUT_PERIOD, statistic="Sum")
    fault_rate = cloudwatch.MathExpression(
        expression="100 * FILL(faults, 0) / invocations",
        using_metrics={"faults": faults, "invocations": invocations},
        label="inference faults per 100 invocations",
        period=ROLLOUT_PERIOD,
    )
    return {
        "errors": alarm(
            scope, "ErrorsAlarm", f"the deployed version of {live} returned errors",
            errors, cfg.errors_threshold,
        ),
        "duration_p99": alarm(
            scope, "DurationP99Alarm", f"p99 duration of the deployed version of {live} is high",
            duration, cfg.p99_duration_threshold_ms, evaluation_periods=3, datapoints_to_alarm=2,
        ),
        "throttles": alarm(
            scope, "ThrottlesAlarm", f"{live} was throttled", throttles, cfg.throttles_threshold
        ),
        "inference_errors": alarm(
            scope, "InferenceErrorRateAlarm",
            f"{live}: inference faults above {cfg.inference_error_rate_percent}% of invocations",
            fault_rate, cfg.inference_error_rate_percent,
        ),
    }  # fmt: skip


def failure_queue_alarm(scope: Construct, cfg: ModelConfig, queue: sqs.IQueue) -> cloudwatch.Alarm:
    """Asynchronous invocations that failed after their retries. Not a rollback alarm: the
    queue keeps old messages, which would roll back every later deployment."""
    return alarm(
        scope,
        "AsyncFailuresAlarm",
        f"asynchronous invocations of {cfg.function_name} failed after retries",
        queue.metric_approximate_number_of_messages_visible(
            period=Duration.minutes(5), statistic="Maximum"
        ),
        1,
    )


def alarm(
    scope: Construct,
    construct_id: str,
    description: str,
    metric: cloudwatch.IMetric,
    threshold: float,
    evaluation_periods: int = 1,
    datapoints_to_alarm: int | None = None,
) -> cloudwatch.Alarm:
    """An alarm at or above ``threshold``; no data (no traffic) is not a breach."""
    return cloudwatch.Alarm(
        scope,
        construct_id,
        alarm_description=description,
        metric=metric,
        threshold=threshold,
        comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluation_periods=evaluation_periods,
        datapoints_to_alarm=datapoints_to_alarm,
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
    )
