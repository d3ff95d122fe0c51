"""`make drift MODEL=wqi LOG=path`: a prediction log against the bundle's training profile.

    python -m monitoring.drift MODEL LOG [--version N | --bundle PATH [--sha256 HEX]]
                               [--out DIR] [--labels FILE] [--tolerance-minutes M] ...

Writes report.md, report.html, summary.json and PNG plots into --out (default
.local/drift/<model>-<UTC time>/), prints a short summary, and exits with the code of the most
serious section that alarmed: 10 data drift, 11 out-of-domain traffic, 12 estimated
performance loss, 13 measured performance loss; 0 when none did (every code: --help,
monitoring/README.md). The statistics are imported after the command line is read, so `--help`
answers at once.
"""

from __future__ import annotations

import argparse
import math
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from inference.bundle import is_model_name, model_name_problem
from monitoring.errors import EXIT_CODES, MonitoringError
from settings import LOCAL_DIR

if TYPE_CHECKING:
    import numpy as np

    from monitoring.analysis import Report

# The defaults of monitoring.compare.Thresholds, repeated here so --help imports nothing heavy.
ALPHA, MIN_PSI, MIN_EXCESS, MAX_DEGRADATION = 0.01, 0.1, 0.02, 0.2


def print_summary(r: Report, path: Path) -> None:
    from monitoring.sections import fmt_num, fmt_p, fmt_pct

    print(f"{r.model}: {r.records:,} records from {r.source} against {r.where} "
          f"({r.unreadable:,} unreadable lines, {r.other_lines:,} other log lines)")  # fmt: skip
    print(f"  {'feature':<16} {'PSI':>7} {'p':>8} {'outside':>8}  status")
    for f in r.features:
        print(f"  {f.name:<16} {fmt_num(f.psi):>7} {fmt_p(f.p):>8} {fmt_pct(f.outside_rate):>8}"
              f"  {f.status}")  # fmt: skip
    o, d, e = r.output, r.domain, r.estimate
    print(f"  answers ({o.kind}): PSI {fmt_num(o.psi)}, p {fmt_p(o.p)}  {o.status}")
    print(f"  not inside the domain: {fmt_pct(d.outside)} (training {fmt_pct(d.training)}, "
          f"p {fmt_p(d.p)})  {d.status}")  # fmt: skip
    if e.primary in e.metrics:
        value, low, high = e.metrics[e.primary]
        print(f"  estimated {e.primary}: {fmt_num(value, 4)} ({fmt_num(low, 4)}-"
              f"{fmt_num(high, 4)}; held-out {fmt_num(e.held_out.get(e.primary), 4)})  "
              f"{e.status}")  # fmt: skip
    if r.live is not None:
        metrics = ", ".join(f"{k} {v:.4f} (held-out {r.live.held_out.get(k, math.nan):.4f})"
                            for k, v in r.live.live.items())  # fmt: skip
        print(f"  live: {r.live.joined.matched:,} of {r.live.joined.labels:,} labels joined; "
              f"{metrics or 'no metric'}: {r.live.status}")  # fmt: skip
    verdict = "ALARM: " + "; ".join(r.alarms) if r.alarms else "no alarm"
    print(f"{verdict}\nreport: {path}")


def parser() -> argparse.ArgumentParser:
    codes = "\n".join(f"  {code:>2}  {meaning}" for code, meaning in EXIT_CODES)
    p = argparse.ArgumentParser(
        prog="python -m monitoring.drift",
        description="Compare a prediction log with the model's training profile.",
        epilog=f"exit codes (the most serious section that alarmed):\n{codes}",
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
    p.add_argument(
        "--alpha",
        type=float,
        default=ALPHA,
        help="family-wise, for the data drift tests; and the out-of-domain test's",
    )
    p.add_argument(
        "--min-psi",
        type=float,
        default=MIN_PSI,
        help="the smallest PSI called drift, however significant",
    )
    p.add_argument(
        "--min-excess",
        type=float,
        default=MIN_EXCESS,
        help="the smallest excess of out-of-domain readings over training's",
    )
    p.add_argument("--max-degradation", type=float, default=MAX_DEGRADATION,
                   help="relative worsening of the primary metric that alarms")  # fmt: skip
    return p


def _primary(name: str, bundle: dict) -> tuple[str, bool]:  # type: ignore[type-arg]
    """The spec's gate metric, which performance is judged on."""
    from monitoring.analysis import primary_of
    from training.spec import SpecError, load_spec

    try:
        gates = load_spec(name).gates
        return gates.primary, gates.greater_is_better
    except SpecError:
        return primary_of(bundle)


def build(args: argparse.Namespace) -> tuple[Report, np.ndarray, dict]:  # type: ignore[type-arg]
    """The report of the command line's log, bundle and labels.

    Raises:
        LabelsError, LogError, ModelError: the labels, the log or the bundle are unusable.
    """
    from monitoring import analysis, estimate, labels, log, model
    from monitoring.compare import Thresholds

    t = Thresholds(alpha=args.alpha, min_psi=args.min_psi, min_excess=args.min_excess,
                   max_degradation=args.max_degradation)  # fmt: skip
    label_rows = labels.read(args.labels) if args.labels else None  # fail fast on a bad file
    read = log.read(args.log)
    records = read.of_model(args.model)
    loaded = model.load(args.model, args.version, args.bundle, args.sha256)
    bundle = loaded.bundle
    primary = _primary(args.model, bundle)
    features, output, traffic, estimated, tested, uncovered, matrix = analysis.assess(
        records, bundle, t, primary
    )
    live = None
    if label_rows is not None:
        joined = labels.join(label_rows, records, timedelta(minutes=args.tolerance_minutes))
        same = estimated.metrics
        if joined.indices:
            from inference.predictor import Predictor

            rows = matrix[joined.indices].astype("float32")
            raw = Predictor(bundle).raw(rows)
            days = analysis.span_days([records[i] for i in joined.indices])
            same = estimate.estimate(bundle, raw, *primary, t.max_degradation, days=days).metrics
        live = labels.live_metrics(joined, bundle, *primary, t, same)
    others = {m: n for m, n in read.models().most_common() if m != args.model}
    report = analysis.Report(
        args.model, loaded.where, loaded.sha256, args.log, len(records), read.lines,
        read.unreadable, read.other, others, analysis.versions(records), analysis.period(records),
        features, output, traffic, estimated, t, read.examples, tested, uncovered, live,
    )  # fmt: skip
    return report, matrix, bundle["profile"]


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
        from monitoring import report

        built, matrix, profile = build(args)
        path = report.write(built, out, matrix, profile)
    except MonitoringError as exc:
        print(f"drift: error: {exc}", file=sys.stderr)
        return exc.code
    print_summary(built, path)
    return built.code


if __name__ == "__main__":
    sys.exit(main())
