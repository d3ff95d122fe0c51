"""`make drift MODEL=wqi LOG=path`: a prediction log against the bundle's training profile.

    python -m monitoring.drift MODEL LOG [--version N | --bundle PATH [--sha256 HEX]]
                               [--out DIR] [--labels FILE] [--tolerance-minutes M] ...

Writes report.md, summary.json and PNG plots into --out (default
.local/drift/<model>-<UTC time>/), prints a short summary, and exits 10 when a threshold
passed, 0 otherwise (the codes: --help, monitoring/README.md). The statistics and plots are
imported after the command line is read, so `--help` answers at once.
"""

from __future__ import annotations

import argparse
import math
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from inference.bundle import is_model_name, model_name_problem
from monitoring.errors import DRIFT, EXIT_CODES, OK, MonitoringError
from settings import LOCAL_DIR

if TYPE_CHECKING:
    from monitoring.report import Report

# The defaults of monitoring.compare.Thresholds, repeated here so --help imports no scipy.
PSI_DRIFT, ALPHA, MAX_OUTSIDE, MAX_DEGRADATION = 0.25, 0.01, 0.05, 0.2


def print_summary(r: Report, path: Path) -> None:
    from monitoring import report

    print(f"{r.model}: {r.records:,} records from {r.source} against {r.where} "
          f"({r.unreadable:,} unreadable lines, {r.other_lines:,} other log lines)")  # fmt: skip
    print(f"  {'feature':<16} {'PSI':>7} {'KS p':>9} {'outside':>8}  status")
    for f in r.features:
        print(f"  {f.name:<16} {report.fmt_num(f.psi):>7} {report.fmt_p(f.ks_pvalue):>9} "
              f"{report.fmt_pct(f.outside_rate):>8}  {f.status}")  # fmt: skip
    o = r.output
    mix = f"PSI {report.fmt_num(o.psi)}, chi-square p {report.fmt_p(o.pvalue)}"
    print(f"  answers ({o.kind}): {mix}  {o.status}")
    print(f"  outside the domain on any feature: {report.fmt_pct(r.outside_rows)}")
    if r.live is not None:
        metrics = ", ".join(f"{k} {v:.4f} (held-out {r.live.held_out.get(k, math.nan):.4f})"
                            for k, v in r.live.live.items())  # fmt: skip
        print(f"  live: {r.live.joined.matched:,} of {r.live.joined.labels:,} labels joined; "
              f"{metrics or 'no metric'}: {r.live.status}")  # fmt: skip
    verdict = "DRIFT: " + "; ".join(r.alarms) if r.alarms else "no threshold passed"
    print(f"{verdict}\nreport: {path}")


def parser() -> argparse.ArgumentParser:
    codes = "\n".join(f"  {code:>2}  {meaning}" for code, meaning in EXIT_CODES)
    p = argparse.ArgumentParser(
        prog="python -m monitoring.drift",
        description="Compare a prediction log with the model's training profile.",
        epilog=f"exit codes:\n{codes}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model")
    p.add_argument("log", help="a JSONL file, a folder of them, or s3://bucket/prefix")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--version", help="the MLflow version (default: the champion)")
    which.add_argument("--bundle", type=Path, help="a bundle file instead of MLflow's")
    p.add_argument("--sha256", help="the digest --bundle must have (default: a registered one)")
    p.add_argument("--out", type=Path, help="report folder (default .local/drift/<model>-<time>)")
    p.add_argument("--labels", type=Path, help="CSV or JSONL of device, time, label")
    p.add_argument(
        "--tolerance-minutes",
        type=float,
        default=30.0,
        help="how far a label's time may be from its reading's (default 30)",
    )
    p.add_argument("--psi-drift", type=float, default=PSI_DRIFT, help="PSI above it is drift")
    p.add_argument("--alpha", type=float, default=ALPHA, help="family-wise, for KS and chi2")
    p.add_argument(
        "--max-outside",
        type=float,
        default=MAX_OUTSIDE,
        help="share of a feature's readings outside the domain that is drift",
    )
    p.add_argument(
        "--max-degradation",
        type=float,
        default=MAX_DEGRADATION,
        help="relative worsening of the live primary metric that is drift",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if not is_model_name(args.model):  # before it names the report's folder or a model
        p.error(model_name_problem(args.model))
    if args.sha256 and args.bundle is None:
        p.error("--sha256 goes with --bundle")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or LOCAL_DIR / "drift" / f"{args.model}-{stamp}"
    try:
        from monitoring import analysis, report

        built, matrix, profile = analysis.build(args)
        path = report.write(built, out, matrix, profile)
    except MonitoringError as exc:
        print(f"drift: error: {exc}", file=sys.stderr)
        return exc.code
    print_summary(built, path)
    return DRIFT if built.alarms else OK


if __name__ == "__main__":
    sys.exit(main())
