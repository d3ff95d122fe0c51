"""The image built from inference/Dockerfile and run as Lambda runs it (tools/lambda_image.py,
tools/lambda_sandbox.py): a read-only root, `/tmp` the only writable path, the function's
memory as the cap, a non-root user, and a network namespace holding only the loopback S3, the
Runtime API and (for the hook) the control plane. The function's and the hook's environment,
memory and the hook's CMD are taken from the synthesized serving stack, so the seams between
the template and the image are run, not read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import synthetic
from serving_helpers import signed
from synth_helpers import OUTSIDE, functions, released_bundle, serving_template

from inference.bundle import sha256_hex
from registry.manifest import Release, dumps, stored_metadata
from tools import lambda_image
from tools.lambda_sandbox import Sandbox

REPO = Path(__file__).resolve().parents[2]
EVENTS = REPO / "inference" / "events"
SHAPES = ["direct", "batch", "apigw-rest-v1", "http-api-v2", "function-url", "sqs", "warmup",
          "alb"]  # fmt: skip
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def built() -> lambda_image.Image:
    """The real Dockerfile on the stand-in base (built once per inputs; .ci/run installs the
    tools it needs, and a machine without them fails here, never skips)."""
    assert os.geteuid() == 0, (
        "the image tests run containers (runc, a network namespace): run make test as root, "
        "as CI does (.ci/run)"
    )
    missing = lambda_image.missing_tools()
    assert not missing, (
        f"install {missing} (apt-get install buildah runc debootstrap): .ci/run does"
    )
    return lambda_image.image(lambda_image.build())


@pytest.fixture(scope="module")
def deployed(built: lambda_image.Image) -> Iterator[dict[str, Any]]:
    """The release in the sandbox's S3 and dev's wqi stack synthesized for it."""
    image = {"rootfs": str(built.rootfs), "env": built.env, "entrypoint": built.entrypoint,
             "cmd": built.cmd, "workdir": built.workdir}  # fmt: skip
    with Sandbox(image) as sandbox:
        endpoints = sandbox.endpoints
        bundle = released_bundle()
        data = synthetic.dumps(bundle)
        from waterml_infra.config import load_settings, resolve

        cfg = resolve(load_settings(), "dev").model("wqi")
        version_id = sandbox.put(cfg.env.bucket_name, cfg.model_key, data)
        release = Release("wqi", "3", cfg.env.bucket_name, cfg.model_key, version_id,
                          sha256_hex(data), "a" * 40, "2026-12-07T00:00:00Z")  # fmt: skip
        release = signed(release, data, lambda key, body: sandbox.put(
            cfg.env.bucket_name, key, body))  # fmt: skip
        manifest = dumps(release)
        sandbox.put(cfg.env.bucket_name, cfg.release_key, manifest, stored_metadata(manifest))
        template = serving_template("dev", release, bundle)
        yield {"sandbox": sandbox, "cfg": cfg, "functions": functions(template),
               "s3": endpoints["s3"], "plane": endpoints["control_plane"]}  # fmt: skip


def _env(props: dict[str, Any], s3: str, **extra: str) -> dict[str, str]:
    return {**props["Environment"]["Variables"], "AWS_ENDPOINT_URL_S3": s3,
            "AWS_LAMBDA_FUNCTION_NAME": props["FunctionName"], **extra}  # fmt: skip


def test_the_function_answers_every_event_shape_under_lambdas_constraints(deployed):
    sandbox, fn = deployed["sandbox"], deployed["functions"]["waterml-dev-wqi"]
    sandbox.start("fn", _env(fn, deployed["s3"]), memory_mb=fn["MemorySize"])
    answers = {}
    for name in SHAPES:
        posted = sandbox.invoke("fn", json.loads((EVENTS / f"{name}.json").read_text()))
        assert posted["kind"] == "response", posted
        answers[name] = posted["body"]
    answers["outside"] = sandbox.invoke("fn", OUTSIDE)["body"]
    invalid = sandbox.invoke("fn", {"readings": {"pH": "acid"}})
    broken = json.loads((EVENTS / "sqs.json").read_text())
    del broken["Records"][0]["messageId"]  # a function error: the whole batch stays in SQS
    fault = sandbox.invoke("fn", broken)
    stats = sandbox.request(op="stats", name="fn")
    log = sandbox.stop("fn")["output"]

    assert answers["direct"]["model"] == {**answers["direct"]["model"], "name": "wqi",
                                          "version": "3"}  # fmt: skip
    assert answers["direct"]["prediction"]["domain"]["inside"] is True
    assert answers["outside"]["prediction"]["domain"]["outside"] == ["tds"]
    assert len(answers["batch"]["predictions"]) == 2
    for http in ("apigw-rest-v1", "http-api-v2", "function-url", "alb"):
        assert answers[http]["statusCode"] == 200
        assert json.loads(answers[http]["body"])["model"]["name"] == "wqi"
    assert answers["sqs"]["batchItemFailures"] == [
        {"itemIdentifier": "059f36b4-87a3-44ab-83d2-661975749003"}
    ]
    assert answers["warmup"]["warm"] is True
    assert invalid["kind"] == "response" and invalid["body"]["statusCode"] == 400
    assert fault["kind"] == "error" and fault["body"]["errorType"] == "InferenceError"
    # Init fetched the pinned object by VersionId over HTTP, checked it, ran the golden check.
    loaded = [json.loads(line) for line in log.splitlines() if '"model loaded"' in line]
    assert loaded and loaded[0]["source"] == "s3", log[-3000:]
    assert '"ValidationError":[1.0]' in log  # each refusal counted (dimension `service`)
    # Within the function's memory: the cgroup's limit is its memory_mb.
    assert stats["memory.limit_in_bytes"] == fn["MemorySize"] * 1024
    assert 0 < stats["VmHWM"] < fn["MemorySize"] * 1024


def test_the_root_filesystem_is_read_only_and_tmp_is_the_cache(deployed):
    """Pointed at a cache outside /tmp, the write fails as on Lambda and the model is still
    served from memory: proof the root is read-only and the default cache is /tmp."""
    sandbox, fn = deployed["sandbox"], deployed["functions"]["waterml-dev-wqi"]
    sandbox.start("ro", _env(fn, deployed["s3"], MODEL_CACHE_DIR="/var/task"),
                  memory_mb=fn["MemorySize"])  # fmt: skip
    posted = sandbox.invoke("ro", json.loads((EVENTS / "direct.json").read_text()))
    log = sandbox.stop("ro")["output"]
    assert posted["kind"] == "response" and posted["body"]["statusCode"] == 200
    assert "Read-only file system" in log, log[-3000:]


def test_a_bundle_failing_its_digest_is_an_init_error(deployed):
    sandbox, fn = deployed["sandbox"], deployed["functions"]["waterml-dev-wqi"]
    sandbox.start("bad", _env(fn, deployed["s3"], MODEL_SHA256="0" * 64),
                  memory_mb=fn["MemorySize"])  # fmt: skip
    posted = sandbox.next_posted("bad")
    sandbox.stop("bad")
    assert posted["kind"] == "init-error", posted
    assert "DigestMismatch" in posted["body"]["errorMessage"]


def test_the_pre_traffic_hook_runs_from_its_cmd_and_passes_the_new_version(deployed):
    """The hook's container (the template's CMD, environment and memory) checks version 2 of
    the function, which runs in its own container: Invoke reaches it through the control
    plane's stand-in; CodeDeploy hears Succeeded."""
    sandbox, cfg = deployed["sandbox"], deployed["cfg"]
    fn = deployed["functions"][cfg.function_name]
    hook = deployed["functions"][cfg.hook_function_name]
    sandbox.start("target", _env(fn, deployed["s3"]), memory_mb=fn["MemorySize"],
                  timeout_s=fn["Timeout"])  # fmt: skip
    sandbox.request(op="function", function=cfg.function_name, version="2", container="target",
                    env=fn["Environment"]["Variables"], timeout=fn["Timeout"])  # fmt: skip
    appspec = {"version": 0.0, "Resources": [{"fn": {"Type": "AWS::Lambda::Function",
               "Properties": {"Name": cfg.function_name, "Alias": "live", "CurrentVersion": "1",
                              "TargetVersion": "2"}}}]}  # fmt: skip
    sandbox.request(op="deployment", appspec=json.dumps(appspec))
    cmd = hook["Code"]["ImageConfig"]["Command"] if "ImageConfig" in hook.get("Code", {}) \
        else hook["ImageConfig"]["Command"]  # fmt: skip
    plane = deployed["plane"]
    sandbox.start("hook", _env(hook, deployed["s3"], AWS_ENDPOINT_URL_LAMBDA=plane,
                               AWS_ENDPOINT_URL_CODEDEPLOY=plane),
                  memory_mb=hook["MemorySize"], timeout_s=hook["Timeout"], cmd=cmd)  # fmt: skip
    event = {"DeploymentId": "d-IMAGE", "LifecycleEventHookExecutionId": "hook-1"}
    posted = sandbox.invoke("hook", event, timeout=300)
    reports = sandbox.request(op="reports")["reports"]
    hook_log = sandbox.stop("hook")["output"]
    sandbox.stop("target")
    assert posted["kind"] == "response", hook_log[-3000:]
    assert posted["body"] == {"status": "Succeeded", "problems": []}, hook_log[-3000:]
    assert [r["status"] for r in reports] == ["Succeeded"]


def test_the_drift_job_runs_from_its_cmd_and_verifies_the_release(deployed):
    """The scheduled drift job's container (the template's CMD, environment and memory; the
    log bucket named, since the template's is a reference): it loads the released model as the
    function does, its signature verified, and with no log in its window reports no records."""
    sandbox, cfg = deployed["sandbox"], deployed["cfg"]
    job = deployed["functions"][f"{cfg.function_name}-drift"]
    cmd = job["Code"]["ImageConfig"]["Command"] if "ImageConfig" in job.get("Code", {}) \
        else job["ImageConfig"]["Command"]  # fmt: skip
    sandbox.start("drift", _env(job, deployed["s3"], LOG_BUCKET=cfg.env.bucket_name),
                  memory_mb=job["MemorySize"], timeout_s=job["Timeout"], cmd=cmd)  # fmt: skip
    posted = sandbox.invoke("drift", {"time": "2026-12-07T06:00:00Z"}, timeout=300)
    log = sandbox.stop("drift")["output"]
    assert posted["kind"] == "response", log[-3000:]
    assert posted["body"] == {"model": "wqi", "records": 0, "report": None}, log[-3000:]
    assert '"DriftRecords":0' in log.replace(" ", ""), log[-3000:]
