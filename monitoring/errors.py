"""What stops a drift report, each with the exit code `python -m monitoring.drift` returns."""

from __future__ import annotations

OK = 0
USAGE = 2  # argparse's own code for a bad command line
# A report was written and a section alarmed; the most serious applies (monitoring/README.md).
DRIFT, OUT_OF_DOMAIN, ESTIMATED_LOSS, MEASURED_LOSS = 10, 11, 12, 13


class MonitoringError(Exception):
    """A user-facing failure: one line on stderr, and ``code`` as the exit status."""

    code = 1


class LogError(MonitoringError):
    """The prediction log is missing, empty, unreadable, or holds no record of the model."""

    code = 3


class ModelError(MonitoringError):
    """The model's bundle cannot be found, fails its digest, or has no training profile."""

    code = 4


class LabelsError(MonitoringError):
    """The labels file is missing, empty or malformed."""

    code = 5


class OutputError(MonitoringError):
    """The report cannot be written where --out points."""

    code = 6


EXIT_CODES = (
    (OK, "no alarm: the report is written"),
    (USAGE, "bad command line"),
    (LogError.code, "the log is missing, empty, unreadable, or has no record of the model"),
    (ModelError.code, "the bundle cannot be found or verified, or has no training profile"),
    (LabelsError.code, "the labels file is missing, empty or malformed"),
    (OutputError.code, "the report cannot be written"),
    (DRIFT, "data drift (a feature, a missing rate, a type, the answers' mix): report written"),
    (OUT_OF_DOMAIN, "more readings outside the domain than training explains: report written"),
    (ESTIMATED_LOSS, "the metric estimated without labels is worse than held-out: report written"),
    (MEASURED_LOSS, "the metric measured with labels is worse than held-out: report written"),
)
