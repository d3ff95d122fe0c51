"""The fleet's settings (infra/cdk.json `models`, `model_settings`, `traffic`, `snapstart`):
what the app, H1b's status command and the deploy workflow read through waterml_infra.config."""

from __future__ import annotations

import json

import pytest
from waterml_infra.config import (
    TRAFFIC_PATTERNS,
    ConfigError,
    ModelConfig,
    load_settings,
    main,
    resolve,
)


def _settings(**defaults) -> dict:
    settings = load_settings()
    settings["defaults"] = {**settings["defaults"], **defaults}
    return settings


def test_shipped_fleet_and_traffic():
    """The models are cdk.json's (a third one there changes nothing here)."""
    settings = load_settings()
    shipped = tuple(settings["defaults"]["models"])
    assert shipped
    assert "model_name" not in settings["defaults"]
    dev, prod = resolve(settings, "dev"), resolve(settings, "prod")
    assert dev.models == prod.models == shipped
    assert dev.traffic == "all_at_once"
    assert prod.traffic == "canary_10_percent_10_minutes"
    assert prod.deployment_config_name == "CodeDeployDefault.LambdaCanary10Percent10Minutes"


def test_model_config_names():
    cfg = resolve(load_settings(), "prod", account="222222222222", region="us-east-1")
    wqi = cfg.model("potability")
    assert isinstance(wqi, ModelConfig)
    assert wqi.names() == {
        "model_name": "potability",
        "function_name": "waterml-prod-potability",
        "serving_stack": "WaterMl-prod-Serving-potability",
        "model_key": "models/potability/model.joblib",
        "release_key": "models/potability/release.json",
        "log_group": "/aws/lambda/waterml-prod-potability",
        "alias": "live",
        "codedeploy_application": "waterml-prod-potability",
        "deployment_group": "live",
        "pretraffic_function": "waterml-prod-potability-pretraffic",
    }
    assert wqi.env.bucket_name == "waterml-prod-models-222222222222-us-east-1"
    assert wqi.provisioned_concurrency == 2  # the environment's setting
    with pytest.raises(ConfigError, match="serves no model 'nitrate'"):
        cfg.model("nitrate")


def test_model_settings_override_per_key_and_merge_across_layers():
    settings = _settings(model_settings={"wqi": {"memory_mb": 2048, "errors_threshold": 3}})
    settings["environments"]["prod"] = {
        **settings["environments"]["prod"],
        "model_settings": {"wqi": {"errors_threshold": 5}, "potability": {"timeout_seconds": 9}},
    }
    prod = resolve(settings, "prod")
    wqi, potability = prod.model("wqi"), prod.model("potability")
    assert (wqi.memory_mb, wqi.errors_threshold, wqi.timeout_seconds) == (2048, 5, 30)
    assert (potability.memory_mb, potability.errors_threshold) == (1024, 1)
    assert potability.timeout_seconds == 9
    dev = resolve(settings, "dev").model("wqi")
    assert (dev.memory_mb, dev.errors_threshold) == (2048, 3)


def test_adding_a_model_is_one_line():
    settings = load_settings()
    served = resolve(settings, "prod").models  # whatever cdk.json serves today
    prod = settings["environments"]["prod"]
    settings["environments"]["prod"] = {**prod, "models": [*served, "nitrate"]}
    cfg = resolve(settings, "prod")
    assert cfg.models == (*served, "nitrate")
    assert cfg.model("nitrate").function_name == "waterml-prod-nitrate"
    assert "nitrate" not in resolve(settings, "dev").models


def test_a_model_name_with_an_underscore_is_served_under_its_own_name():
    """The registry allows '_'; CloudFormation stack names do not: only the stack name maps it
    to '-', every name the model's code and data use keeps the model's spelling."""
    cfg = resolve(load_settings(), "dev", overrides={"models": "water_quality"})
    names = cfg.model("water_quality").names()
    assert names["serving_stack"] == "WaterMl-dev-Serving-water-quality"
    assert names["function_name"] == "waterml-dev-water_quality"
    assert names["pretraffic_function"] == "waterml-dev-water_quality-pretraffic"
    assert names["model_key"] == "models/water_quality/model.joblib"
    assert names["log_group"] == "/aws/lambda/waterml-dev-water_quality"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"models": ["wqi", "wqi"]}, "models lists 'wqi' twice"),
        ({"models": ["WQI"]}, "invalid model name 'WQI'"),
        ({"models": ["../wqi"]}, "invalid model name"),
        ({"models": ["a" * 60]}, "is too long: Lambda names have at most 64"),
        ({"models": []}, "at least one model"),
        ({"models": "wqi,,potability"}, "invalid model name ''"),
        (
            {"models": ["water_quality", "water-quality"]},
            "'water_quality' and 'water-quality' would share the stack "
            "WaterMl-dev-Serving-water-quality",
        ),
        (
            {"models": ["wqi", "wqi-pretraffic"]},
            "model 'wqi-pretraffic' would be named waterml-dev-wqi-pretraffic, the name of "
            "'wqi''s pre-traffic hook",
        ),
        ({"models": 3}, "models must be a list"),
        ({"model_settings": {"wqi": {"memroy_mb": 2048}}}, r"unknown setting\(s\) \['memroy_mb'\]"),
        ({"model_settings": {"wqi": {"github_repo": "a/b"}}}, "unknown setting"),
        ({"model_settings": {"nitrate": {"memory_mb": 512}}}, "not in models"),
        ({"model_settings": {"wqi": 512}}, "must map model names"),
        ({"model_settings": {"wqi": {"memory_mb": 64}}}, "model 'wqi': memory_mb"),
        ({"traffic": "canary_50_percent"}, "known: all_at_once, canary_10_percent_5_minutes"),
        ({"snapstart": "true"}, "SnapStart supports managed runtimes only"),
        (
            {"model_settings": {"wqi": {"snapstart": True}}},
            r"model 'wqi': snapstart: .*not container images",
        ),
        ({"log_retention_days": 42}, "log_retention_days must be one of"),
        ({"inference_error_rate_percent": 0}, "inference_error_rate_percent"),
    ],
)
def test_config_errors_are_clear(overrides, message):
    with pytest.raises(ConfigError, match=message):
        resolve(load_settings(), "dev", overrides=overrides)


def test_context_strings_are_parsed():
    """`-c waterml.dev.models=...` and `-c waterml.dev.model_settings=<json>` arrive as text."""
    cfg = resolve(
        load_settings(),
        "dev",
        overrides={
            "models": "wqi, potability,nitrate",
            "model_settings": '{"nitrate": {"memory_mb": "512", "warmup_minutes": "5"}}',
            "traffic": "linear_10_percent_every_1_minute",
        },
    )
    assert cfg.models == ("wqi", "potability", "nitrate")
    nitrate = cfg.model("nitrate")
    assert (nitrate.memory_mb, nitrate.warmup_minutes) == (512, 5)
    assert cfg.deployment_config_name == TRAFFIC_PATTERNS["linear_10_percent_every_1_minute"]
    with pytest.raises(ConfigError, match="not valid JSON"):
        resolve(load_settings(), "dev", overrides={"model_settings": "{nitrate"})


def test_snapstart_is_refused_with_aws_reason():
    """AWS: SnapStart supports managed runtimes (Python 3.12+), not container images. The
    earlier app emitted SnapStart on a PackageType Image function, which AWS refuses."""
    with pytest.raises(ConfigError, match="not container images"):
        resolve(load_settings(), "dev", overrides={"snapstart": "true"})
    assert not any(resolve(load_settings(), env).snapstart for env in ("dev", "prod"))


def test_cli_writes_the_models_and_one_models_names(tmp_path, monkeypatch, capsys):
    gh = tmp_path / "gh"
    monkeypatch.setenv("GITHUB_OUTPUT", str(gh))
    region = ["--account", "333333333333", "--region", "eu-central-1", "--github-output"]
    assert main(["prod", *region]) == 0
    lines = dict(line.split("=", 1) for line in gh.read_text().splitlines())
    served = list(resolve(load_settings(), "prod").models)
    assert json.loads(lines["models"]) == served
    assert lines["models"] == json.dumps(served, separators=(",", ":"))  # one compact line
    assert lines["traffic"] == "canary_10_percent_10_minutes"
    assert "function_name" not in lines
    gh.unlink()
    assert main(["prod", "--model", "potability", *region]) == 0
    lines = dict(line.split("=", 1) for line in gh.read_text().splitlines())
    assert lines["function_name"] == "waterml-prod-potability"
    assert lines["serving_stack"] == "WaterMl-prod-Serving-potability"
    assert lines["release_key"] == "models/potability/release.json"
    assert lines["log_group"] == "/aws/lambda/waterml-prod-potability"
    capsys.readouterr()
    assert main(["prod", "--model", "nitrate"]) == 2
    err = capsys.readouterr().err
    assert "serves no model 'nitrate'" in err and "Traceback" not in err
