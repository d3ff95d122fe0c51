"""The pre-traffic hook: CodeDeploy's BeforeAllowTraffic check of a model function's new version.

Entry point ``inference.pretraffic.handler`` (the serving image with its CMD overridden).
Environment: ``TARGET_FUNCTION``, ``MODEL_NAME``, ``RELEASE_BUCKET``, ``RELEASE_KEY``. On a
CodeDeploy hook event ``{"DeploymentId", "LifecycleEventHookExecutionId"}`` it

1. reads the deployment's AppSpec for the version ``live`` is about to shift to (so a
   deployment started from the console or the CLI is checked the same way);
2. reads that version's ``MODEL_*`` pins and release.json (digest-checked,
   ``inference.release``): they must name the same object and MLflow version;
3. fetches the pinned bundle by its VersionId, digest-checked before it is unpickled, for its
   golden samples;
4. invokes the version with the golden inputs as one batch and one event of every shape the
   handler serves (built from the golden records, so any model's features fit), and requires
   no function error, a 2xx status, the golden answers within tolerance, and in every answer
   the model identity of both the release and the pins;
5. reports ``Succeeded``, or ``Failed`` with every reason logged. Any exception inside the
   checks is a ``Failed``, never a hook left to time out.

Never import ``inference.handler`` here: under a Lambda runtime it loads the model named by
``MODEL_*`` at import, and the hook has none. boto3 comes with the Lambda base image and is
imported only in ``handler``.
"""

from __future__ import annotations

import base64
import copy
import json
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from inference import config as config_mod
from inference import loader
from inference.bundle import loads, verify_digest
from inference.contract import HOOK_SETTINGS, LIVE_ALIAS
from inference.events import Kind
from inference.observability import logger
from inference.release import pin_differences, read_verified
from inference.s3_get import Deadline
from inference.sanity import answer_difference  # the load-time check's own tolerance

DEVICE = "pretraffic"
SUCCEEDED, FAILED = "Succeeded", "Failed"
SETTINGS = HOOK_SETTINGS
# Of the hook's own time limit, kept back for reporting the status; and asked for beyond the
# target's timeout before each invocation, which may take that long.
REPORT_RESERVE_S, INVOKE_MARGIN_S = 10.0, 5.0


class CheckFailed(RuntimeError):
    """The version answered, but not as a healthy release must; the message says how."""


# ---- one answer -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Expected:
    """The identity every answer must carry; None: not checked."""

    name: str
    version: str | None = None
    s3_version_id: str | None = None
    sha256: str | None = None


def check_answer(payload: Any, expected: Expected) -> dict[str, Any]:
    """The decoded answer of an invocation, unwrapped from an HTTP proxy body when it has one.
    Keys beyond the ones checked (e.g. an answer's applicability domain) are allowed.

    Raises:
        CheckFailed: not a 2xx, an error answer, or not from the expected model, version, S3
            VersionId and bundle.
    """
    if not isinstance(payload, dict):
        raise CheckFailed(f"answer is not a JSON object: {payload!r}"[:500])
    status = payload.get("statusCode", 200)
    if not isinstance(status, int) or not 200 <= status < 300:
        raise CheckFailed(f"status {status}: {json.dumps(payload)[:500]}")
    if isinstance(payload.get("body"), str):
        try:
            payload = json.loads(payload["body"])
        except json.JSONDecodeError as exc:
            raise CheckFailed(f"answer body is not JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise CheckFailed("answer body is not a JSON object")
    if "error" in payload or "code" in payload:
        raise CheckFailed(f"answer is an error: {json.dumps(payload)[:500]}")
    identity = payload.get("model")
    if not isinstance(identity, dict):
        raise CheckFailed(f"answer has no model identity: {json.dumps(payload)[:500]}")
    name, version = identity.get("name"), identity.get("version")
    if name is None or version is None:
        raise CheckFailed(f"answer lacks the model or its version: {json.dumps(payload)[:500]}")
    if str(name) != expected.name:
        raise CheckFailed(f"answer is from model {name!r}, expected {expected.name!r}")
    if expected.version and str(version) != str(expected.version):
        raise CheckFailed(
            f"answer is from model version {version!r}, expected {expected.version!r}"
        )
    s3_version_id = identity.get("s3VersionId")
    if expected.s3_version_id and s3_version_id != expected.s3_version_id:
        raise CheckFailed(
            f"answer is from S3 version {s3_version_id!r}, expected {expected.s3_version_id!r}"
        )
    digest = str(identity.get("sha256") or "")
    if expected.sha256 and not (digest and expected.sha256.lower().startswith(digest.lower())):
        raise CheckFailed(f"answer is from bundle sha256 {digest!r}, expected {expected.sha256}")
    return payload


def check_answers(got: Any, want: list[dict[str, Any]]) -> None:
    """The answers to the golden records against the recorded ones, field by field within the
    load-time check's tolerance (inference/sanity.py). Fields not recorded are not compared.

    Raises:
        CheckFailed: another number of answers, a recorded field missing, or a value outside
            the tolerance; the message names the answer and the field.
    """
    if not isinstance(got, list) or len(got) != len(want):
        count = len(got) if isinstance(got, list) else got
        raise CheckFailed(f"{count} answers for {len(want)} golden records")
    for i, (answer, recorded) in enumerate(zip(got, want, strict=True)):
        missing = [k for k in recorded if not isinstance(answer, dict) or k not in answer]
        if missing:
            raise CheckFailed(f"golden answer {i} lacks {', '.join(missing)}: {answer!r}"[:500])
        difference = answer_difference({k: answer[k] for k in recorded}, recorded)
        if difference is not None:
            field, worst = difference
            by = "" if math.isnan(worst) else f" by {worst:.6g}"
            raise CheckFailed(
                f"golden answer {i} differs in {field!r}{by}: got {answer[field]!r}, recorded"
                f" {recorded[field]!r}"
            )


# ---- the target version -----------------------------------------------------------------------
def wait_active(
    client: Any,
    function_name: str,
    version: str,
    *,
    attempts: int = 60,
    delay: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
    deadline: Deadline | None = None,
) -> dict[str, Any]:
    """The version's configuration once its State is Active (image functions take a while),
    polled ``attempts`` times at most and never past ``deadline``.

    Raises:
        CheckFailed: not a published version, a Failed state, or still not active.
    """
    if not version.isdigit():
        raise CheckFailed(f"refusing to check {version!r}: give a published version")
    for _ in range(attempts):
        config = client.get_function_configuration(FunctionName=function_name, Qualifier=version)
        state = config.get("State", "Active")
        if state == "Active":
            return dict(config)
        if state == "Failed":
            raise CheckFailed(
                f"{function_name}:{version} failed to become active: {config.get('StateReason')}"
            )
        if deadline is not None and deadline.remaining() < delay:
            break
        sleep(delay)
    raise CheckFailed(f"{function_name}:{version} is still not active")


def invoke(client: Any, function_name: str, version: str, event: Any) -> Any:
    """A synchronous invocation's decoded answer.

    Raises:
        CheckFailed: a function error, a status other than 200, or an answer that is not JSON.
    """
    response = client.invoke(
        FunctionName=function_name,
        Qualifier=version,
        InvocationType="RequestResponse",
        Payload=json.dumps(event).encode(),
    )
    raw = response["Payload"].read()
    if response.get("FunctionError"):
        raise CheckFailed(f"function error ({response['FunctionError']}): {raw[:500]!r}")
    if response.get("StatusCode") != 200:
        raise CheckFailed(f"invoke returned HTTP {response.get('StatusCode')}")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CheckFailed(f"answer is not JSON: {raw[:500]!r}") from exc


@dataclass(frozen=True)
class Target:
    """What a deployment shifts: ``alias`` of ``function_name`` to ``version``."""

    function_name: str
    alias: str
    version: str


def deployment_target(codedeploy: Any, deployment_id: str) -> Target:
    """The Lambda resource of the deployment's AppSpec (JSON, as CloudFormation writes it).

    Raises:
        CheckFailed: no AppSpec content, content that is not JSON, or not exactly one Lambda
            resource with its alias and versions.
    """
    info = codedeploy.get_deployment(deploymentId=deployment_id)["deploymentInfo"]
    revision = info.get("revision") or {}
    content = _appspec(revision)
    if content is None:  # get_deployment names the revision by its digest only
        found = codedeploy.get_application_revision(
            applicationName=info["applicationName"], revision=revision
        )
        content = _appspec(found.get("revision") or {})
    if content is None:
        raise CheckFailed(f"deployment {deployment_id} has no AppSpec content")
    try:
        spec = json.loads(content)
    except ValueError:
        raise CheckFailed(
            f"deployment {deployment_id}'s AppSpec is not JSON (start deployments with JSON"
            " AppSpec content, as CloudFormation does)"
        ) from None
    resources = [
        resource
        for entry in (spec.get("Resources") or [] if isinstance(spec, dict) else [])
        if isinstance(entry, dict)
        for resource in entry.values()
        if isinstance(resource, dict) and resource.get("Type") == "AWS::Lambda::Function"
    ]
    if len(resources) != 1:
        raise CheckFailed(f"AppSpec names {len(resources)} Lambda functions, expected one")
    properties = resources[0].get("Properties") or {}
    return Target(
        function_name=str(properties.get("Name", "")).split(":function:")[-1].split(":")[0],
        alias=str(properties.get("Alias", "")),
        version=str(properties.get("TargetVersion", "")),
    )


def _appspec(revision: Mapping[str, Any]) -> str | None:
    for kind in ("appSpecContent", "string"):
        content = (revision.get(kind) or {}).get("content")
        if content:
            return str(content)
    return None


# ---- the events -------------------------------------------------------------------------------
def golden_records(bundle: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The golden inputs as requests: the recorded records (readings and timestamp), or built
    from the input rows (null where training had a missing value), each with a deviceId."""
    golden = bundle["golden"]
    records = golden.get("records")
    if records is None:  # no calendar features: every field is a reading
        names = [f["name"] for f in bundle["schema"]["fields"]]
        records = [
            {"readings": {n: None if math.isnan(v) else v for n, v in zip(names, row, strict=True)}}
            for row in golden["inputs"]
        ]
    return [{"deviceId": f"{DEVICE}-{i}", **r} for i, r in enumerate(records)]


_HEADERS = {"content-type": "application/json", "host": "pretraffic.invalid"}
_V2_CONTEXT = {"http": {"method": "POST", "path": "/predict"}, "requestId": DEVICE}


def events(records: list[dict[str, Any]]) -> dict[Kind, Any]:
    """One request of every shape the handler serves (see inference/events/*.json): the first
    record alone, except the batch and HTTP API v2 (every record, as one batch)."""
    one, every = json.dumps(records[0]), json.dumps({"records": records})
    http_v1 = {"httpMethod": "POST", "path": "/predict", "headers": _HEADERS,
               "body": one, "isBase64Encoded": False}  # fmt: skip
    return {
        Kind.DIRECT: copy.deepcopy(records[0]),
        Kind.BATCH: {"records": copy.deepcopy(records)},
        Kind.REST_V1: {**http_v1, "resource": "/predict",
                       "requestContext": {"httpMethod": "POST", "requestId": DEVICE}},
        Kind.HTTP_V2: {"version": "2.0", "routeKey": "POST /predict", "rawPath": "/predict",
                       "headers": _HEADERS, "requestContext": _V2_CONTEXT, "body": every,
                       "isBase64Encoded": False},
        Kind.FUNCTION_URL: {"version": "2.0", "routeKey": "$default", "rawPath": "/",
                            "headers": _HEADERS, "isBase64Encoded": True,
                            "requestContext": {**_V2_CONTEXT,
                                               "domainName": "x.lambda-url.pretraffic.on.aws"},
                            "body": base64.b64encode(one.encode()).decode()},
        Kind.ALB: {**http_v1, "requestContext": {"elb": {"targetGroupArn": DEVICE}}},
        Kind.SQS: {"Records": [{"messageId": f"{DEVICE}-0", "eventSource": "aws:sqs",
                                "body": one}]},
        Kind.WARMUP: {"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}},
    }  # fmt: skip


def check_event(kind: Kind, payload: Any, expected: list[Expected], golden: list[Any]) -> None:
    """One event's answer: SQS reports no failed message; every other kind names the model,
    and carries the golden answer(s) of the records it sent (warm-up: none).

    Raises:
        CheckFailed: a failed SQS message, or an answer ``check_answer`` or ``check_answers``
            refuses.
    """
    if kind is Kind.SQS:
        failures = payload.get("batchItemFailures") if isinstance(payload, dict) else payload
        if failures != []:
            raise CheckFailed(f"SQS message failed: {json.dumps(payload)[:500]}")
        return
    for identity in expected:
        answer = check_answer(payload, identity)
    if kind is Kind.WARMUP:
        return
    if "predictions" in answer:
        check_answers(answer["predictions"], golden)
    else:
        check_answers([answer.get("prediction")], golden[:1])


# ---- the checks -------------------------------------------------------------------------------
def read_release(s3: Any, bucket: str, key: str) -> dict[str, Any]:
    response = s3.get_object(Bucket=bucket, Key=key)
    body = response["Body"].read()
    return read_verified(body, response.get("Metadata"), f"s3://{bucket}/{key}")


def fetch_bundle(s3: Any, pins: Mapping[str, str]) -> dict[str, Any]:
    """The bundle the pins name, by its VersionId, unpickled only once its SHA-256 matched.

    Raises:
        CheckFailed: the pins are unusable.
        inference.loader.LoadError: S3 does not give the object.
        inference.bundle.BundleError: the bytes do not match the digest, or are no bundle.
    """
    # Only the pins: the function's other settings (its load deadline, cache) are its own.
    named = {name: pins.get(name, "") for name in config_mod.REQUIRED}
    endpoint = {"AWS_ENDPOINT_URL_S3": os.environ.get("AWS_ENDPOINT_URL_S3", "")}
    try:
        config = config_mod.from_env({**named, **endpoint})
    except config_mod.ConfigError as exc:
        raise CheckFailed(f"the version's pins are unusable: {exc}") from None
    data = loader.fetch_s3(config, s3)
    verify_digest(data, config.sha256, config.uri)
    return loads(data)


def verify(
    lambda_client: Any,
    s3: Any,
    settings: Mapping[str, str],
    version: str,
    *,
    sleep: Callable[[float], None] = time.sleep,
    deadline: Deadline | None = None,
) -> list[str]:
    """Every reason ``version`` of the target function must not take traffic (none: it may).
    No invocation starts unless the target's whole timeout still fits before ``deadline``."""
    function, model = settings["TARGET_FUNCTION"], settings["MODEL_NAME"]
    configuration = wait_active(lambda_client, function, version, sleep=sleep, deadline=deadline)
    pins = (configuration.get("Environment") or {}).get("Variables") or {}
    release = read_release(s3, settings["RELEASE_BUCKET"], settings["RELEASE_KEY"])
    problems = [f"pins differ from release.json: {d}" for d in pin_differences(release, pins)]
    if release.get("name") != model:
        problems.append(f"release.json is for model {release.get('name')!r}, not {model!r}")
    bundle = fetch_bundle(s3, pins)  # also refuses pins that cannot name an object
    if bundle["name"] != model:
        problems.append(f"the pinned bundle is model {bundle['name']!r}, not {model!r}")
    # Both must hold: the answers come from what the version pins and from what is released.
    expected = list(dict.fromkeys([
        Expected(model, pins.get("MODEL_VERSION"), pins["MODEL_VERSION_ID"], pins["MODEL_SHA256"]),
        Expected(model, release.get("mlflow_version") or None, release.get("version_id"),
                 release.get("sha256")),
    ]))  # fmt: skip
    golden = bundle["golden"].get("answers")
    if not golden:
        return [*problems, "the bundle records no golden answers to compare with"]
    needed = float(configuration.get("Timeout") or 0) + INVOKE_MARGIN_S
    for kind, event in events(golden_records(bundle)).items():
        if deadline is not None and deadline.remaining() < needed:
            problems.append(
                f"out of time: {kind} and later events not sent ({deadline.remaining():.0f} s"
                f" left, an invocation may take {needed:g} s): raise the hook's timeout"
            )
            break
        try:
            check_event(kind, invoke(lambda_client, function, version, event), expected, golden)
        except CheckFailed as exc:
            problems.append(f"{kind}: {exc}")
    return problems


@dataclass(frozen=True)
class Report:
    status: str
    target: Target | None
    problems: list[str]


def run(
    event: Mapping[str, Any],
    codedeploy: Any,
    lambda_client: Any,
    s3: Any,
    env: Mapping[str, str] | None = None,
    *,
    sleep: Callable[[float], None] = time.sleep,
    deadline: Deadline | None = None,
) -> Report:
    """Check the deployment's target version and report the outcome to CodeDeploy (before
    ``deadline``: the hook's own time limit less what reporting needs). Whatever breaks during
    the checks is reported as Failed, never left to a timeout.

    Raises:
        botocore.exceptions.ClientError: CodeDeploy refused the report itself.
    """
    env = os.environ if env is None else env
    deployment_id = event["DeploymentId"]
    target, problems = None, []
    try:
        missing = [name for name in SETTINGS if not env.get(name)]
        if missing:
            raise CheckFailed(f"the hook lacks environment variable(s) {', '.join(missing)}")
        settings = {name: env[name] for name in SETTINGS}
        target = deployment_target(codedeploy, deployment_id)
        if (target.function_name, target.alias) != (settings["TARGET_FUNCTION"], LIVE_ALIAS):
            raise CheckFailed(
                f"deployment shifts {target.function_name}:{target.alias}; this hook checks"
                f" only {settings['TARGET_FUNCTION']}:{LIVE_ALIAS}"
            )
        problems = verify(
            lambda_client, s3, settings, target.version, sleep=sleep, deadline=deadline
        )
    except Exception as exc:  # whatever broke, CodeDeploy hears Failed, never a timeout
        logger.exception("pre-traffic checks could not finish")
        problems = [*problems, f"checks did not finish: {type(exc).__name__}: {exc}"]
    status = FAILED if problems else SUCCEEDED
    logger.info(
        "pre-traffic hook",
        extra={"deploymentId": deployment_id, "status": status, "problems": problems,
               "target": None if target is None else vars(target)},
    )  # fmt: skip
    codedeploy.put_lifecycle_event_hook_execution_status(
        deploymentId=deployment_id,
        lifecycleEventHookExecutionId=event["LifecycleEventHookExecutionId"],
        status=status,
    )
    return Report(status, target, problems)


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Lambda entry point (CMD ``inference.pretraffic.handler``)."""
    import boto3
    from botocore.config import Config

    remaining = getattr(context, "get_remaining_time_in_millis", lambda: 900_000)() / 1000
    # An invocation lasts at most the target's timeout (Lambda ends it with a function error):
    # never cut it short on the client side, nor send it twice.
    invoking = Config(read_timeout=900, retries={"mode": "standard"})
    report = run(
        event,
        boto3.client("codedeploy"),
        boto3.client("lambda", config=invoking),
        boto3.client("s3"),
        deadline=Deadline(remaining - REPORT_RESERVE_S),
    )
    return {"status": report.status, "problems": report.problems}
