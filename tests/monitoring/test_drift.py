"""`python -m monitoring.drift`: shifted and unshifted logs, labels, S3 prefixes, bad inputs."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inference.bundle import sha256_hex
from monitoring import drift, log
from monitoring.errors import DRIFT, OK
from tests.inference import synthetic
from tests.monitoring import drift_helpers as h

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bundle() -> dict[str, Any]:
    return h.wqi_bundle()


@pytest.fixture
def bundle_file(tmp_path: Path, bundle: dict[str, Any]) -> tuple[Path, str]:
    path = tmp_path / "model.joblib"
    return path, synthetic.write(bundle, path)


def run(bundle_file: tuple[Path, str], *args: str) -> int:
    path, digest = bundle_file
    return drift.main(["wqi", *args, "--bundle", str(path), "--sha256", digest])


def test_a_shifted_log_exits_with_the_drift_code_and_a_report_with_plots(
    tmp_path: Path, bundle: dict[str, Any], bundle_file: tuple[Path, str],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    fresh = h.estuary(600, seed=5, tds_scale=0.013)  # TDS about 410 mg/L: fresh water
    path = h.write_jsonl(tmp_path / "log.jsonl", h.records(bundle, fresh))
    out = tmp_path / "report"
    assert run(bundle_file, str(path), "--out", str(out)) == DRIFT
    printed = capsys.readouterr().out
    assert "DRIFT: tds" in printed
    summary = json.loads((out / "summary.json").read_text())
    tds = next(f for f in summary["features"] if f["name"] == "tds")
    assert tds["status"] == "drift" and tds["psi"] > 0.25 and tds["outside_rate"] > 0.99
    assert summary["outside_rows"] > 0.99
    stable = [f["name"] for f in summary["features"] if f["status"] == "stable"]
    assert set(stable) == {"pH", "turbidity", "temperature", "hour_of_day"}
    for name in h.FEATURES:
        assert (out / f"feature-{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "output-mix.png").is_file()
    text = (out / "report.md").read_text()
    assert "![tds](feature-tds.png)" in text and "PSI" in text and "Bonferroni" in text


def test_an_unshifted_log_sampled_from_the_training_distribution_exits_zero(
    tmp_path: Path, bundle: dict[str, Any], bundle_file: tuple[Path, str],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    same = h.estuary(800, seed=7)
    path = h.write_jsonl(tmp_path / "log.jsonl", h.records(bundle, same))
    out = tmp_path / "report"
    assert run(bundle_file, str(path), "--out", str(out)) == OK
    summary = json.loads((out / "summary.json").read_text())
    assert summary["alarms"] == []
    assert all(f["psi"] < 0.1 for f in summary["features"]), summary["features"]
    assert summary["output"]["status"] == "stable"
    assert "no threshold passed" in capsys.readouterr().out


def test_answers_whose_band_mix_moved_are_drift(
    tmp_path: Path, bundle: dict[str, Any], bundle_file: tuple[Path, str]
) -> None:
    rows = h.records(bundle, h.estuary(500, seed=8))
    for r in rows:  # the model's inputs as trained, but the answers all one band
        r["output"]["quality"] = "Poor"
    path = h.write_jsonl(tmp_path / "log.jsonl", rows)
    assert run(bundle_file, str(path), "--out", str(tmp_path / "r")) == DRIFT
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["output"]["status"] == "drift"
    assert [f["status"] for f in summary["features"]].count("drift") == 0


def labels_for(rows: list[dict[str, Any]], noise: float, seed: int = 0) -> list[str]:
    """A lab label for every other reading: the served index plus noise, at the reading's time
    give or take 10 minutes."""
    rng = np.random.default_rng(seed)
    out = ["device,time,label"]
    for r in rows[::2]:
        when = np.datetime64(r["timestamp"][:19]) + np.timedelta64(int(rng.integers(-10, 10)), "m")
        truth = r["output"]["wqi"] + rng.normal(0.0, noise)
        out.append(f"{r['device']},{when}+10:00,{truth:.2f}")
    return out


def test_labels_join_by_device_and_nearest_time_and_give_live_metrics(
    tmp_path: Path, bundle: dict[str, Any], bundle_file: tuple[Path, str]
) -> None:
    rows = h.records(bundle, h.estuary(400, seed=9))
    path = h.write_jsonl(tmp_path / "log.jsonl", rows)
    lines = labels_for(rows, noise=4.0)
    lines.append("another-buoy,2026-11-01T10:00:00+10:00,80")  # no record of that device
    labels = tmp_path / "labels.csv"
    labels.write_text("\n".join(lines) + "\n")
    assert run(bundle_file, str(path), "--out", str(tmp_path / "r"), "--labels", str(labels)) == OK
    live = json.loads((tmp_path / "r" / "summary.json").read_text())["live"]
    assert live["joined"] == {"labels": 201, "matched": 200, "no_device": 0}
    assert 3.0 < live["live"]["rmse"] < 5.0 and live["status"] == "ok"
    assert live["held_out"] == {"rmse": 5.0, "mae": 4.0} and live["primary"] == "rmse"
    text = (tmp_path / "r" / "report.md").read_text()
    assert "## Live metrics (labels)" in text and "| rmse |" in text

    worse = tmp_path / "worse.jsonl"  # JSONL labels this time, far from the answers
    worse.write_text("".join(
        json.dumps({"device": d, "time": t, "label": float(v)}) + "\n"
        for d, t, v in (line.split(",") for line in labels_for(rows, noise=15.0)[1:])
    ))  # fmt: skip
    code = run(bundle_file, str(path), "--out", str(tmp_path / "r2"), "--labels", str(worse))
    assert code == DRIFT
    live = json.loads((tmp_path / "r2" / "summary.json").read_text())["live"]
    assert live["status"] == "degraded" and live["live"]["rmse"] > 6.0


def test_too_few_labels_are_reported_not_judged(
    tmp_path: Path, bundle: dict[str, Any], bundle_file: tuple[Path, str]
) -> None:
    rows = h.records(bundle, h.estuary(40, seed=9))
    path = h.write_jsonl(tmp_path / "log.jsonl", rows)
    labels = tmp_path / "labels.csv"
    labels.write_text("\n".join(labels_for(rows, noise=30.0)) + "\n")
    assert run(bundle_file, str(path), "--out", str(tmp_path / "r"), "--labels", str(labels)) == OK
    live = json.loads((tmp_path / "r" / "summary.json").read_text())["live"]
    assert live["status"] == "too few labels" and live["joined"]["matched"] == 20


def cloudwatch_export(rows: list[dict[str, Any]]) -> bytes:
    """What a CloudWatch Logs export task writes: gzip, `<timestamp> <json>` per line, the
    record inside a Powertools log line."""
    powertools = {"level": "INFO", "message": "prediction", "service": "waterml-inference"}
    lines = [f"{r['time']} {json.dumps(powertools | r)}" for r in rows]
    lines.insert(1, '2026-11-01T00:00:00.000Z {"level": "INFO", "message": "model loaded"}')
    return gzip.compress(("\n".join(lines) + "\n").encode())


def firehose(rows: list[dict[str, Any]]) -> bytes:
    """A subscription through Firehose: gzip members of logEvents envelopes, back to back."""
    members = b""
    for chunk in (rows[: len(rows) // 2], rows[len(rows) // 2 :]):
        envelope = {"messageType": "DATA_MESSAGE", "logGroup": "/aws/lambda/waterml",
                    "logEvents": [{"id": str(i), "timestamp": 0, "message": json.dumps(r)}
                                  for i, r in enumerate(chunk)]}  # fmt: skip
        members += gzip.compress(json.dumps(envelope).encode())
    return members


def test_an_s3_prefix_of_exports_and_firehose_objects_through_the_loopback_server(
    tmp_path: Path, s3_env: dict[str, str], bundle: dict[str, Any],
    bundle_file: tuple[Path, str],
) -> None:  # fmt: skip
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_env["endpoint"])
    shifted = h.records(bundle, h.estuary(300, seed=11, tds_scale=0.013))
    s3.put_object(Bucket=s3_env["bucket"], Key="logs/wqi/2026/11/01/000000.gz",
                  Body=cloudwatch_export(shifted[:150]))  # fmt: skip
    s3.put_object(Bucket=s3_env["bucket"], Key="logs/wqi/2026/11/02/firehose-1",
                  Body=firehose(shifted[150:]))  # fmt: skip
    s3.put_object(Bucket=s3_env["bucket"], Key="elsewhere/x.jsonl", Body=b"not under the prefix")
    source = f"s3://{s3_env['bucket']}/logs/wqi/"
    read = log.read(source)
    assert (read.files, len(read.records), read.other, read.unreadable) == (2, 300, 1, 0)
    assert run(bundle_file, source, "--out", str(tmp_path / "r")) == DRIFT
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["records"] == 300 and summary["source"] == source


def test_unreadable_lines_are_counted_and_reported_not_fatal(
    tmp_path: Path, bundle: dict[str, Any], bundle_file: tuple[Path, str]
) -> None:
    rows = h.records(bundle, h.estuary(200, seed=12))
    bad = ["{truncated", "plain text", json.dumps({"kind": "prediction", "model": {"name": "wqi"}})]
    path = h.write_jsonl(tmp_path / "log.jsonl", rows, bad)
    assert run(bundle_file, str(path), "--out", str(tmp_path / "r")) == OK
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert (summary["records"], summary["unreadable"]) == (200, 3)
    text = (tmp_path / "r" / "report.md").read_text()
    assert "3 unreadable" in text and "prediction record without 'inputs'" in text


def error_of(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("", "is empty"),
        ("\n\n", "is empty"),
        ("garbage\n{also not json\n", "no readable prediction record"),
    ],
)
def test_a_missing_empty_or_unreadable_log_is_one_line_and_exit_3(
    tmp_path: Path, bundle_file: tuple[Path, str], capsys: pytest.CaptureFixture[str],
    content: str | None, message: str,
) -> None:  # fmt: skip
    path = tmp_path / "log.jsonl"
    if content is not None:
        path.write_text(content)
    assert run(bundle_file, str(path), "--out", str(tmp_path / "r")) == 3
    assert message in error_of(capsys)
    assert not (tmp_path / "r").exists()


def test_records_of_another_model_only_are_refused(
    tmp_path: Path, bundle: dict[str, Any], bundle_file: tuple[Path, str],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    rows = h.records(bundle, h.estuary(10))
    for r in rows:
        r["model"]["name"] = "potability"
    path = h.write_jsonl(tmp_path / "log.jsonl", rows)
    assert run(bundle_file, str(path)) == 3
    assert "holds no record of model 'wqi'; found potability (10)" in error_of(capsys)


def test_a_bundle_that_fails_its_digest_or_has_no_profile_is_refused(
    tmp_path: Path, bundle: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    path = h.write_jsonl(tmp_path / "log.jsonl", h.records(bundle, h.estuary(10)))
    file = tmp_path / "model.joblib"
    digest = synthetic.write(bundle, file)
    assert drift.main(["wqi", str(path), "--bundle", str(file), "--sha256", "0" * 64]) == 4
    assert "SHA-256 mismatch" in error_of(capsys)
    bare = {k: v for k, v in bundle.items() if k != "profile"}
    digest = synthetic.write(bare, file)
    assert drift.main(["wqi", str(path), "--bundle", str(file), "--sha256", digest]) == 4
    assert "has no training profile" in error_of(capsys)


def test_bad_labels_and_an_occupied_out_folder(
    tmp_path: Path, bundle: dict[str, Any], bundle_file: tuple[Path, str],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    path = h.write_jsonl(tmp_path / "log.jsonl", h.records(bundle, h.estuary(50)))
    labels = tmp_path / "labels.csv"
    labels.write_text("device,when,label\nb,2026-11-01T00:00:00Z,3\n")
    assert run(bundle_file, str(path), "--labels", str(labels)) == 5
    assert "header lacks time" in error_of(capsys)
    labels.write_text("device,time,label\nb,2026-11-01 00:00,3\n")
    assert run(bundle_file, str(path), "--labels", str(labels)) == 5
    assert "labels.csv:2: time must carry a UTC offset" in error_of(capsys)
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    assert run(bundle_file, str(path), "--out", str(occupied)) == 6
    assert "not an empty folder" in error_of(capsys)
    assert [p.name for p in occupied.iterdir()] == ["keep.txt"]


def test_the_entry_point_prints_exit_codes_and_no_traceback(tmp_path: Path) -> None:
    helped = subprocess.run([sys.executable, "-m", "monitoring.drift", "--help"], cwd=REPO,
                            capture_output=True, text=True)  # fmt: skip
    assert helped.returncode == 0 and "10  a threshold passed" in helped.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "monitoring.drift", "wqi", str(tmp_path / "none.jsonl"),
         "--bundle", str(tmp_path / "b.joblib"), "--sha256", "0" * 64],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert missing.returncode == 3, missing.stderr
    assert missing.stderr.startswith("drift: error: log") and "Traceback" not in missing.stderr


def test_log_lines_in_every_shape_are_read(tmp_path: Path, bundle: dict[str, Any]) -> None:
    r = h.records(bundle, h.estuary(3))
    lines = [
        json.dumps(r[0]),  # JSONL
        "2026-11-01T00:00:00.000Z " + json.dumps({"level": "INFO", **r[1]}),  # export line
        json.dumps({"level": "INFO", "message": json.dumps(r[2])}),  # record as a message
        json.dumps({"level": "INFO", "message": "model loaded"}),  # another log line
    ]
    path = tmp_path / "mixed.log"
    path.write_text("\n".join(lines) + "\n")
    read = log.read(str(path))
    assert [x["request_id"] for x in read.records] == [x["request_id"] for x in r]
    assert (read.lines, read.other, read.unreadable) == (4, 1, 0)
    assert sha256_hex(path.read_bytes())  # the file is read as bytes, untouched


@pytest.mark.parametrize("name", ["../wqi", "WQI", "wqi/../potability"])
def test_an_invalid_model_name_is_refused_before_any_path_or_model_is_named(
    name: str, bundle_file: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: `../wqi` named the report folder .local/drift/../wqi-<time> and was looked
    up in the log (exit 3); the name rule is the one every entry point imports."""
    path, digest = bundle_file
    log_file = tmp_path / "log.jsonl"
    log_file.write_text("")
    with pytest.raises(SystemExit) as exited:
        drift.main([name, str(log_file), "--bundle", str(path), "--sha256", digest])
    assert exited.value.code == 2
    assert "invalid model name" in capsys.readouterr().err
