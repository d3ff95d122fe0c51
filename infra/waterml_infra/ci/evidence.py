"""Did a rollout's version serve anything? Its own invocations through `live`, from CloudWatch.

A canary whose new version saw no traffic passes CodeDeploy's alarms silently: an alarm with
no data does not fire. So what counts as evidence is set per environment
(`rollout_evidence_invocations` in cdk.json: 0 in dev, whose all-at-once rollout has no canary;
prod asks for a number), and `status` reports a live version that served fewer invocations
since it was published as UNOBSERVED (exit 6), which fails the deploy job.

The count is Lambda's own `Invocations` metric of the version as invoked through the alias
(dimensions FunctionName, Resource=<function>:live, ExecutedVersion=<version>, the ones the
rollback alarms read), summed from the version's publication (its LastModified) until now.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from inference.contract import LIVE_ALIAS

MAX_POINTS = 1440  # CloudWatch returns at most 1,440 datapoints per call


def published_at(configuration: Any) -> dt.datetime:
    """A version's publication time (GetFunctionConfiguration's LastModified)."""
    text = str(configuration["LastModified"]).replace("+0000", "+00:00")
    return dt.datetime.fromisoformat(text)


def invocations(cloudwatch: Any, function: str, version: str, since: dt.datetime,
                now: dt.datetime | None = None) -> int:  # fmt: skip
    """How many times ``version`` of ``function`` ran through `live` between ``since`` and
    ``now``."""
    now = now or dt.datetime.now(dt.UTC)
    span = max((now - since).total_seconds(), 60.0)
    period = 60 * max(1, int(span // (60 * MAX_POINTS)) + 1)  # a multiple of 60 s
    answer = cloudwatch.get_metric_statistics(
        Namespace="AWS/Lambda", MetricName="Invocations", StartTime=since, EndTime=now,
        Period=period, Statistics=["Sum"], Dimensions=[
            {"Name": "FunctionName", "Value": function},
            {"Name": "Resource", "Value": f"{function}:{LIVE_ALIAS}"},
            {"Name": "ExecutedVersion", "Value": version},
        ],
    )  # fmt: skip
    return int(sum(point["Sum"] for point in answer.get("Datapoints", [])))
