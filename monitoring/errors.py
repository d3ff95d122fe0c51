"""What stops a drift report, each with the exit code `python -m monitoring.drift` returns."""

from __future__ import annotations

OK = 0
DRIFT = 10  # a report was written and a threshold passed (see monitoring/README.md)
USAGE = 2  # argparse's own code for a bad command line


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
    (OK, "no threshold passed: the report is written"),
    (USAGE, "bad command line"),
    (LogError.code, "the log is missing, empty, unreadable, or has no record of the model"),
    (ModelError.code, "the bundle cannot be found or verified, or has no training profile"),
    (LabelsError.code, "the labels file is missing, empty or malformed"),
    (OutputError.code, "the report cannot be written"),
    (DRIFT, "a threshold passed (drift, out-of-domain rate or live metric): report written"),
)
