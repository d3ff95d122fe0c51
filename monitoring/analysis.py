"""What a drift report holds, computed from the records, the bundle and the labels: the
records in the reference's terms, the tests (monitoring/compare.py), the estimated metric
(monitoring/estimate.py) and, with labels, the measured one. numpy, onnxruntime and the
serving code only, so the scheduled job runs it in the serving image (monitoring/job.py);
labels (pandas) are the command's."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from inference.calendar_features import SOURCE, Calendar, TimestampError, parse
from inference.domain import Domain
from inference.predictor import Predictor
from monitoring import compare, estimate, reference
from monitoring.compare import DomainTraffic, FeatureDrift, OutputDrift, Thresholds
from monitoring.errors import DRIFT, ESTIMATED_LOSS, MEASURED_LOSS, OUT_OF_DOMAIN
from monitoring.estimate import Estimate


@dataclass
class Report:
    model: str
    where: str  # the bundle compared with
    sha256: str
    source: str
    records: int
    lines: int
    unreadable: int
    other_lines: int
    other_models: dict[str, int]
    versions: dict[str, int]  # model versions the records name
    period: tuple[str, str] | None
    features: list[FeatureDrift]
    output: OutputDrift
    domain: DomainTraffic
    estimate: Estimate
    thresholds: Thresholds
    examples: list[str]
    tested: int  # records the tests ran on (a seeded subsample beyond MAX_RECORDS)
    uncovered: float  # share of records at a day of the year training never saw
    live: Any = None  # monitoring.labels.LiveMetrics, with labels

    @property
    def sections(self) -> dict[str, list[str]]:
        """The alarms of each kind: data drift, out-of-domain traffic, estimated and measured
        performance loss."""
        drift = [f"{f.name}: {'; '.join(f.reasons)}" for f in self.features if f.status == "drift"]
        if self.output.status == "drift":
            drift.append(f"answers ({self.output.kind}): {'; '.join(self.output.reasons)}")
        measured = []
        if self.live is not None and self.live.status == "degraded":
            measured.append(self.live.reason)
        return {
            "data drift": drift,
            "out of domain": list(self.domain.reasons) if self.domain.status == "alarm" else [],
            "estimated performance": [self.estimate.reason]
            if self.estimate.status == "degraded" else [],
            "measured performance": measured,
        }  # fmt: skip

    @property
    def alarms(self) -> list[str]:
        return [f"{kind}: {a}" for kind, found in self.sections.items() for a in found]

    @property
    def code(self) -> int:
        """The exit code: the most serious section that alarmed, else 0."""
        codes = dict(zip(self.sections, (DRIFT, OUT_OF_DOMAIN, ESTIMATED_LOSS, MEASURED_LOSS),
                         strict=True))  # fmt: skip
        return max((codes[k] for k, found in self.sections.items() if found), default=0)


def inputs_matrix(
    records: list[dict[str, Any]], schema: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """Rows x features in schema order, NaN where missing or not a number, and per feature the
    count of values that are not numbers. A calendar feature the record's inputs lack is
    derived from its ``timestamp`` as serving derives it."""
    fields = [f["name"] for f in schema["fields"]]
    derived = [f["name"] for f in schema["fields"] if f.get("source") == SOURCE]
    calendar = Calendar(derived, schema["timestamp"]["utc_offset"]) if derived else None
    out = np.full((len(records), len(fields)), math.nan)
    wrong = np.zeros(len(fields), dtype=np.int64)
    for i, record in enumerate(records):
        inputs = record["inputs"]
        row = []
        for j, name in enumerate(fields):
            value = inputs.get(name)
            if isinstance(value, bool) or not isinstance(value, int | float | type(None)):
                wrong[j] += 1
            row.append(float(value) if isinstance(value, int | float) and
                       not isinstance(value, bool) else math.nan)  # fmt: skip
        if calendar is not None and any(math.isnan(row[fields.index(n)]) for n in derived):
            stamp = record.get("timestamp")
            try:
                values = calendar.row(stamp) if isinstance(stamp, str) else calendar.missing
            except TimestampError:
                values = calendar.missing
            for name, value in zip(derived, values, strict=True):
                j = fields.index(name)
                row[j] = row[j] if not math.isnan(row[j]) else value
        out[i] = row
    # As the model reads them and the profile was computed: float32. Compared in float64, a
    # reading of 8.05 would sit below the profile's 8.0500002 and shift every tie one way.
    return out.astype(np.float32).astype(np.float64), wrong


def reading_time(record: dict[str, Any]) -> float | None:
    """Seconds since the epoch when the reading was taken (its ``timestamp``), else when it
    was answered (``time``); None when neither parses."""
    for key in ("timestamp", "time"):
        text = record.get(key)
        if isinstance(text, str):
            try:
                return parse(text).timestamp()
            except TimestampError:
                continue
    return None


def label_index(records: list[dict[str, Any]], output: dict[str, Any], labels: list[Any],
                ) -> np.ndarray:  # fmt: skip
    """Each record's served label as an index into ``labels``; len(labels) for a label the
    profile does not know, -1 for a record without one."""
    key = output["band_name"] if output["kind"] == "banded_regression" else output["label_name"]
    known = {compare.category_key(label): i for i, label in enumerate(labels)}
    out = []
    for r in records:
        value = r["output"].get(key)
        out.append(-1 if value is None else known.get(compare.category_key(value), len(labels)))
    return np.array(out, dtype=np.int64)


def _verdict_shares(records: list[dict[str, Any]]) -> float | None:
    """The share of answers whose own domain verdict was ``inside: false``."""
    verdicts = [r["output"].get("domain") for r in records]
    known = [v.get("inside") for v in verdicts if isinstance(v, dict) and "inside" in v]
    return None if not known else sum(1 for v in known if v is False) / len(known)


def training(bundle: dict[str, Any], predictor: Predictor, domain: Domain) -> compare.Training:
    """The reference rows in the tests' terms: their answers as serving gives them, and
    whether each is outside a domain that never saw its week (training/profile.py): a live
    week is new to the domain, and in-sample the bounds leave 1 % per feature outside by
    construction."""
    profile = bundle["profile"]
    ref = reference.Reference.of_profile(profile)
    matrix = ref.values.astype(np.float32)
    answers = predictor.output.answers(predictor.raw(matrix))
    labels = list(predictor.output.labels)
    index = label_index([{"output": a} for a in answers], bundle["output"], labels)
    names = ref.names
    outside = ref.outside  # None for a profile before held-out verdicts: the in-sample ones
    if outside is None:
        outside = np.asarray(domain.check(matrix).outside_rows, dtype=bool)
    return compare.Training(
        ref,
        [profile["features"][n]["quantiles"] for n in names],
        [float(profile["features"][n].get("missing_rate") or 0.0) for n in names],
        index,
        [str(label) for label in labels],
        profile["outputs"]["kind"],
        ref.outside
        if ref.outside is not None
        else np.asarray(domain.check(matrix).outside_rows, dtype=bool),
        [(float(lo), float(hi)) for lo, hi in zip(domain.lower, domain.upper, strict=True)],
    )


def assess(
    records: list[dict[str, Any]],
    bundle: dict[str, Any],
    t: Thresholds,
    primary: tuple[str, bool],
    seed: int = 0,
) -> tuple[list[FeatureDrift], OutputDrift, DomainTraffic, Estimate, int, float, np.ndarray]:
    """Every statistic of the records against the bundle: the tests, the out-of-domain
    traffic, the estimated metric; the records tested, the share of them in a season training
    never saw, and the inputs matrix."""
    predictor = Predictor(bundle)
    domain = predictor.domain
    assert domain is not None  # model.load refuses a bundle without a profile
    train = training(bundle, predictor, domain)
    matrix, wrong = inputs_matrix(records, bundle["schema"])
    tested = np.arange(len(records))
    if len(records) > reference.MAX_RECORDS:
        rng = np.random.default_rng(seed)
        tested = np.sort(rng.choice(len(records), reference.MAX_RECORDS, replace=False))
    sub = [records[i] for i in tested]
    checked = domain.check(matrix.astype(np.float32))
    outside = np.asarray(checked.outside_rows, dtype=bool)
    shape = reference.shape([reading_time(r) for r in sub], [r.get("device") for r in sub])
    live = compare.Live(matrix[tested], wrong, label_index(sub, bundle["output"], train.labels),
                        outside[tested], shape)  # fmt: skip
    features, output, traffic = compare.compare(live, train, t, seed)
    n = max(len(records), 1)
    traffic = replace(
        traffic,
        unusual=checked.unusual_rows / n,
        missing={name: checked.counts[k] / n for k, (kind, name) in enumerate(domain.bits)
                 if kind == "missing"},
        served=_verdict_shares(records),
    )  # fmt: skip
    raw = predictor.raw(matrix.astype(np.float32)) if len(records) else {"margin": np.array([])}
    estimated = estimate.estimate(bundle, raw, primary[0], primary[1], t.max_degradation, seed,
                                  span_days(records))  # fmt: skip
    return features, output, traffic, estimated, len(tested), _uncovered(train.ref, shape), matrix


def span_days(records: list[dict[str, Any]]) -> float | None:
    """Days from the first reading to the last (``reading_time``); None with fewer than two
    times. It picks the window calibration of a regression estimate's interval."""
    times = [t for r in records if (t := reading_time(r)) is not None]
    return (max(times) - min(times)) / estimate.DAY if len(times) >= 2 else None


def _uncovered(ref: reference.Reference, shape: reference.Shape) -> float:
    """The share of records at a day of the year the training period never reached."""
    if ref.seconds is None or shape.days is None or not len(shape):
        return 0.0
    timeline = reference.Timeline(ref.seconds)
    shares = [
        timeline.uncovered(shape.days[shape.devices == d], shape.first[int(d)])
        * np.count_nonzero(shape.devices == d) for d in np.unique(shape.devices)
    ]  # fmt: skip
    return float(sum(shares) / len(shape))


def period(records: list[dict[str, Any]]) -> tuple[str, str] | None:
    times = sorted(t for r in records if isinstance(t := r.get("time"), str))
    return (times[0], times[-1]) if times else None


def versions(records: list[dict[str, Any]]) -> dict[str, int]:
    return dict(Counter(str(r["model"].get("version")) for r in records).most_common())


def primary_of(bundle: dict[str, Any]) -> tuple[str, bool]:
    """The metric live performance is judged on when the spec cannot be read (the job):
    RMSE for a regression, ROC AUC for a classifier, as the shipped specs gate."""
    if bundle["output"]["kind"] == "banded_regression":
        return "rmse", False
    return "roc_auc", True
