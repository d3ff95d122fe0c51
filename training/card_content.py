"""What a model card says, from the facts recorded at registration (training/card_facts.py):
intended use, data, the domain in words (from the bundle's training profile), held-out
metrics beside the baseline, calibration and what the confidence is worth inside and outside
the domain, known limits and lineage."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from document import DASH, Block, Section, Table, markdown, number, share, to_html
from inference import calendar_features
from training.mlflow_names import (
    ARTIFACT_SHA256,
    DATA_SHA256,
    GIT_SHA,
    PROMOTED_AT,
    S3_URI,
    S3_VERSION_ID,
)

# Units of the shipped datasets' features (data/README.md); a feature without one is shown
# without a unit. Keys are lowercase.
UNITS = {
    "ph": "", "turbidity": "NTU", "tds": "mg/L", "temperature": "°C", "hour_of_day": "h",
    "hardness": "mg/L", "solids": "mg/L", "chloramines": "mg/L", "sulfate": "mg/L",
    "conductivity": "µS/cm", "organic_carbon": "mg/L", "trihalomethanes": "µg/L",
}  # fmt: skip
# Features that are total dissolved solids, which say what kind of water it was.
TDS_NAMES = ("tds", "solids", "total_dissolved_solids")
# Water by TDS (mg/L), Freeze & Cherry (1979), Groundwater, table 7.5.
WATER_CLASSES = (
    (1_000.0, "fresh water"),
    (10_000.0, "brackish water"),
    (100_000.0, "saline water (estuarine or sea water)"),
    (math.inf, "brine"),
)
FRESH_MAX = WATER_CLASSES[0][0]


def unit(name: str) -> str:
    return UNITS.get(name.lower(), "")


def water(tds_median: float) -> str:
    return next(kind for limit, kind in WATER_CLASSES if tds_median < limit)


def _quantile(entry: dict[str, Any], level: str) -> float | None:
    value = entry.get("quantiles", {}).get(level)
    return None if value is None else float(value)


def _range(entry: dict[str, Any], lo: str, hi: str, name: str) -> str:
    low, high = _quantile(entry, lo), _quantile(entry, hi)
    return "n/a" if low is None else f"{number(low)}{DASH}{number(high, unit(name))}"


def domain_words(f: dict[str, Any]) -> list[str]:
    """The domain in sentences: what water, the quartiles of the telling features, and what
    falls outside (e.g. fresh water for a model trained on an estuary)."""
    profile = f.get("profile")
    if not isinstance(profile, dict):
        return ["This version's bundle records no training profile: its domain is unknown."]
    features = profile["features"]
    lo_key = f"{profile['lower_q']:g}"
    out = []
    tds = next((n for n in f["features"] if n.lower() in TDS_NAMES), None)
    if tds is not None and _quantile(features[tds], "0.5") is not None:
        entry = features[tds]
        median, low = _quantile(entry, "0.5") or 0.0, _quantile(entry, lo_key) or 0.0
        sentence = (
            f"By its dissolved solids, the training water is {water(median)}: {tds} "
            f"{_range(entry, '0.25', '0.75', tds)} between the quartiles (median "
            f"{number(median, unit(tds))})."
        )
        if low > FRESH_MAX:
            sentence += (
                f" Fresh-water readings (TDS below {number(FRESH_MAX)} mg/L) are outside the "
                f"domain, whose lowest {tds} is {number(low, unit(tds))}."
            )
        out.append(sentence)
    ranges = [
        f"{name} {_range(features[name], '0.25', '0.75', name)}"
        for name in f["features"]
        if name != tds and _quantile(features[name], "0.25") is not None
    ]
    if ranges:
        out.append("Between the quartiles: " + "; ".join(ranges) + ".")
    grid = profile.get("combination")
    if grid and grid.get("method") == "none":
        out.append(
            f"Combinations: no verdict. The rank grid of its {len(f['features'])} features "
            f"certifies {grid['certified']:.1%} of the training rows, so every reading would be "
            "measured against every training row; readings far from all of them are rare "
            "besides (the features are close to independent)."
        )
    elif grid:
        out.append(
            f"Combinations: a reading is unusual when its nearest training row, in rank space, "
            f"is farther than {grid['radius']:.3f}, the distance that "
            f"{grid['held_out_inside']:.1%} of held-out weeks' readings stay within."
        )
    out.append(
        f"Domain rule: {profile['rule']} Outside, a reading is still answered, with "
        '"inside": false and a confidence never above the model\'s (see Calibration).'
    )
    return out


def domain_table(f: dict[str, Any]) -> Table:
    profile = f["profile"]
    lo_key, hi_key = f"{profile['lower_q']:g}", f"{profile['upper_q']:g}"
    rows = []
    for name in f["features"]:
        entry = profile["features"][name]
        meaning = calendar_features.FEATURES[name].meaning if name in f["calendar"] else ""
        rows.append((
            name + (f" ({meaning})" if meaning else ""), unit(name) or "-",
            _range(entry, lo_key, hi_key, name), _range(entry, "0.25", "0.75", name),
            number(_quantile(entry, "0.5")), share(float(entry.get("missing_rate") or 0.0)),
        ))  # fmt: skip
    header = ("feature", "unit", f"domain ({float(lo_key):.1%}{DASH}{float(hi_key):.1%})",
              "quartiles", "median", "missing in training")  # fmt: skip
    return Table(header, rows)


def _metric_rows(f: dict[str, Any]) -> list[tuple[str, str, str]]:
    from training.spec import METRICS

    m = f["metrics"]
    rows = []
    for name in METRICS[f["task"]]:
        if name not in m:
            continue
        base = m.get(f"baseline_{name}")
        rows.append((name, f"{m[name]:.4f}", "-" if base is None else f"{base:.4f}"))
    return rows


def _answers(f: dict[str, Any]) -> str:
    out = f["output"]
    if out["kind"] == "banded_regression":
        bands = ", ".join(f"{b['label']} ≥ {b['min']:g}" for b in out["bands"])
        return (f"It answers {out['value_name']} (clipped to {out['clip'][0]:g}{DASH}"
                f"{out['clip'][1]:g}), its band {out['band_name']} ({bands}) and a confidence: "
                "the probability that the true value lies in the reported band.")  # fmt: skip
    return (f"It answers {out['label_name']} (true when the probability reaches "
            f"{out['threshold']:g}), the probability and a confidence: the probability of "
            "the reported label.")  # fmt: skip


def _calibration(f: dict[str, Any]) -> list[str]:
    m, out = f["metrics"], f["output"]
    if out["kind"] == "banded_regression":
        items = [
            f"The error is taken as normal with sigma = {out.get('sigma_scale', 'n/a')} times the "
            "error model's prediction (the scale with the lowest out-of-fold Brier score)."
        ]
        if "band_accuracy" in m:
            items.append(
                f"Held out: the band was right for {m['band_accuracy']:.1%} of readings, the "
                f"mean confidence was {m.get('confidence_mean', math.nan):.2f}, expected "
                f"calibration error (10 bins) {m.get('confidence_ece', math.nan):.3f}, Brier "
                f"score {m.get('confidence_brier', math.nan):.3f}."
            )
        return items
    return [
        f"The probability is XGBoost's logistic output, not recalibrated. Held out: Brier "
        f"score {m.get('brier', math.nan):.3f} (baseline {m.get('baseline_brier', math.nan):.3f}),"
        f" log loss {m.get('log_loss', math.nan):.3f} (baseline "
        f"{m.get('baseline_log_loss', math.nan):.3f})."
    ]


def _served_rule(f: dict[str, Any]) -> str:
    if f["output"]["kind"] == "banded_regression":
        return "the model's confidence, capped at the training labels' share of the band"
    return ("the probability moves toward the training labels' positive share, never past "
            "the threshold (the label stays the model's)")  # fmt: skip


def confidence_blocks(f: dict[str, Any]) -> list[Block]:
    """What the served confidence is worth on the held-out rows, inside and outside the
    domain, against the model's own and the training labels' share (card_facts.confidence)."""
    c = f.get("confidence")
    if not c:
        return []
    rows = []
    for side in ("inside", "outside"):
        s = c[side]
        if not s.get("rows"):
            rows.append((side, "0", "-", "-", "-"))
            continue
        mean, brier = s["mean_confidence"], s["brier"]
        rows.append((
            side, f"{s['rows']:,}", f"{s['right']:.1%}",
            " / ".join(f"{mean[k]:.3f}" for k in ("model", "served", "prior")),
            " / ".join(f"{brier[k]:.4f}" for k in ("model", "served", "prior")),
        ))  # fmt: skip
    what = "band" if f["output"]["kind"] == "banded_regression" else "label"
    blocks: list[Block] = [
        f"Outside the domain, served: {_served_rule(f)}. Held out ({c['unusual_rows']:,} "
        f"unusual combinations; served above the model's: {c['raised']:,}):",
        Table(
            (
                "held out",
                "rows",
                f"{what} right",
                "mean confidence: model / served / prior",
                "Brier: model / served / prior",
            ),
            rows,
        ),
    ]
    undated = c.get("without_timestamp")
    if undated:
        blocks.append(f"Without a timestamp (never missing in training) the held-out RMSE is "
                      f"{undated['rmse']:.2f}, against {undated['rmse_with']:.2f} with one; "
                      'the verdict says so ("missing").')  # fmt: skip
    return blocks


def _limits(f: dict[str, Any]) -> list[str]:
    m, data = f["metrics"], f["data"]
    out = [
        "Readings outside the training domain are answered, flagged inside: false: treat their "
        "answers as extrapolation."
    ]
    dates = data.get("dates")
    if dates:
        first, last = (datetime.fromisoformat(dates[k]) for k in ("first", "last"))
        days = (last - first).days
        if days < 365:
            out.append(f"The data covers {days} days ({first.date()} to {last.date()}): a full "
                       "seasonal cycle was never seen.")  # fmt: skip
    if f["task"] == "regression" and "r2" in m:
        out.append(f"On the held-out data the readings explain R² = {m['r2']:.3f} of the "
                   "variance of the target.")  # fmt: skip
    if f["task"] == "binary" and "f1" in m:
        base = m.get("baseline_accuracy", math.nan)
        out.append(f"F1 {m['f1']:.3f} and accuracy {m.get('accuracy', math.nan):.3f} at the "
                   f"served threshold (baseline accuracy {base:.3f}).")  # fmt: skip
    split = data["split"]
    if split["method"] == "chronological":
        out.append(f"Metrics are for the latest {split['test_size']:.0%} of the record, a "
                   "later period than training: an estimate for the future, in that "
                   "water.")  # fmt: skip
    else:
        out.append(f"Held-out rows ({split['test_size']:.0%}, {split['method']}) come from the "
                   "same period and source as training: new sources may do worse.")  # fmt: skip
    nullable = [n for n in f["nullable"] if n not in f["calendar"]]
    if nullable:
        out.append(f"Missing values are accepted for {', '.join(nullable)} (learned as such).")
    dropped = int(m.get("rows_outside_serving_range", 0))
    if dropped:
        out.append(f"{dropped:,} rows outside the serving ranges were never fitted.")
    return out


def sections(f: dict[str, Any], release: dict[str, str] | None = None) -> list[Section]:
    m, data, lineage = f["metrics"], f["data"], f["lineage"]
    dates = data.get("dates")
    when = "no timestamps" if not dates else f"{dates['first'][:10]} to {dates['last'][:10]}"
    rows = [
        ("source", data["source"]), ("SHA-256", data["sha256"]), ("dates", when),
        ("rows read", f"{int(m.get('rows_read', 0)):,}"),
        ("filter", data["filter"] or "none"),
        ("removed by the filter", f"{int(m.get('rows_filtered', 0)):,}"),
        ("unlabelled / missing a feature / outside serving ranges",
         " / ".join(f"{int(m.get(k, 0)):,}" for k in ("rows_unlabelled",
                    "rows_missing_required_feature", "rows_outside_serving_range"))),
        ("train / held out",
         f"{int(m.get('rows_train', 0)):,} / {int(m.get('rows_held_out', 0)):,}"
         + (f" (metrics on a seeded sample of {int(m['rows_held_out_evaluated']):,})"
            if "rows_held_out_evaluated" in m else "")),
        ("split", "{method}, test_size {test_size}, seed {seed}".format(**data["split"])
         + (f" (held out from {dates['held_out_from'][:10]})"
            if dates and "held_out_from" in dates else "")),
        ("label", ", ".join(f"{k} {v}" for k, v in f["label"].items() if k != "guidelines")),
    ]  # fmt: skip
    domain = Section("Domain: where its answers hold", list(domain_words(f)))
    if isinstance(f.get("profile"), dict):
        domain.blocks.append(domain_table(f))
        outputs = f["profile"]["outputs"]
        pairs = zip(outputs["labels"], outputs["shares"], strict=True)
        named = "" if outputs["kind"] == "bands" else f"{f['output'].get('label_name')} "
        mix = ", ".join(f"{named}{str(label).lower() if named else label} {share(s)}"
                        for label, s in pairs)  # fmt: skip
        domain.blocks.append(f"Answers on the training rows: {mix}.")
    primary = f["gates"]["primary"]
    better = "higher" if f["gates"]["greater_is_better"] else "lower"
    lineage_rows = [
        ("MLflow version", f"{f['name']} {f['version']} (run {f['run_id']})"),
        ("data SHA-256", lineage.get(DATA_SHA256, "")),
        ("git commit", lineage.get(GIT_SHA, "")),
        ("bundle SHA-256", lineage.get(ARTIFACT_SHA256, "")),
    ]
    if release and release.get(S3_VERSION_ID):
        lineage_rows += [("S3 VersionId", release[S3_VERSION_ID]),
                         ("S3 object", release.get(S3_URI, "")),
                         ("promoted at", release.get(PROMOTED_AT, ""))]  # fmt: skip
    else:
        lineage_rows.append(("S3 VersionId", "not promoted"))
    return [
        Section(
            "Intended use",
            [
                f"{f['description']} {_answers(f)}",
                f"Inputs, in order: {', '.join(f['features'])}"
                + (
                    f" ({', '.join(f['calendar'])} from the reading's timestamp)"
                    if f["calendar"]
                    else ""
                )
                + ".",
                "Use it for readings like those it was trained on (see Domain); not as a "
                "substitute for a laboratory analysis, nor for other water.",
            ],
        ),
        Section("Data", [Table(("", "value"), rows)]),
        domain,
        Section(
            "Held-out metrics",
            [
                f"Primary metric {primary} ({better} is better); the baseline is the training "
                "mean (regression) or the class prior (classification).",
                Table(("metric", "model", "baseline"), _metric_rows(f)),
            ],
        ),
        Section("Calibration", [*_calibration(f), *confidence_blocks(f)]),
        Section("Known limits", [_limits(f)]),
        Section("Lineage", [Table(("", "value"), lineage_rows)]),
    ]


def title(f: dict[str, Any]) -> str:
    return f"Model card: {f['name']} version {f['version']}"


def render(f: dict[str, Any], release: dict[str, str] | None = None, form: str = "md") -> str:
    parts = sections(f, release)
    return to_html(title(f), parts) if form == "html" else markdown(title(f), parts)
