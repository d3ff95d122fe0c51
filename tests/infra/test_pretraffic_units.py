"""The pre-traffic hook's parts on their own: the AppSpec, the events, the answer checks, what
the module imports, and the manual smoke check that shares its answer checks."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from waterml_infra.ci import smoke

from inference import pretraffic
from inference.events import Kind, detect
from inference.s3_get import Deadline

REPO = Path(__file__).resolve().parents[2]
EVENT = {"DeploymentId": "d-1", "LifecycleEventHookExecutionId": "h-1"}
SETTINGS = {"TARGET_FUNCTION": "waterml-dev-wqi", "MODEL_NAME": "wqi",
            "RELEASE_BUCKET": "b", "RELEASE_KEY": "models/wqi/release.json"}  # fmt: skip


def appspec(*functions: tuple[str, str]) -> str:
    resources = [
        {f"fn{i}": {"Type": "AWS::Lambda::Function",
                    "Properties": {"Name": name, "Alias": "live", "CurrentVersion": "1",
                                   "TargetVersion": version}}}
        for i, (name, version) in enumerate(functions)
    ]  # fmt: skip
    return json.dumps({"version": 0.0, "Resources": resources})


class CodeDeploy:
    """get_deployment answers ``revision`` as given; records every reported status."""

    def __init__(self, revision: dict[str, Any] | Exception) -> None:
        self.revision, self.reported = revision, []

    def get_deployment(self, deploymentId: str) -> dict[str, Any]:
        if isinstance(self.revision, Exception):
            raise self.revision
        return {"deploymentInfo": {"applicationName": "a", "revision": self.revision}}

    def put_lifecycle_event_hook_execution_status(self, **kwargs: str) -> None:
        self.reported.append(kwargs["status"])


def test_the_target_is_read_from_an_inline_appspec():
    revision = {"revisionType": "String", "string": {"content": appspec(
        ("arn:aws:lambda:eu-west-1:111111111111:function:waterml-dev-wqi:live", "9"))}}  # fmt: skip
    target = pretraffic.deployment_target(CodeDeploy(revision), "d-1")
    assert target == pretraffic.Target("waterml-dev-wqi", "live", "9")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("version: 0.0\nResources: []\n", "is not JSON"),
        (appspec(("a", "1"), ("b", "2")), "names 2 Lambda functions, expected one"),
        (json.dumps(["not", "a", "spec"]), "names 0 Lambda functions"),
    ],
)
def test_an_appspec_the_hook_cannot_read_fails_the_deployment(content, message):
    codedeploy = CodeDeploy(
        {"revisionType": "AppSpecContent", "appSpecContent": {"content": content}}
    )
    report = pretraffic.run(EVENT, codedeploy, None, None, SETTINGS)
    assert codedeploy.reported == ["Failed"] and report.status == "Failed"
    assert message in report.problems[0]


def test_missing_settings_and_api_errors_are_reported_failed():
    codedeploy = CodeDeploy(RuntimeError("throttled"))
    report = pretraffic.run(EVENT, codedeploy, None, None, {"MODEL_NAME": "wqi"})
    assert codedeploy.reported == ["Failed"]
    assert "lacks environment variable(s) TARGET_FUNCTION, RELEASE_BUCKET" in report.problems[0]
    report = pretraffic.run(EVENT, codedeploy, None, None, SETTINGS)
    assert report.problems == ["checks did not finish: RuntimeError: throttled"]


def test_the_lambda_entry_point_uses_boto3_clients(monkeypatch):
    codedeploy = CodeDeploy(RuntimeError("no access"))
    made: list[str] = []

    def client(service: str, **kwargs: Any) -> Any:
        made.append(service)
        return codedeploy if service == "codedeploy" else object()

    monkeypatch.setattr(boto3, "client", client)
    for name, value in SETTINGS.items():
        monkeypatch.setenv(name, value)
    answer = pretraffic.handler(EVENT, None)
    assert answer == {
        "status": "Failed",
        "problems": ["checks did not finish: RuntimeError: no access"],
    }
    assert sorted(made) == ["codedeploy", "lambda", "s3"] and codedeploy.reported == ["Failed"]


def test_one_event_of_every_shape_the_handler_serves():
    records = [{"deviceId": "d", "readings": {"pH": 7.0}}, {"readings": {"pH": 8.0}}]
    events = pretraffic.events(records)
    assert set(events) == set(Kind) - {Kind.UNKNOWN}
    for kind, event in events.items():
        assert detect(json.loads(json.dumps(event))) is kind
    samples = {
        detect(json.loads(p.read_text())) for p in (REPO / "inference" / "events").glob("*.json")
    }
    assert samples == set(events)  # a shape added to the samples needs an event here too


def test_golden_records_are_built_from_the_inputs_when_not_recorded():
    bundle = {"schema": {"fields": [{"name": "a"}, {"name": "b", "nullable": True}]},
              "golden": {"inputs": [[1.5, float("nan")], [2.0, 3.0]]}}  # fmt: skip
    assert pretraffic.golden_records(bundle) == [
        {"deviceId": "pretraffic-0", "readings": {"a": 1.5, "b": None}},
        {"deviceId": "pretraffic-1", "readings": {"a": 2.0, "b": 3.0}},
    ]
    recorded = [{"readings": {"a": 1.0}, "timestamp": "2026-01-01T00:00:00Z"}]
    bundle["golden"]["records"] = recorded
    assert pretraffic.golden_records(bundle) == [{"deviceId": "pretraffic-0", **recorded[0]}]


def test_golden_answers_allow_new_fields_but_not_other_values():
    recorded = [{"wqi": 80.0, "quality": "Good", "confidence": 0.7}]
    pretraffic.check_answers([{"deviceId": "d", **recorded[0], "domain": {"in": True}}], recorded)
    pretraffic.check_answers([{**recorded[0], "wqi": 80.01}], recorded)  # one rounding step
    with pytest.raises(pretraffic.CheckFailed, match="differs in 'quality'"):
        pretraffic.check_answers([{**recorded[0], "quality": "Fair"}], recorded)
    with pytest.raises(pretraffic.CheckFailed, match="lacks confidence"):
        pretraffic.check_answers([{"wqi": 80.0, "quality": "Good"}], recorded)
    with pytest.raises(pretraffic.CheckFailed, match="2 answers for 1 golden records"):
        pretraffic.check_answers(recorded * 2, recorded)


def test_the_answer_identity_includes_the_bundle_digest():
    answer = {"model": {"name": "wqi", "version": "3", "s3VersionId": "v", "sha256": "abc"}}
    pretraffic.check_answer(answer, pretraffic.Expected("wqi", "3", "v", "ABCdef"))
    with pytest.raises(pretraffic.CheckFailed, match="bundle sha256 'abc'"):
        pretraffic.check_answer(answer, pretraffic.Expected("wqi", "3", "v", "def"))


def test_importing_the_hook_loads_no_model_and_no_aws_sdk():
    # Under a Lambda runtime, importing inference.handler loads the model MODEL_* names: the
    # hook's environment has none, so the hook must not import it (nor boto3 before a call).
    code = (
        "import sys, inference.pretraffic;"
        " print(sorted({'inference.handler', 'boto3'} & set(sys.modules)))"
    )
    env = {**os.environ, "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True,
                         capture_output=True, text=True).stdout  # fmt: skip
    assert out.strip() == "[]"


def test_smoke_sends_the_event_file(tmp_path, monkeypatch, capsys):
    request = {"deviceId": "lab", "readings": {"ph": 7.0, "Hardness": 200.0}}
    (tmp_path / "request.json").write_text(json.dumps(request))
    sent: list[Any] = []

    class Lambda:
        def get_function_configuration(self, **_: Any) -> dict[str, str]:
            return {"State": "Active"}

        def invoke(self, **kwargs: Any) -> dict[str, Any]:
            sent.append(json.loads(kwargs["Payload"]))
            answer = {"statusCode": 200, "model": {"name": "potability", "version": "1"}}
            return {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(answer).encode())}

    monkeypatch.setattr(boto3, "client", lambda *a, **k: Lambda())
    args = ["--function-name", "f", "--version", "2", "--model", "potability", "--event"]
    assert smoke.main([*args, str(tmp_path / "request.json")]) == 0
    assert sent == [request]
    assert smoke.main([*args, str(tmp_path / "missing.json")]) == 2
    assert "cannot read --event" in capsys.readouterr().err


def test_waiting_for_the_version_stops_at_the_deadline():
    class Pending:
        def get_function_configuration(self, **_: Any) -> dict[str, str]:
            return {"State": "Pending"}

    naps: list[float] = []
    with pytest.raises(pretraffic.CheckFailed, match="still not active"):
        pretraffic.wait_active(Pending(), "f", "8", sleep=naps.append, deadline=Deadline(4))
    assert naps == []  # a 5 s pause would end past the deadline
    with pytest.raises(pretraffic.CheckFailed, match="still not active"):  # no deadline
        pretraffic.wait_active(Pending(), "f", "8", sleep=naps.append, attempts=3)
    assert naps == [5.0, 5.0, 5.0]
