"""A drift report as a document (document.py: Markdown or one HTML page) and as JSON: the
verdict of each section, the log, data drift, out-of-domain traffic, the estimated and the
measured performance. Standard library only: the scheduled job renders it in the Lambda."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

from document import Block, Section, Table, markdown, number, to_html
from monitoring.analysis import Report


def fmt_num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def fmt_p(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.2g}"


def fmt_pct(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.1%}"


def title(r: Report) -> str:
    return f"Drift report: {r.model}"


def _verdict(r: Report) -> list[str]:
    out = []
    for kind, found in r.sections.items():
        out.append(f"{kind}: " + ("; ".join(found) if found else "no alarm"))
    return out


def _log(r: Report) -> Table:
    rows = [
        ("compared with", f"{r.where} (bundle sha256 {r.sha256[:12]})"),
        ("log", f"{r.source}: {r.lines:,} lines, {r.records:,} records of {r.model}, "
                f"{r.unreadable:,} unreadable, {r.other_lines:,} other log lines"),
    ]  # fmt: skip
    if r.period:
        rows.append(("answered", f"{r.period[0]} to {r.period[1]}"))
    if r.versions:
        rows.append(("versions", ", ".join(f"{v} ({n:,})" for v, n in r.versions.items())))
    if r.other_models:
        rows.append(("other models, skipped",
                     ", ".join(f"{m} ({n:,})" for m, n in r.other_models.items())))  # fmt: skip
    if r.tested < r.records:
        rows.append(("tested on", f"a seeded sample of {r.tested:,} records"))
    if r.uncovered:
        rows.append(
            (
                "season",
                f"{r.uncovered:.0%} of the records fall on days of the year "
                "training never saw: their windows take any training days",
            )
        )
    return Table(("", "value"), rows)


def _drift(r: Report) -> list[Block]:
    t = r.thresholds
    tests = 2 * len(r.features) + 1
    rows = [
        (f.name, f"{f.present:,}", f"{fmt_pct(f.missing_rate)} ({fmt_pct(f.train_missing_rate)})",
         fmt_num(f.psi), fmt_p(f.p), fmt_p(f.missing_p), fmt_pct(f.outside_rate),
         f"{number(f.low)} to {number(f.high)}", f.status)
        for f in r.features
    ]  # fmt: skip
    o = r.output
    total = max(sum(o.counts) + o.unknown, 1)
    mix = [(label, f"{share:.1%}", f"{count / total:.1%}", f"{count:,}")
           for label, share, count in zip(o.labels, o.expected, o.counts, strict=True)]  # fmt: skip
    return [
        f"Each test's p-value is the share of {t.draws:,} windows of training's own rows, with "
        "this log's size, devices, days and hours, at least as far from training "
        f"(monitoring/reference.py). Family-wise alpha {t.alpha} over {tests} tests "
        f"(Bonferroni: each p below {t.alpha / tests:.2g}); a shift is drift when it is also "
        f"at least PSI {t.min_psi}, a missing rate when it moved {t.min_missing:.0%} or more.",
        Table(
            (
                "feature",
                "readings",
                "missing (train)",
                "PSI",
                "p",
                "missing p",
                "outside",
                "domain",
                "status",
            ),
            rows,
        ),
        f"Answers ({o.kind}): PSI {fmt_num(o.psi)}, p {fmt_p(o.p)}: {o.status}"
        + (f"; {o.unknown} with a label training never answered" if o.unknown else "")
        + ".",
        Table(("label", "training", "live", "count"), mix),
    ]


def _domain(r: Report) -> list[Block]:
    d = r.domain
    rows = [
        ("not inside (recomputed)", f"{fmt_pct(d.outside)} (training rows: "
                                    f"{fmt_pct(d.training)}), p {fmt_p(d.p)}"),
        ("an unusual combination", fmt_pct(d.unusual)),
        ("the answers' own verdicts: not inside", fmt_pct(d.served)),
    ]  # fmt: skip
    rows += [(f"missing {name} (never in training)", fmt_pct(share))
             for name, share in d.missing.items()]  # fmt: skip
    return [
        f"Alarm when the share not inside is above training's by {r.thresholds.min_excess:.0%} "
        f"or more and p is below {r.thresholds.alpha}: {d.status}.",
        Table(("", "share of readings"), rows),
    ]


def _estimate(r: Report) -> list[Block]:
    e = r.estimate
    rows = [(name, fmt_num(v, 4), f"{fmt_num(lo, 4)} to {fmt_num(hi, 4)}",
             fmt_num(e.held_out.get(name, math.nan), 4))
            for name, (v, lo, hi) in e.metrics.items()]  # fmt: skip
    status = e.status + (f": {e.reason}" if e.reason else "")
    return [
        f"From the model's own outputs on the {e.rows:,} logged inputs, before any label "
        f"(monitoring/estimate.py). Judged on {e.primary}: {status}.",
        Table(("metric", "estimate", "95 % interval", "held-out"), rows),
    ]


def _measured(r: Report) -> list[Block]:
    live = r.live
    j = live.joined
    estimated = live.estimated or {}
    rows = [(name, fmt_num(value, 4),
             fmt_num(estimated.get(name, (math.nan,))[0], 4),
             fmt_num(live.held_out.get(name, math.nan), 4),
             fmt_num(live.baseline.get(name, math.nan), 4))
            for name, value in live.live.items()]  # fmt: skip
    status = live.status + (f": {live.reason}" if live.reason else "")
    return [
        f"{j.labels:,} labels, {j.matched:,} joined to a record by device and nearest time; "
        f"{j.no_device:,} records had no device. Judged on {live.primary} "
        f"({'higher' if live.greater_is_better else 'lower'} is better): {status}.",
        Table(("metric", "live", "estimated for the same records", "held-out", "baseline"), rows),
    ]


def document(r: Report) -> list[Section]:
    parts = [
        Section("Verdict", [_verdict(r)]),
        Section("Log", [_log(r)]),
        Section("Data drift", _drift(r)),
        Section("Out-of-domain traffic", _domain(r)),
        Section("Estimated performance", _estimate(r)),
    ]
    if r.live is not None:
        parts.append(Section("Measured performance (labels)", _measured(r)))
    if r.examples:
        parts.append(Section("Unreadable lines (first few)", [list(r.examples)]))
    return parts


def render(r: Report, form: str = "md") -> str:
    parts = document(r)
    return to_html(title(r), parts) if form == "html" else markdown(title(r), parts)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def summary(r: Report) -> dict[str, Any]:
    """The report as JSON: every figure, the alarms of each section and the exit code."""
    body = {k: v for k, v in asdict(r).items() if k != "live"}
    if r.live is not None:
        live = asdict(r.live)
        live["joined"] = {k: v for k, v in live["joined"].items()
                          if k in ("labels", "matched", "no_device")}  # fmt: skip
        body["live"] = live
    body["sections"] = r.sections
    body["alarms"] = r.alarms
    body["code"] = r.code
    return dict(_jsonable(body))
