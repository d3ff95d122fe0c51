"""Writes a drift report: report.md, summary.json and one PNG per feature and for the answers,
into a temporary folder renamed into place, so a report is whole or absent."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: files only

import matplotlib.pyplot as plt
import numpy as np

from monitoring.compare import FeatureDrift, OutputDrift, Thresholds, quantile_bins
from monitoring.errors import OutputError
from monitoring.labels import LiveMetrics
from training.card_format import number


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
    outside_rows: float  # share of records outside the domain on any feature
    served_outside: float | None  # the same, from the answers' own domain verdicts
    thresholds: Thresholds
    examples: list[str]
    live: LiveMetrics | None = None

    @property
    def alarms(self) -> list[str]:
        out = [f"{f.name}: {'; '.join(f.reasons)}" for f in self.features if f.status == "drift"]
        if self.output.status == "drift":
            out.append(f"answers ({self.output.kind}): {'; '.join(self.output.reasons)}")
        if self.live is not None and self.live.status == "degraded":
            out.append(f"live metrics: {self.live.reason}")
        return out


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)


def fmt_num(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def fmt_p(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2g}"


def fmt_pct(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.1%}"


def markdown(r: Report) -> str:
    t = r.thresholds
    verdict = "**DRIFT**: " + "; ".join(r.alarms) if r.alarms else "**No threshold passed.**"
    lines = [
        f"# Drift report: {r.model}",
        "",
        verdict,
        "",
        f"- Compared with: {r.where} (bundle sha256 `{r.sha256[:12]}`)",
        f"- Log: `{r.source}`: {r.lines:,} lines, {r.records:,} records of {r.model}, "
        f"{r.unreadable:,} unreadable, {r.other_lines:,} other log lines",
    ]
    if r.period:
        lines.append(f"- Answered from {r.period[0]} to {r.period[1]}")
    if r.versions:
        lines.append("- Versions in the log: "
                     + ", ".join(f"{v} ({n:,})" for v, n in r.versions.items()))  # fmt: skip
    if r.other_models:
        lines.append("- Records of other models, skipped: "
                     + ", ".join(f"{m} ({n:,})" for m, n in r.other_models.items()))  # fmt: skip
    k = len(r.features)
    lines += [
        "",
        "## Thresholds",
        "",
        f"- PSI on the training profile's quantile bins: < {t.psi_moderate} stable, "
        f"{t.psi_moderate}-{t.psi_drift} moderate, > {t.psi_drift} drift.",
        f"- Two-sample Kolmogorov-Smirnov against the profile's training sample, family-wise "
        f"alpha {t.alpha} with Bonferroni: each p is compared with {t.alpha}/{k} = "
        f"{t.alpha / max(k, 1):.2g}. A feature drifts when PSI and KS both say so.",
        f"- Out of domain: more than {t.max_outside:.0%} of a feature's readings outside its "
        "domain (the training rule leaves 1 % outside) is drift.",
        f"- Answers: PSI as above and chi-square goodness of fit at alpha {t.alpha}, both.",
        "",
        "## Features",
        "",
        "| feature | readings | missing (train) | PSI | KS D | KS p | outside | domain | status |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for f in r.features:
        lines.append(
            f"| {f.name} | {f.present:,} "
            f"| {fmt_pct(f.missing_rate)} ({fmt_pct(f.train_missing_rate)})"
            f" | {fmt_num(f.psi)} | {fmt_num(f.ks_statistic)} | {fmt_p(f.ks_pvalue)} "
            f"| {fmt_pct(f.outside_rate)} | {number(f.low)} to {number(f.high)} | {f.status} |"
        )
    served = r.served_outside
    own = "" if served is None else f" (the answers' own verdicts: {fmt_pct(served)})"
    lines += ["", f"Readings outside the domain on any feature: {fmt_pct(r.outside_rows)}{own}", ""]
    lines += [f"![{f.name}](feature-{_slug(f.name)}.png)" for f in r.features if f.live_shares]
    o = r.output
    lines += [
        "",
        f"## Answers: {o.kind}",
        "",
        f"PSI {fmt_num(o.psi)}, chi-square {fmt_num(o.chi2, 1)} (p {fmt_p(o.pvalue)}): "
        f"**{o.status}**" + (f"; {o.unknown} answers with an unknown label" if o.unknown else ""),
        "",
        "| label | training | live | count |",
        "|---|---:|---:|---:|",
    ]
    total = max(sum(o.counts) + o.unknown, 1)
    for label, share, count in zip(o.labels, o.expected, o.counts, strict=True):
        lines.append(f"| {label} | {share:.1%} | {count / total:.1%} | {count:,} |")
    lines += ["", "![answers](output-mix.png)"]
    if r.live is not None:
        lines += _live_section(r.live)
    if r.examples:
        lines += ["", "## Unreadable lines (first few)", ""]
        lines += [f"- `{e}`" for e in r.examples]
    return "\n".join(lines) + "\n"


def _live_section(live: LiveMetrics) -> list[str]:
    j = live.joined
    lines = [
        "",
        "## Live metrics (labels)",
        "",
        f"{j.labels:,} labels, {j.matched:,} joined to a record by device and nearest time; "
        f"{j.no_device:,} records had no device. Primary metric `{live.primary}` "
        f"({'higher' if live.greater_is_better else 'lower'} is better): **{live.status}**"
        + (f": {live.reason}" if live.reason else ""),
        "",
        "| metric | live | held-out | baseline |",
        "|---|---:|---:|---:|",
    ]
    for name, value in live.live.items():
        held = live.held_out.get(name, math.nan)
        base = live.baseline.get(name, math.nan)
        lines.append(f"| {name} | {fmt_num(value, 4)} | {fmt_num(held, 4)} | {fmt_num(base, 4)} |")
    return lines


def _feature_plot(f: FeatureDrift, values: np.ndarray, entry: dict[str, Any], path: Path) -> None:
    present = values[~np.isnan(values)]
    sample = np.asarray(entry.get("sample") or [], dtype=np.float64)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    both = np.concatenate([present, sample[~np.isnan(sample)]])
    bins = np.histogram_bin_edges(both, bins=40)
    if len(sample):
        left.hist(sample, bins=bins, density=True, alpha=0.5, label="training sample")
    left.hist(present, bins=bins, density=True, alpha=0.5, label="live")
    for bound in (f.low, f.high):
        left.axvline(bound, color="black", linestyle="--", linewidth=0.8)
    left.set_title(f"{f.name}: values (dashed: domain)")
    left.legend(fontsize=8)
    edges, _ = quantile_bins(entry["quantiles"])
    x = np.arange(len(f.expected_shares))
    right.bar(x - 0.2, f.expected_shares, width=0.4, label="training")
    right.bar(x + 0.2, f.live_shares, width=0.4, label="live")
    names = [*(f"≤{number(e)}" for e in edges), f">{number(edges[-1])}"]
    right.set_xticks(x, names, rotation=60, fontsize=7)
    right.set_title(f"quantile bins: PSI {fmt_num(f.psi)} ({f.status})")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _output_plot(o: OutputDrift, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.2))
    x = np.arange(len(o.labels))
    total = max(sum(o.counts) + o.unknown, 1)
    ax.bar(x - 0.2, o.expected, width=0.4, label="training")
    ax.bar(x + 0.2, [c / total for c in o.counts], width=0.4, label="live")
    ax.set_xticks(x, o.labels)
    ax.set_ylabel("share of answers")
    ax.set_title(f"answers ({o.kind}): PSI {fmt_num(o.psi)} ({o.status})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    return value


def summary(r: Report) -> dict[str, Any]:
    body = {k: v for k, v in asdict(r).items() if k != "live"}
    if r.live is not None:
        live = asdict(r.live)
        live["joined"] = {k: v for k, v in live["joined"].items() if k in
                          ("labels", "matched", "no_device")}  # fmt: skip
        body["live"] = live
    body["alarms"] = r.alarms
    return dict(_jsonable(body))


def write(r: Report, out: Path, matrix: np.ndarray, profile: dict[str, Any]) -> Path:
    """The report in ``out`` (created; an existing non-empty folder is refused)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputError(f"{out} exists and is not an empty folder: choose another --out")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-"))
    except OSError as exc:
        raise OutputError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
    try:
        for j, f in enumerate(r.features):
            if f.live_shares:
                entry = profile["features"][f.name]
                _feature_plot(f, matrix[:, j], entry, tmp / f"feature-{_slug(f.name)}.png")
        _output_plot(r.output, tmp / "output-mix.png")
        (tmp / "report.md").write_text(markdown(r), encoding="utf-8")
        (tmp / "summary.json").write_text(json.dumps(summary(r), indent=2) + "\n")
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except OSError as exc:
        raise OutputError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out / "report.md"
