"""What an operator watches of one model in one environment: a CloudWatch dashboard
(`<project>-<env>-<model>`) and two model alarms, on the handler's per-invocation EMF metrics
(inference/observability.py: namespace WaterML, dimensions exactly `model` + `model_version`).

The alarms read the metrics of the version being deployed (`model_version` = the release's
MLflow version), so during a canary the new version is judged on its own answers only:

- out of domain: readings outside the training domain per 100 readings, above
  `out_of_domain_rate_percent` for `out_of_domain_periods` periods in a row. It measures the
  traffic (fresh-water devices sending to an estuarine model), not the model: it notifies and
  never rolls back, since the previous version would face the same readings.
- answer mix: the total variation distance 0.5 * sum |p_live - p_train| between the shares of
  the answers (bands or classes) of one period and the training mix (the bundle's
  `profile.outputs.shares`, waterml_infra.training_mix), above `answer_mix_distance`. It is a
  rollback alarm of the deployment group where `answer_mix_rollback` is set (prod).

A period with fewer than `monitoring_min_readings` readings counts as no breach (a few odd
readings do not page), and so does a period without any (no traffic).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import Annotations, Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from inference.contract import METRIC_NAMESPACE, MODEL_DIMENSION, MODEL_VERSION_DIMENSION
from inference.observability import (
    ANSWER_PREFIX,
    FEATURE_PREFIX,
    MEAN_CONFIDENCE,
    OUT_OF_DOMAIN,
    READINGS,
    UNVERSIONED,
    metric_text,
)
from waterml_infra.config import ConfigError, ModelConfig
from waterml_infra.constructs.alarms import alarm, inference_faults
from waterml_infra.training_mix import CONTEXT_KEY, TrainingMix

# CloudWatch accepts at most 10 metrics (besides expressions) in one alarm's metric math: the
# answer-mix alarm needs one per label and Readings.
ALARM_METRICS_MAX = 10


def model_version(release_version: str) -> str:
    """The `model_version` dimension the handler gives a release's answers."""
    return release_version or UNVERSIONED


def _gated(value: str, min_readings: int | None) -> str:
    """The alarm's form: 0 (no breach) for a period below the minimum traffic; the
    dashboard's form (None): the value of any period with readings."""
    return value if min_readings is None else f"IF(readings >= {min_readings}, {value}, 0)"


def out_of_domain_expression(min_readings: int | None) -> str:
    return _gated("100 * FILL(outside, 0) / readings", min_readings)


def answer_mix_expression(shares: Sequence[float], min_readings: int | None) -> str:
    """0.5 * sum over labels of |answers_i / readings - share_i|; a label without answers in
    the period (no data point) counts 0."""
    terms = " + ".join(
        f"ABS(FILL(a{i}, 0) / readings - {share:.6f})" for i, share in enumerate(shares)
    )
    return _gated(f"0.5 * ({terms})", min_readings)


class ModelMonitoring(Construct):
    """The dashboard and the two model alarms of one model's function."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: ModelConfig,
        alias: lambda_.Alias,
        release_version: str,
        training: TrainingMix | None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.config = cfg = config
        self.model_version = model_version(release_version)
        self.training = training
        self.period = Duration.minutes(cfg.monitoring_period_minutes)
        self.readings = self.metric(READINGS)
        self.out_of_domain = alarm(
            self,
            "OutOfDomainAlarm",
            f"{cfg.function_name} v{self.model_version}: more than "
            f"{cfg.out_of_domain_rate_percent:g}% of readings outside the training domain for "
            f"{cfg.out_of_domain_periods} x {cfg.monitoring_period_minutes} min. It measures the "
            "traffic, not the model: check the devices and the water they measure.",
            self.out_of_domain_rate(),
            cfg.out_of_domain_rate_percent,
            evaluation_periods=cfg.out_of_domain_periods,
        )
        self.answer_mix: cloudwatch.Alarm | None = None
        if training is None:
            Annotations.of(self).add_warning_v2(
                "waterml:noTrainingMix",
                f"no {CONTEXT_KEY} given (offline synth, or a bundle without a profile): "
                f"{cfg.function_name} has no answer-mix alarm",
            )
        else:
            if len(training.labels) + 1 > ALARM_METRICS_MAX:
                raise ConfigError(
                    f"{cfg.name} has {len(training.labels)} labels: an alarm's metric math "
                    f"takes at most {ALARM_METRICS_MAX} metrics (one per label and Readings)"
                )
            self.answer_mix = alarm(
                self,
                "AnswerMixAlarm",
                f"{cfg.function_name} v{self.model_version}: the answers' mix is "
                f"{cfg.answer_mix_distance:g} or more (total variation distance) away from "
                f"the training mix over {cfg.monitoring_period_minutes} min",
                self.answer_mix_distance(training),
                cfg.answer_mix_distance,
            )
        self.dashboard = self._dashboard(alias)

    # Metrics -------------------------------------------------------------------------------
    def metric(self, name: str, statistic: str = "Sum") -> cloudwatch.Metric:
        """An EMF metric of the deployed version (the exact dimension set the handler writes)."""
        return cloudwatch.Metric(
            namespace=METRIC_NAMESPACE,
            metric_name=name,
            dimensions_map={
                MODEL_DIMENSION: self.config.name,
                MODEL_VERSION_DIMENSION: self.model_version,
            },
            statistic=statistic,
            period=self.period,
        )

    def out_of_domain_rate(self, *, gated: bool = True) -> cloudwatch.MathExpression:
        min_readings = self.config.monitoring_min_readings if gated else None
        return cloudwatch.MathExpression(
            expression=out_of_domain_expression(min_readings),
            using_metrics={"outside": self.metric(OUT_OF_DOMAIN), "readings": self.readings},
            label="readings out of domain per 100",
            period=self.period,
        )

    def answer_mix_distance(
        self, training: TrainingMix, *, gated: bool = True
    ) -> cloudwatch.MathExpression:
        answers = {
            f"a{i}": self.metric(ANSWER_PREFIX + metric_text(label))
            for i, label in enumerate(training.labels)
        }
        return cloudwatch.MathExpression(
            expression=answer_mix_expression(
                training.shares, self.config.monitoring_min_readings if gated else None
            ),
            using_metrics={**answers, "readings": self.readings},
            label="answer mix: total variation distance from training",
            period=self.period,
        )

    def _share(self, metric_id: str, metric: cloudwatch.Metric, label: str) -> cloudwatch.IMetric:
        return cloudwatch.MathExpression(
            expression=f"100 * FILL({metric_id}, 0) / readings",
            using_metrics={metric_id: metric, "readings": self.readings},
            label=label,
            period=self.period,
        )

    # Dashboard -----------------------------------------------------------------------------
    def _dashboard(self, alias: lambda_.Alias) -> cloudwatch.Dashboard:
        cfg = self.config
        period = self.period
        dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=cfg.function_name,
            default_interval=Duration.hours(6),
        )
        versions = cloudwatch.MathExpression(
            expression=(
                f"SEARCH('{{{METRIC_NAMESPACE},{MODEL_DIMENSION},{MODEL_VERSION_DIMENSION}}} "
                f'{MODEL_DIMENSION}="{cfg.name}" '
                f"MetricName=\"{READINGS}\"', 'Sum', {int(period.to_seconds())})"
            ),
            using_metrics={},
            label="readings by version",
            period=period,
        )
        faults = inference_faults(cfg, period)
        domain: list[cloudwatch.IMetric] = [self.out_of_domain_rate(gated=False)]
        shares: list[cloudwatch.IMetric] = []
        distance: list[cloudwatch.IMetric] = []
        training = self.training
        if training is not None:
            domain += [
                self._share(f"f{i}", self.metric(FEATURE_PREFIX + name), f"{name} outside %")
                for i, name in enumerate(training.features)
            ]
            shares = [
                self._share(
                    f"a{i}",
                    self.metric(ANSWER_PREFIX + metric_text(label)),
                    f"{metric_text(label)} % (training {share:.1%})",
                )
                for i, (label, share) in enumerate(
                    zip(training.labels, training.shares, strict=True)
                )
            ]
            distance = [self.answer_mix_distance(training, gated=False)]

        def graph(
            title: str, left: Sequence[cloudwatch.IMetric], **kwargs: Any
        ) -> cloudwatch.GraphWidget:
            return cloudwatch.GraphWidget(title=title, left=list(left), width=8, height=6, **kwargs)

        mix_note = (
            "" if training is not None
            else "\n\nNo training mix was given to this synth: no answer-mix alarm."
        )  # fmt: skip
        dashboard.add_widgets(
            cloudwatch.TextWidget(
                markdown=(
                    f"## {cfg.name} ({cfg.env.name}), deployed version {self.model_version}\n"
                    "Model metrics (readings, out of domain, answers, confidence) are of the "
                    "deployed version; Lambda's (invocations, errors, latency) of the `live` "
                    f"alias. Period {cfg.monitoring_period_minutes} min; periods with fewer "
                    f"than {cfg.monitoring_min_readings} readings do not alarm." + mix_note
                ),
                width=24,
                height=2,
            )
        )
        dashboard.add_widgets(
            graph("Traffic", [alias.metric_invocations(period=period, statistic="Sum"),
                              self.readings, versions]),
            graph("Errors", [alias.metric_errors(period=period, statistic="Sum"),
                             alias.metric_throttles(period=period, statistic="Sum"), faults]),
            graph("Latency (ms)",
                  [alias.metric_duration(period=period, statistic=s) for s in ("p50", "p99")],
                  left_annotations=[cloudwatch.HorizontalAnnotation(
                      value=cfg.p99_duration_threshold_ms, label="p99 alarm")]),
        )  # fmt: skip
        dashboard.add_widgets(
            graph("Out of domain (% of readings)", domain,
                  left_annotations=[cloudwatch.HorizontalAnnotation(
                      value=cfg.out_of_domain_rate_percent, label="alarm")],
                  left_y_axis=cloudwatch.YAxisProps(min=0, max=100)),
            graph("Answer mix (% of readings)", shares,
                  left_y_axis=cloudwatch.YAxisProps(min=0, max=100), stacked=True),
            graph("Answer mix distance from training", distance,
                  left_annotations=[cloudwatch.HorizontalAnnotation(
                      value=cfg.answer_mix_distance, label="alarm")],
                  left_y_axis=cloudwatch.YAxisProps(min=0, max=1)),
        )  # fmt: skip
        dashboard.add_widgets(
            graph("Mean confidence (per invocation)", [self.metric(MEAN_CONFIDENCE, "Average")],
                  left_y_axis=cloudwatch.YAxisProps(min=0, max=1)),
        )  # fmt: skip
        return dashboard
