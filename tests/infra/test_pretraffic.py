"""The pre-traffic hook (inference/pretraffic.py) against the real handler and a real bundle.

The bundle is the `trained` wqi model, stored in the loopback S3 with its release.json exactly
as the registry writes them. CodeDeploy and Lambda are fakes: the fake Lambda's invoke runs
``inference.handler.lambda_handler`` in this process with the invoked version's environment,
as a Lambda execution environment of that version would, and the fake CodeDeploy records the
status the hook reports.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import types
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from inference import handler, pretraffic
from inference.bundle import sha256_hex
from inference.contract import SIGNING_PUBLIC_KEY
from inference.events import Kind, detect
from inference.s3_get import Deadline
from registry.manifest import Release, bundle_key, dumps, manifest_key, stored_metadata
from tests.inference.serving_helpers import SIGNER, signed

FUNCTION = "waterml-dev-wqi"
EVENT = {"DeploymentId": "d-TEST", "LifecycleEventHookExecutionId": "hook-1"}
pytestmark = pytest.mark.integration


class FakeCodeDeploy:
    """A deployment shifting `live` of ``function`` to ``version``; records reported statuses.
    Like the real API, get_deployment names an AppSpecContent revision by its digest only."""

    def __init__(self, version: str, function: str = FUNCTION, content: str | None = None):
        self.content = content or json.dumps({
            "version": 0.0,
            "Resources": [{"fn": {"Type": "AWS::Lambda::Function", "Properties": {
                "Name": function, "Alias": "live", "CurrentVersion": "1",
                "TargetVersion": version}}}],
            "Hooks": [{"BeforeAllowTraffic": "waterml-dev-wqi-pretraffic"}],
        })  # fmt: skip
        self.reported: list[dict[str, str]] = []

    def get_deployment(self, deploymentId: str) -> dict[str, Any]:
        assert deploymentId == EVENT["DeploymentId"]
        revision = {"revisionType": "AppSpecContent", "appSpecContent": {"sha256": "ab"}}
        return {"deploymentInfo": {"applicationName": "app", "revision": revision}}

    def get_application_revision(self, applicationName: str, revision: dict) -> dict[str, Any]:
        assert applicationName == "app" and revision["appSpecContent"] == {"sha256": "ab"}
        content = {"content": self.content, "sha256": "ab"}
        return {"revision": {"revisionType": "AppSpecContent", "appSpecContent": content}}

    def put_lifecycle_event_hook_execution_status(self, **kwargs: str) -> dict[str, str]:
        self.reported.append(kwargs)
        return {"lifecycleEventHookExecutionId": kwargs["lifecycleEventHookExecutionId"]}

    @property
    def status(self) -> str:
        assert len(self.reported) == 1, self.reported  # exactly one report, always
        assert self.reported[0]["deploymentId"] == EVENT["DeploymentId"]
        assert self.reported[0]["lifecycleEventHookExecutionId"] == "hook-1"
        return self.reported[0]["status"]


class FakeLambda:
    """Published versions of one function, each served by the real handler in-process.

    ``versions``: version -> its environment (what get_function_configuration reports).
    ``tamper``: applied to every answer (a broken invoke path, code that is not what its
    configuration says)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, versions: dict[str, dict[str, str]]):
        self.monkeypatch, self.versions = monkeypatch, versions
        self.tamper: Callable[[Any], Any] = lambda answer: answer
        self.invoked: list[Kind] = []
        self._loaded: str | None = None

    def get_function_configuration(self, FunctionName: str, Qualifier: str) -> dict[str, Any]:
        assert FunctionName == FUNCTION
        env = self.versions[Qualifier]
        return {"FunctionName": FUNCTION, "Version": Qualifier, "State": "Active",
                "Timeout": 30, "Environment": {"Variables": dict(env)}}  # fmt: skip

    def _cold_start(self, version: str) -> None:
        """A new execution environment: the version's variables, then the handler's init (a
        failed init is retried by the next request, as Lambda does)."""
        handler.reset()
        for name, value in self.versions[version].items():
            self.monkeypatch.setenv(name, value)
        with contextlib.suppress(handler.InitError):
            handler.init()
        self._loaded = version

    def invoke(self, FunctionName: str, Qualifier: str, InvocationType: str, Payload: bytes):
        assert (FunctionName, InvocationType) == (FUNCTION, "RequestResponse")
        if self._loaded != Qualifier:
            self._cold_start(Qualifier)
        event = json.loads(Payload)
        self.invoked.append(detect(event))
        context = types.SimpleNamespace(aws_request_id=str(uuid.uuid4()), function_name=FUNCTION)
        try:
            answer, error = self.tamper(handler.lambda_handler(event, context)), None
        except Exception as exc:  # what Lambda reports for an unhandled exception
            answer = {"errorMessage": str(exc), "errorType": type(exc).__name__}
            error = "Unhandled"
        response = {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(answer).encode())}
        return response | ({"FunctionError": error} if error else {})


@pytest.fixture
def stored(trained: dict[str, Any], s3_env: dict[str, str], tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:  # fmt: skip
    """The trained wqi bundle in the loopback S3 and its release.json (MLflow version 3), as
    the registry writes them; the hook's settings; an S3 client."""
    for name in ("MODEL_KEY", "MODEL_VERSION_ID", "MODEL_SHA256", "MODEL_VERSION", "MAX_BATCH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MODEL_CACHE_DIR", str(tmp_path / "cache"))
    s3 = boto3.client("s3", endpoint_url=s3_env["endpoint"])
    bucket = s3_env["bucket"]
    data = Path(trained["bundles"]["wqi"]).read_bytes()
    version_id = s3.put_object(Bucket=bucket, Key=bundle_key("wqi"), Body=data)["VersionId"]
    release = Release("wqi", "3", bucket, bundle_key("wqi"), version_id, sha256_hex(data),
                      "a" * 40, "2026-12-01T00:00:00Z")  # fmt: skip
    release = signed(release, data, lambda key, body: s3.put_object(
        Bucket=bucket, Key=key, Body=body)["VersionId"])  # fmt: skip
    write_release(s3, release)
    settings = {"TARGET_FUNCTION": FUNCTION, "MODEL_NAME": "wqi", "RELEASE_BUCKET": bucket,
                "RELEASE_KEY": manifest_key("wqi"),
                SIGNING_PUBLIC_KEY: SIGNER.public_pem}  # fmt: skip
    yield {"s3": s3, "data": data, "release": release, "settings": settings}
    handler.reset()


def function_env(release: Release) -> dict[str, str]:
    """A version's environment as the deploy sets it: the release's pins and the key."""
    return {**release.environment(), SIGNING_PUBLIC_KEY: SIGNER.public_pem}


def write_release(s3: Any, release: Release) -> None:
    body = dumps(release)
    s3.put_object(Bucket=release.bucket, Key=manifest_key(release.name), Body=body,
                  Metadata=stored_metadata(body))  # fmt: skip


def hook(stored: dict[str, Any], lam: FakeLambda, version: str = "8", deadline=None, **kw: Any):
    codedeploy = FakeCodeDeploy(version, **kw)
    report = pretraffic.run(
        EVENT, codedeploy, lam, stored["s3"], stored["settings"], deadline=deadline
    )
    assert codedeploy.status == report.status
    return report


def test_a_version_serving_the_release_passes(stored, monkeypatch):
    lam = FakeLambda(monkeypatch, {"8": function_env(stored["release"])})
    report = hook(stored, lam)
    assert (report.status, report.problems) == ("Succeeded", [])
    assert report.target == pretraffic.Target(FUNCTION, "live", "8")
    assert set(lam.invoked) == set(Kind) - {Kind.UNKNOWN}  # one event of every shape
    assert len(lam.invoked) == len(set(lam.invoked))


def test_pins_of_another_s3_version_fail(stored, monkeypatch):
    # The same bytes uploaded again: a valid bundle, but not the VersionId release.json names.
    s3, release = stored["s3"], stored["release"]
    other = s3.put_object(Bucket=release.bucket, Key=release.key, Body=stored["data"])["VersionId"]
    lam = FakeLambda(monkeypatch, {"8": {**function_env(release), "MODEL_VERSION_ID": other}})
    report = hook(stored, lam)
    assert report.status == "Failed"
    assert report.problems[0].startswith("pins differ from release.json: MODEL_VERSION_ID")
    # Every answer carries the pinned VersionId, not the released one.
    assert sum(f"expected '{release.version_id}'" in p for p in report.problems) == 7


def test_a_handler_answering_another_model_version_fails(stored, monkeypatch):
    def other_version(answer: Any) -> Any:  # configuration says 3, the running code answers 4
        if isinstance(answer, dict) and isinstance(answer.get("model"), dict):
            answer["model"]["version"] = "4"
        return answer

    lam = FakeLambda(monkeypatch, {"8": function_env(stored["release"])})
    lam.tamper = other_version
    report = hook(stored, lam)
    assert report.status == "Failed"
    assert f"{Kind.DIRECT}: answer is from model version '4', expected '3'" in report.problems
    assert not any(p.startswith("pins differ") for p in report.problems)


def test_answers_off_the_golden_outputs_fail(stored, monkeypatch):
    def shifted(answer: Any) -> Any:  # every wqi 0.5 off: beyond the answers' rounding step
        for row in answer.get("predictions") or [answer.get("prediction") or {}]:
            if "wqi" in row:
                row["wqi"] += 0.5
        return answer

    lam = FakeLambda(monkeypatch, {"8": function_env(stored["release"])})
    lam.tamper = shifted
    report = hook(stored, lam)
    assert report.status == "Failed"
    direct = next(p for p in report.problems if p.startswith(f"{Kind.DIRECT}:"))
    assert "golden answer 0 differs in 'wqi' by 0.5" in direct
    assert any(p.startswith(f"{Kind.BATCH}: golden answer 0 differs") for p in report.problems)


def test_a_version_whose_function_errors_fails(stored, monkeypatch):
    # Pins right, but the version cannot load its model (an unusable setting): direct, batch
    # and SQS invocations are function errors, the HTTP kinds 503, warm-up has no model.
    env = {**function_env(stored["release"]), "MODEL_LOAD_DEADLINE_S": "soon"}
    lam = FakeLambda(monkeypatch, {"8": env})
    report = hook(stored, lam)
    assert report.status == "Failed"
    problems = "\n".join(report.problems)
    assert f"{Kind.DIRECT}: function error (Unhandled)" in problems
    assert f"{Kind.ALB}: status 503" in problems
    assert f"{Kind.WARMUP}: answer has no model identity" in problems


def test_an_exception_inside_the_checks_reports_failed(stored, monkeypatch):
    # release.json edited without its digest metadata: the hook cannot trust it.
    s3, release = stored["s3"], stored["release"]
    s3.put_object(Bucket=release.bucket, Key=manifest_key("wqi"), Body=dumps(release) + b" ",
                  Metadata=stored_metadata(dumps(release)))  # fmt: skip
    lam = FakeLambda(monkeypatch, {"8": function_env(release)})
    report = hook(stored, lam)
    assert report.status == "Failed"
    assert report.problems == [
        f"checks did not finish: ReleaseError: SHA-256 mismatch for s3://{release.bucket}/"
        f"models/wqi/release.json: its sha256 metadata says {sha256_hex(dumps(release))}, its"
        f" bytes hash to {sha256_hex(dumps(release) + b' ')}"
    ]
    assert lam.invoked == []


def test_bundle_bytes_that_fail_their_digest_are_never_unpickled(stored, monkeypatch):
    release = stored["release"]
    wrong = "0" * 64
    write_release(stored["s3"], dataclasses.replace(release, sha256=wrong))
    monkeypatch.setattr(pretraffic, "loads", lambda data: pytest.fail("unpickled"))
    lam = FakeLambda(monkeypatch, {"8": {**function_env(release), "MODEL_SHA256": wrong}})
    report = hook(stored, lam)
    assert report.status == "Failed"
    assert report.problems == [
        f"checks did not finish: DigestMismatch: SHA-256 mismatch for s3://{release.bucket}/"
        f"models/wqi/model.joblib?versionId={release.version_id}: expected {wrong}, got"
        f" {release.sha256}"
    ]


def test_a_deployment_of_another_function_is_refused(stored, monkeypatch):
    lam = FakeLambda(monkeypatch, {"8": function_env(stored["release"])})
    report = hook(stored, lam, function="waterml-dev-potability")
    assert report.status == "Failed"
    assert "only waterml-dev-wqi:live" in report.problems[0]
    assert lam.invoked == []


def test_no_invocation_starts_that_could_outlast_the_hook(stored, monkeypatch):
    # 20 s left, the target may take 30 s: report Failed now rather than time out unreported.
    lam = FakeLambda(monkeypatch, {"8": function_env(stored["release"])})
    report = hook(stored, lam, deadline=Deadline(20))
    assert report.status == "Failed" and lam.invoked == []
    assert report.problems[0].startswith(f"out of time: {Kind.DIRECT} and later events not sent")
