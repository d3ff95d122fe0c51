"""Log groups of this app's functions: named like Lambda's own, retained, with a retention."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_logs as logs
from constructs import Construct

from inference.contract import log_group
from waterml_infra.config import RETENTION_DAYS

_RETENTION = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    731: logs.RetentionDays.TWO_YEARS,
}
assert tuple(_RETENTION) == RETENTION_DAYS  # config validates against the same list


def function_log_group(
    scope: Construct, construct_id: str, function_name: str, retention_days: int
) -> logs.LogGroup:
    return logs.LogGroup(
        scope,
        construct_id,
        log_group_name=log_group(function_name),
        retention=_RETENTION[retention_days],
        removal_policy=RemovalPolicy.RETAIN,
    )
