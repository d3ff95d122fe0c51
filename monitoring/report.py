"""Writes a drift report folder: report.md, report.html, summary.json and one PNG per feature
and for the answers, into a temporary folder renamed into place, so a report is whole or
absent. The command's (matplotlib); the scheduled job writes the HTML and JSON alone."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: files only

import matplotlib.pyplot as plt
import numpy as np

from document import number
from monitoring import sections
from monitoring.analysis import Report
from monitoring.compare import FeatureDrift, OutputDrift, quantile_bins
from monitoring.errors import OutputError


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)


def _feature_plot(
    f: FeatureDrift, values: np.ndarray, train: np.ndarray, quantiles: dict[str, float | None],
    path: Path,
) -> None:  # fmt: skip
    present, train = values[~np.isnan(values)], train[~np.isnan(train)]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    bins = np.histogram_bin_edges(np.concatenate([present, train]), bins=40)
    left.hist(train, bins=bins, density=True, alpha=0.5, label="training (reference rows)")
    left.hist(present, bins=bins, density=True, alpha=0.5, label="live")
    for bound in (f.low, f.high):
        left.axvline(bound, color="black", linestyle="--", linewidth=0.8)
    left.set_title(f"{f.name}: values (dashed: domain)")
    left.legend(fontsize=8)
    edges, _ = quantile_bins(quantiles)
    x = np.arange(len(f.expected_shares))
    right.bar(x - 0.2, f.expected_shares, width=0.4, label="training")
    right.bar(x + 0.2, f.live_shares, width=0.4, label="live")
    names = [*(f"≤{number(e)}" for e in edges), f">{number(edges[-1])}"]
    right.set_xticks(x, names, rotation=60, fontsize=7)
    right.set_title(f"quantile bins: PSI {sections.fmt_num(f.psi)}, p {sections.fmt_p(f.p)} "
                    f"({f.status})")  # fmt: skip
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
    ax.set_title(f"answers ({o.kind}): PSI {sections.fmt_num(o.psi)} ({o.status})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write(r: Report, out: Path, matrix: np.ndarray, profile: dict) -> Path:  # type: ignore[type-arg]
    """The report in ``out`` (created; an existing non-empty folder is refused).

    Raises:
        OutputError: ``out`` is occupied or cannot be written.
    """
    from monitoring.reference import Reference

    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputError(f"{out} exists and is not an empty folder: choose another --out")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-"))
    except OSError as exc:
        raise OutputError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
    try:
        ref = Reference.of_profile(profile)
        plots = []
        for j, f in enumerate(r.features):
            if f.live_shares:
                name = f"feature-{_slug(f.name)}.png"
                quantiles = profile["features"][f.name]["quantiles"]
                _feature_plot(f, matrix[:, j], ref.column(f.name), quantiles, tmp / name)
                plots.append(name)
        _output_plot(r.output, tmp / "output-mix.png")
        text = sections.render(r) + "\n" + "".join(f"![{p}]({p})\n" for p in plots)
        (tmp / "report.md").write_text(text + "\n![answers](output-mix.png)\n", encoding="utf-8")
        (tmp / "report.html").write_text(sections.render(r, "html"), encoding="utf-8")
        (tmp / "summary.json").write_text(json.dumps(sections.summary(r), indent=2) + "\n")
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except OSError as exc:
        raise OutputError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out / "report.md"
