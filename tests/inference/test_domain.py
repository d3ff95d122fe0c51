"""The domain verdict, the out-of-domain confidence, the per-invocation EMF document and the
sampled prediction log, on a synthetic bundle with a training profile (the real trained
bundles: test_trained_domain.py)."""

from __future__ import annotations

import copy
import io
import json
import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import synthetic
from serving_helpers import context, local_config, signing_env

from inference import handler
from inference.bundle import BundleError
from inference.domain import INSIDE, Domain, Verdict
from inference.prediction_log import PredictionLog

FRESH = synthetic.GOOD_READING | {"tds": 100.0}  # below the synthetic domain's 300 mg/L
HOT_FRESH = FRESH | {"temperature": 40.0}


def serve(cache_dir: Path, bundle: dict[str, Any], **config: Any) -> handler.Service:
    data = synthetic.dumps(bundle)
    return handler.init(local_config(data, cache_dir, model_version="7", **config))


def emf(text: str) -> list[dict[str, Any]]:
    """The EMF documents of the answers (not the cold-start or error ones)."""
    docs = [json.loads(line) for line in text.splitlines() if line.startswith('{"_aws"')]
    return [d for d in docs if "Readings" in d]


def predictions(text: str) -> list[dict[str, Any]]:
    """Prediction records: the ``message`` of Powertools log lines."""
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [
        line["message"]
        for line in lines
        if isinstance(line.get("message"), dict) and line["message"].get("kind") == "prediction"
    ]


# ---- the rule ---------------------------------------------------------------------------------
def domain() -> Domain:
    return Domain(synthetic.profile(synthetic.WQI_DOMAIN), list(synthetic.WQI_DOMAIN))


def test_the_rule_flags_values_beyond_the_quantiles_and_never_a_missing_one() -> None:
    d = domain()
    rows = np.array(
        [
            [7.4, 3.2, 410.0, 21.5],  # inside
            [7.0, 0.5, 300.0, 32.0],  # on every bound: inside
            [7.4, 3.2, 100.0, 21.5],  # tds low
            [6.9, 3.2, 410.0, 40.0],  # pH low, temperature high
            [math.nan, 3.2, 410.0, 21.5],  # missing: not outside
        ],
        dtype=np.float32,
    )
    want = [(True, ()), (True, ()), (False, ("tds",)), (False, ("pH", "temperature")),
            (True, ())]  # fmt: skip
    for checked in (d.check(rows), d.check(np.repeat(rows, 3, axis=0)[::3])):  # n > 4: numpy
        assert [(v["inside"], v["outside"]) for v in checked.verdicts] == want
        assert [bool(x) for x in checked.outside_rows] == [False, False, True, True, False]
        assert checked.counts[:4] == [1, 0, 1, 1] and checked.unusual_rows == 0
    # The plain-float path (up to 4 rows) and numpy's give the same verdicts row by row.
    big = d.check(np.tile(rows, (20, 1)))
    assert big.verdicts == [v for _ in range(20) for v in d.check(rows).verdicts]


@pytest.mark.parametrize("features", [4, 13])  # a lookup table per pattern, and without one
def test_the_float32_rule_is_the_float64_rule_next_to_the_bounds(features: int) -> None:
    """The matrix is compared in float32 with bounds rounded inwards; the answer must be the
    rule's on the float64 bounds, for values one float32 step either side of each."""
    rng = np.random.default_rng(0)
    names = [f"f{j}" for j in range(features)]
    lows, highs = rng.uniform(-5, 5, features), rng.uniform(10, 20, features)
    bounds = {n: (float(lo), float(hi)) for n, lo, hi in zip(names, lows, highs, strict=True)}
    d = Domain(synthetic.profile(bounds), names)
    edges = np.concatenate([lows, highs]).astype(np.float32)
    steps = [
        np.nextafter(edges, np.float32(-np.inf)),
        edges,
        np.nextafter(edges, np.float32(np.inf)),
    ]
    values = rng.choice(np.concatenate(steps), size=(400, features)).astype(np.float32)
    want = (values.astype(np.float64) < lows) | (values.astype(np.float64) > highs)
    checked = d.check(values)
    assert [bool(x) for x in checked.outside_rows] == want.any(axis=1).tolist()
    assert checked.counts[:features] == want.sum(axis=0).tolist()
    assert [v["outside"] for v in checked.verdicts] == [
        tuple(n for n, out in zip(names, row, strict=True) if out) for row in want
    ]
    assert d.check(values[:3]).verdicts == checked.verdicts[:3]  # the plain-float path agrees


def test_verdicts_are_shared_and_read_only_but_copy_and_pickle() -> None:
    d = domain()
    checked = d.check(np.array([[7.4, 3.2, 100.0, 21.5]] * 300, dtype=np.float32))
    assert len({id(v) for v in checked.verdicts}) == 1  # one object per pattern, not per row
    verdict = checked.verdicts[0]
    with pytest.raises(TypeError, match="read-only"):
        verdict["inside"] = True
    with pytest.raises(TypeError):
        verdict.update(inside=True)
    assert copy.deepcopy(verdict) == verdict == {"inside": False, "outside": ("tds",),
                                                 "unusual": (), "missing": ()}  # fmt: skip
    assert pickle.loads(pickle.dumps(verdict)) == verdict
    assert json.dumps(INSIDE) == '{"inside": true, "outside": [], "unusual": [], "missing": []}'
    assert isinstance(verdict, Verdict)


def test_an_incomplete_profile_is_refused_and_none_means_no_verdict() -> None:
    profile = synthetic.profile(synthetic.WQI_DOMAIN)
    del profile["features"]["tds"]
    with pytest.raises(BundleError, match="profile is incomplete"):
        Domain(profile, list(synthetic.WQI_DOMAIN))
    assert Domain.of_bundle(synthetic.wqi_bundle()) is None


# ---- answers ----------------------------------------------------------------------------------
def test_an_answer_outside_says_so_and_its_confidence_falls_to_the_prior(cache_dir: Path) -> None:
    serve(cache_dir, synthetic.wqi_profiled_bundle())
    inside = handler.lambda_handler({"deviceId": "a", "readings": synthetic.GOOD_READING})
    fresh = handler.lambda_handler({"deviceId": "b", "readings": FRESH})
    assert inside["prediction"] == {"deviceId": "a", "wqi": 90.0, "quality": "Excellent",
                                    "confidence": 0.5, "domain": INSIDE}  # fmt: skip
    # The same model output (90, Excellent), but the reading is outside: the confidence falls
    # to the training labels' share of Excellent (0.2 in this profile), what is known without
    # the reading, as that is lower than the model's 0.5.
    assert fresh["prediction"] == {"deviceId": "b", "wqi": 90.0, "quality": "Excellent",
                                   "confidence": 0.2,
                                   "domain": Verdict(False, ("tds",))}  # fmt: skip


@pytest.mark.parametrize("rows", [3, 600])  # the plain-float path and row blocks on threads
def test_a_batch_answers_each_reading_as_alone(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch, rows: int
) -> None:
    monkeypatch.setenv("INFERENCE_BATCH_THREADS", "2")
    serve(cache_dir, synthetic.wqi_profiled_bundle())
    kinds = [synthetic.GOOD_READING, FRESH, HOT_FRESH]
    records = [{"deviceId": f"d{i}", "readings": kinds[i % 3]} for i in range(rows)]
    batch = handler.lambda_handler({"records": records})["predictions"]
    alone = [handler.lambda_handler(r)["prediction"] for r in records]
    assert batch == alone
    assert [a["domain"]["outside"] for a in batch[:3]] == [(), ("tds",), ("tds", "temperature")]


def test_without_a_profile_the_domain_is_null_and_the_confidence_stands(cache_dir: Path) -> None:
    serve(cache_dir, synthetic.wqi_bundle())
    answer = handler.lambda_handler({"readings": FRESH})["prediction"]
    assert answer["domain"] is None and answer["confidence"] == 0.5


# ---- metrics ----------------------------------------------------------------------------------
def test_one_emf_document_per_invocation_with_the_answers_counts(
    cache_dir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    serve(cache_dir, synthetic.wqi_profiled_bundle())
    capfd.readouterr()
    records = [{"readings": r} for r in [synthetic.GOOD_READING, FRESH, HOT_FRESH] * 100]
    handler.lambda_handler({"records": records}, context())
    (doc,) = emf(capfd.readouterr().out)
    (directive,) = doc["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "WaterML"
    assert directive["Dimensions"] == [["model", "model_version"]]
    assert (doc["model"], doc["model_version"]) == ("wqi", "7")
    values = {m["Name"]: doc[m["Name"]] for m in directive["Metrics"]}
    assert values == {
        "Readings": [300.0],
        "ReadingsOutOfDomain": [200.0],
        "OutOfDomain.tds": [200.0],
        "OutOfDomain.temperature": [100.0],
        "Answer.Excellent": [300.0],
        # 100 answers at 0.5 inside, 200 outside at the prior 0.2
        "MeanConfidence": [0.3],
    }
    units = {m["Name"]: m["Unit"] for m in directive["Metrics"]}
    assert units["MeanConfidence"] == "None" and units["Readings"] == "Count"
    handler.lambda_handler({"readings": synthetic.GOOD_READING}, context())
    (one,) = emf(capfd.readouterr().out)
    assert (one["Readings"], one["ReadingsOutOfDomain"]) == ([1.0], [0.0])
    assert not any(k.startswith("OutOfDomain.") for k in one)  # zero counts are left out


def test_the_filled_template_is_powertools_document(cache_dir: Path) -> None:
    """The per-invocation document is Powertools' serialization with this invocation's numbers
    (only the timestamp differs), for every metric-name set, first seen or reused."""
    service = serve(cache_dir, synthetic.wqi_profiled_bundle())
    X = [list(r.values()) for r in (synthetic.GOOD_READING, FRESH, HOT_FRESH)]
    for rows in ([X[0]], [X[1]], [X[0], X[2], X[2]], [X[1]], X * 3):
        tally = service.answered(rows, [None] * len(rows)).tally
        for _ in range(2):  # the template is built, then reused
            got = json.loads(service.metrics.document(tally))
            want = service.metrics.serialized(service.metrics.values(tally))
            assert abs(got["_aws"].pop("Timestamp") - want["_aws"].pop("Timestamp")) < 60_000
            assert got == json.loads(json.dumps(want))
    # One reading's documents are kept whole per tally (inside; tds outside), larger
    # invocations' per metric-name set (tds + temperature with inside).
    assert (len(service.metrics._single), len(service.metrics._templates)) == (2, 1)


def test_every_event_shape_publishes_its_readings(
    cache_dir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    serve(cache_dir, synthetic.wqi_profiled_bundle())
    events = Path(__file__).resolve().parents[2] / "inference" / "events"
    expected = {"direct": 1, "batch": 2, "apigw-rest-v1": 1, "http-api-v2": 2, "function-url": 1,
                "alb": 1, "sqs": 2, "freshwater": 1, "warmup": None}  # fmt: skip
    capfd.readouterr()
    for name, readings in expected.items():
        handler.lambda_handler(json.loads((events / f"{name}.json").read_text()), context())
        docs = emf(capfd.readouterr().out)
        assert [d["Readings"] for d in docs] == ([] if readings is None else [[readings]]), name


def test_error_counts_keep_their_documents(
    cache_dir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    serve(cache_dir, synthetic.wqi_profiled_bundle())
    capfd.readouterr()
    handler.lambda_handler({"readings": {"pH": 99}}, context())
    out = capfd.readouterr().out.splitlines()
    docs = [json.loads(x) for x in out if x.startswith('{"_aws"') and "ColdStart" not in x]
    assert [d.get("ValidationError") for d in docs] == [[1.0]]  # and no answers' document
    assert docs[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]]


def test_metrics_without_a_profile_leave_the_domain_out(
    cache_dir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    serve(cache_dir, synthetic.wqi_bundle())
    capfd.readouterr()
    handler.lambda_handler({"readings": FRESH}, context())
    (doc,) = emf(capfd.readouterr().out)
    assert doc["Readings"] == [1.0] and "ReadingsOutOfDomain" not in doc  # unknown, not 0


# ---- prediction log ---------------------------------------------------------------------------
def test_the_prediction_log_is_off_at_rate_zero(cache_dir: Path, log_lines: io.StringIO) -> None:
    serve(cache_dir, synthetic.wqi_profiled_bundle(), prediction_log_rate=0.0)
    handler.lambda_handler({"records": [{"readings": FRESH}] * 50}, context())
    assert predictions(log_lines.getvalue()) == []
    assert '"message":"model loaded"' in log_lines.getvalue()  # the capture works


def test_every_sampled_reading_is_one_record(cache_dir: Path, log_lines: io.StringIO) -> None:
    serve(cache_dir, synthetic.wqi_calendar_bundle(profile=synthetic.profile(
        synthetic.WQI_DOMAIN | {"hour_of_day": (0.0, 23.5)})), prediction_log_rate=1.0)  # fmt: skip
    records = [
        {"deviceId": "buoy-1", "timestamp": "2024-03-01T06:30:00+10:00", "readings": FRESH},
        {"readings": synthetic.GOOD_READING},
    ]
    answers = handler.lambda_handler({"records": records}, context("req-9"))["predictions"]
    logged = predictions(log_lines.getvalue())
    assert len(logged) == 2
    first, second = logged
    assert first.keys() == {"kind", "time", "request_id", "model", "device", "inputs",
                            "timestamp", "output"}  # fmt: skip
    assert first["time"].endswith("Z") and first["request_id"] == "req-9"
    assert first["model"] == {"name": "wqi", "version": "7", "s3VersionId": "v-local"}
    assert (first["device"], first["timestamp"]) == ("buoy-1", "2024-03-01T06:30:00+10:00")
    assert first["inputs"] == FRESH | {"hour_of_day": 6.5}  # the derived feature too
    assert first["output"] == json.loads(json.dumps({k: v for k, v in answers[0].items()
                                                     if k != "deviceId"}))  # fmt: skip
    assert first["output"]["domain"] == {"inside": False, "outside": ["tds"], "unusual": [],
                                         "missing": []}  # fmt: skip
    assert (second["device"], second["timestamp"]) == (None, None)
    assert second["inputs"]["hour_of_day"] is None


def test_sampling_is_seedable_and_near_its_rate() -> None:
    draws = [PredictionLog(0.05, seed=11).sample(10_000) for _ in range(2)]
    assert draws[0] == draws[1]
    assert 400 < len(draws[0]) < 600 and draws[0] == sorted(set(draws[0]))
    assert PredictionLog(0.0).sample(10_000) == []
    assert PredictionLog(1.0).sample(3) == [0, 1, 2]
    singles = PredictionLog(0.3, seed=2)
    assert 2_500 < sum(len(singles.sample(1)) for _ in range(10_000)) < 3_500
    with pytest.raises(ValueError):
        PredictionLog(1.5)


@pytest.mark.parametrize("value", ["2", "-0.1", "nan", "x"])
def test_a_bad_rate_is_a_config_error(value: str) -> None:
    from inference.config import ConfigError, from_env

    env = {
        "MODEL_BUCKET": "b", "MODEL_KEY": "k", "MODEL_VERSION_ID": "v", "MODEL_SHA256": "a" * 64,
        **signing_env("s"),
    }  # fmt: skip
    assert from_env(env).prediction_log_rate == 0.01  # the default
    assert from_env(env | {"PREDICTION_LOG_RATE": "0"}).prediction_log_rate == 0.0
    with pytest.raises(ConfigError, match=r"PREDICTION_LOG_RATE must be a number from 0 \(off\)"):
        from_env(env | {"PREDICTION_LOG_RATE": value})
