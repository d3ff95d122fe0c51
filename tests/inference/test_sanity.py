"""A bundle that fails its load-time checks never serves, and the error says why."""

from __future__ import annotations

import copy
import math
import warnings
from pathlib import Path
from typing import Any

import pytest
import synthetic
from serving_helpers import local_config

from inference import handler, loader, sanity
from inference.predictor import Predictor


def refused(bundle: dict[str, Any], cache_dir: Path) -> str:
    config = local_config(synthetic.dumps(bundle), cache_dir)
    with pytest.raises(handler.InitError) as info:
        handler.init(config)
    assert handler._service is None
    assert loader._MEMORY == {}
    return str(info.value)


def test_golden_mismatch_refuses_to_serve(cache_dir: Path) -> None:
    bundle = synthetic.wqi_bundle()
    bundle["golden"]["raw"]["margin"][1] += 0.5  # the graph no longer answers as recorded
    message = refused(bundle, cache_dir)
    assert "golden check failed for 'margin'" in message and "row 1" in message


def test_golden_within_tolerance_serves(cache_dir: Path) -> None:
    bundle = synthetic.wqi_bundle()
    bundle["golden"]["raw"]["margin"][0] += 1e-4  # XGBoost float32 vs ONNX: well within atol
    handler.init(local_config(synthetic.dumps(bundle), cache_dir))


def test_golden_answers_must_agree(cache_dir: Path) -> None:
    bundle = synthetic.wqi_bundle()
    bundle["golden"]["answers"][0]["quality"] = "Poor"
    assert "golden answer 0 differs" in refused(bundle, cache_dir)


def test_missing_golden_refuses(cache_dir: Path) -> None:
    bundle = synthetic.wqi_bundle()
    bundle["golden"] = {"inputs": [], "raw": {}}
    assert "no golden samples" in refused(bundle, cache_dir)


@pytest.mark.parametrize(
    ("name", "version"), [("numpy", "1.26.3"), ("onnxruntime", "1.16.0"), ("python", "3.12.1")]
)
def test_runtime_version_mismatch_refuses(cache_dir: Path, name: str, version: str) -> None:
    bundle = synthetic.wqi_bundle()
    bundle["metadata"]["runtime"][name] = version
    message = refused(bundle, cache_dir)
    assert "runtime version mismatch" in message and f"{name} {version} recorded" in message


def test_runtime_patch_release_is_accepted() -> None:
    bundle = synthetic.wqi_bundle()
    installed = sanity.installed_versions()
    major, minor = installed["numpy"].split(".")[:2]
    bundle["metadata"]["runtime"]["numpy"] = f"{major}.{minor}.999"
    sanity.check_runtime(bundle, installed)


def test_no_recorded_runtime_refuses(cache_dir: Path) -> None:
    bundle = synthetic.wqi_bundle()
    del bundle["metadata"]["runtime"]
    assert "records no runtime versions" in refused(bundle, cache_dir)


def test_a_warning_during_load_is_an_error(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The class of scikit-learn's InconsistentVersionWarning: loads "fine", answers wrong.
    original = Predictor.__init__

    def warns(self: Predictor, bundle: dict[str, Any]) -> None:
        warnings.warn("Trying to unpickle estimator from version 1.4.0", UserWarning, stacklevel=1)
        original(self, bundle)

    monkeypatch.setattr(Predictor, "__init__", warns)
    assert "Trying to unpickle" in refused(synthetic.wqi_bundle(), cache_dir)


def test_a_bundle_with_code_in_it_is_refused(cache_dir: Path) -> None:
    import pickle

    class Evil:
        def __reduce__(self) -> Any:
            return (print, ("pwned",))

    bundle = copy.deepcopy(synthetic.wqi_bundle())
    data = pickle.dumps({**bundle, "metadata": {"x": Evil()}})
    config = local_config(data, cache_dir)
    with pytest.raises(handler.InitError, match=r"builtins\.print"):
        handler.init(config)


def test_nullable_golden_inputs_go_through(cache_dir: Path) -> None:
    bundle = synthetic.potability_bundle()
    assert math.isnan(bundle["golden"]["inputs"][1][0])
    service = handler.init(local_config(synthetic.dumps(bundle), cache_dir))
    response = handler.lambda_handler({"readings": {"ph": None, "Hardness": 120.0}})
    assert response["statusCode"] == 200
    assert response["prediction"]["potable"] is False
    assert service.identity["name"] == "potability"


def test_fewer_recorded_answers_than_inputs_refuses(cache_dir: Path) -> None:
    bundle = synthetic.wqi_bundle()
    bundle["golden"]["answers"] = bundle["golden"]["answers"][:2]  # 3 inputs, 2 answers
    assert "golden records 2 answers for 3 inputs" in refused(bundle, cache_dir)


def test_no_recorded_answers_at_all_refuses(cache_dir: Path) -> None:
    bundle = synthetic.wqi_bundle()
    bundle["golden"]["answers"] = []
    assert "golden records 0 answers for 3 inputs" in refused(bundle, cache_dir)


@pytest.mark.parametrize("name", ["python", "numpy", "onnxruntime"])
def test_runtime_must_record_every_serving_version(cache_dir: Path, name: str) -> None:
    bundle = synthetic.wqi_bundle()
    del bundle["metadata"]["runtime"][name]
    message = refused(bundle, cache_dir)
    assert f"metadata.runtime lacks {name}" in message


def test_check_golden_is_public_and_builds_its_own_predictor() -> None:
    bundle = synthetic.wqi_bundle()
    sanity.check_golden(bundle)  # no predictor given: one is made from the bundle
    sanity.check_golden(bundle, Predictor(bundle))
    del bundle["golden"]["answers"]  # training checks the raw outputs before recording answers
    sanity.check_golden(bundle)


def test_check_golden_names_the_output_and_the_worst_difference() -> None:
    bundle = synthetic.wqi_bundle()
    bundle["golden"]["raw"]["margin"][2] -= 0.25
    bundle["golden"]["raw"]["margin"][1] += 0.5
    with pytest.raises(sanity.GoldenMismatch) as info:
        sanity.check_golden(bundle)
    assert isinstance(info.value, sanity.SanityError)
    assert info.value.output == "margin"
    assert info.value.worst == pytest.approx(0.5, abs=1e-6)
    assert "'margin'" in str(info.value) and "worst difference 0.5 at row 1" in str(info.value)


def test_check_golden_names_the_differing_answer_field() -> None:
    bundle = synthetic.wqi_bundle()
    bundle["golden"]["answers"][1]["quality"] = "Excellent"
    with pytest.raises(sanity.GoldenMismatch) as info:
        sanity.check_golden(bundle)
    assert info.value.output == "answers[1].quality"
