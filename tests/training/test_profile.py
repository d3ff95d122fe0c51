"""The training profile in every trained bundle: its contract, its values against the training
rows, and its determinism (the bytes' reproducibility across two trainings, profile included:
test_pipeline.py::test_two_make_train_runs_give_byte_identical_bundles)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inference.bundle import check_plain, loads
from inference.domain import Domain
from training import data, labels, model, profile
from training.spec import available, load_spec

REPO = Path(__file__).resolve().parents[2]
LEVELS = ["0", "0.005", "0.01", "0.05", "0.1", "0.25", "0.5", "0.75", "0.9", "0.95", "0.99",
          "0.995", "1"]  # fmt: skip


def bundle_of(trained: dict[str, Any], name: str) -> dict[str, Any]:
    return loads(Path(trained["bundles"][name]).read_bytes())


def training_rows(name: str) -> Any:
    spec = load_spec(name)
    frame = data.load_frame(spec.data, data.read_bytes(spec.data))
    dataset = model.make_dataset(frame, labels.make_label(frame, spec.label), spec)
    return model.split(dataset, spec)


@pytest.mark.parametrize("name", available())
def test_the_profile_keeps_its_contract(trained: dict[str, Any], name: str) -> None:
    spec = load_spec(name)
    found = bundle_of(trained, name)["profile"]
    assert found.keys() == {
        "rule", "lower_q", "upper_q", "rows", "features", "combination", "inside_share",
        "held_out_inside_share", "reference", "outputs",
    }  # fmt: skip
    assert (found["lower_q"], found["upper_q"]) == (0.005, 0.995)
    assert "0.5 %" in found["rule"] and "99.5 %" in found["rule"]
    assert found["rows"] == trained["results"][name].metrics["rows_train"]
    assert list(found["features"]) == list(spec.features)  # calendar features included
    for entry in found["features"].values():
        assert entry.keys() == {"quantiles", "mean", "std", "missing_rate"}
        assert list(entry["quantiles"]) == LEVELS
        levels = list(entry["quantiles"].values())
        assert levels == sorted(levels)
    # By construction 1 % of training values per feature beyond its bounds, and 1 % of
    # held-out training rows in a rare combination, at most.
    assert 1 - 0.01 * (len(spec.features) + 1) <= found["inside_share"] < 1.0
    # Judged by a domain that never saw its week, a training row is outside more often.
    assert found["held_out_inside_share"] < found["inside_share"]
    reference = found["reference"]
    rows = reference["rows"]
    assert rows == min(found["rows"], profile.REFERENCE_ROWS)
    assert reference["names"] == list(spec.features) and len(reference["outside"]) == -(-rows // 8)
    values = np.frombuffer(reference["values"], dtype="<f4").reshape(rows, len(spec.features))
    for j, entry in enumerate(found["features"].values()):
        column = values[:, j][~np.isnan(values[:, j])]
        assert entry["quantiles"]["0"] <= column.min() and column.max() <= entry["quantiles"]["1"]
    if spec.data.timestamp is None:  # potability: no times
        assert reference["seconds"] is None
    else:  # wqi: every k-th training row in time order, with its reading time
        seconds = np.frombuffer(reference["seconds"], dtype="<i8")
        assert len(seconds) == rows and (np.diff(seconds) >= 0).all()
    outputs = found["outputs"]
    assert outputs["kind"] == ("bands" if spec.task == "regression" else "classes")
    for shares in (outputs["shares"], outputs["label_shares"]):
        assert len(shares) == len(outputs["labels"]) and abs(sum(shares) - 1) < 1e-9
    check_plain(found)  # plain data all the way down; JSON but for the bytes
    json.dumps({k: v for k, v in found.items() if k not in ("combination", "reference")})


@pytest.mark.parametrize("name", available())
def test_the_profile_describes_the_training_rows(trained: dict[str, Any], name: str) -> None:
    spec = load_spec(name)
    rows = training_rows(name).X_train[list(spec.features)].to_numpy(np.float32)
    found = bundle_of(trained, name)["profile"]["features"]
    for j, feature in enumerate(spec.features):
        values = rows[:, j].astype(np.float64)
        present = values[~np.isnan(values)]
        entry = found[feature]
        assert entry["missing_rate"] == pytest.approx(np.isnan(values).mean())
        assert entry["quantiles"]["0"] == present.min()
        assert entry["quantiles"]["1"] == present.max()
        assert entry["quantiles"]["0.005"] == pytest.approx(np.quantile(present, 0.005))
        assert entry["mean"] == pytest.approx(present.mean())
    if name == "potability":  # nullable features' missing rates, from the training rows
        assert {f for f in spec.nullable if found[f]["missing_rate"] > 0.04} == set(spec.nullable)
    if name == "wqi":  # the estuary: TDS between the quartiles 28,000-34,000 mg/L
        tds = found["tds"]["quantiles"]
        assert 28_000 < tds["0.25"] < tds["0.75"] < 34_000 and tds["0.005"] > 10_000


def test_the_profile_is_computed_again_the_same_in_a_fresh_interpreter(
    trained: dict[str, Any],
) -> None:
    """Another hash seed, the same rows: the same profile, to the last bit."""
    script = f"""
import json, sys
from pathlib import Path
sys.path.insert(0, {str(REPO / "tests" / "training")!r})
from test_profile import training_rows
from inference.bundle import check_plain, loads
from inference.predictor import Predictor
from training import profile
from training.spec import load_spec
out = {{}}
for name, path in {json.dumps({k: str(v) for k, v in trained["bundles"].items()})}.items():
    bundle = loads(Path(path).read_bytes())
    again = profile.build(load_spec(name), training_rows(name), Predictor(bundle))
    out[name] = again == bundle["profile"]
print(json.dumps(out))
"""
    env = os.environ | {"PYTHONHASHSEED": "4321", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env,
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == dict.fromkeys(
        trained["bundles"], True
    )


@pytest.mark.parametrize("name", available())
def test_golden_rows_are_inside_the_domain_and_verdicts_repeat(
    trained: dict[str, Any], name: str
) -> None:
    """Golden answers are compared exactly by every serving version and the pre-traffic check,
    so they are readings whose confidence no domain cap touches."""
    bundle = bundle_of(trained, name)
    domain = Domain.of_bundle(bundle)
    assert domain is not None
    inputs = np.asarray(bundle["golden"]["inputs"], dtype=np.float32)
    first, again = domain.check(inputs), domain.check(inputs.copy())
    assert not first.outside_rows.any()
    assert first.verdicts == again.verdicts


def test_held_out_rows_outside_the_domain_are_flagged_per_feature(
    trained: dict[str, Any],
) -> None:
    """wqi holds out the latest 20 % (winter): colder water than training saw is outside on
    temperature, and the rule flags nothing at all on the training rows' middle."""
    bundle = bundle_of(trained, "wqi")
    domain = Domain.of_bundle(bundle)
    assert domain is not None
    parts = training_rows("wqi")
    spec = load_spec("wqi")
    held_out = domain.check(parts.X_test[list(spec.features)].to_numpy(np.float32))
    counts = dict(zip(spec.features, held_out.counts, strict=False))  # the box's bits first
    assert counts["temperature"] > 0.3 * len(parts.X_test) and counts["tds"] == 0
    train = domain.check(parts.X_train[list(spec.features)].to_numpy(np.float32))
    box = sum(train.counts[: len(spec.features)])  # 1 % per feature by construction, at most
    assert box <= 0.05 * len(parts.X_train)
    assert train.outside_rows.mean() == pytest.approx(1 - bundle["profile"]["inside_share"])
    assert profile.LOWER_Q == 0.005
