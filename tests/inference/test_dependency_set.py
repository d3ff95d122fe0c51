"""The image's dependency set, proven without Docker.

Exactly inference/requirements.txt goes into an empty folder, pruned as the image prunes it;
boto3 (which the Lambda base image ships) into another. A fresh interpreter with no
site-packages (-I -S) and only those folders plus a copy of the inference package answers a
request, first fetching the bundle from the loopback S3, then from its /tmp cache without
boto3 at all.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import synthetic
from serving_helpers import pinned_env, uv

REPO = Path(__file__).resolve().parents[2]
ABSENT = ("pandas", "sklearn", "xgboost", "joblib", "scipy")
pytestmark = pytest.mark.integration

PROBE = """
import importlib.util, json, sys
sys.path[:0] = sys.argv[1].split(":")
from inference import handler
event = {"deviceId": "buoy-01", "readings": {"pH": 7.4, "turbidity": 3.2, "tds": 410.0,
         "temperature": 21.5}}
answer = handler.lambda_handler(event, None)
print(json.dumps({
    "answer": answer,
    "source": handler._service.model.source,
    "importable": {m: importlib.util.find_spec(m) is not None for m in %r},
    "imported": sorted(m for m in sys.modules if m.split(".")[0] in %r + ("boto3",)),
    "site": [p for p in sys.path if "site-packages" in p],
}))
""" % (ABSENT, ABSENT)  # noqa: UP031 - a literal script, formatted once


def install(target: Path, *args: str) -> None:
    subprocess.run(
        [uv(), "pip", "install", "--quiet", "--python", sys.executable, "--target",
         str(target), *args],
        check=True, cwd=REPO, env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"},
    )  # fmt: skip


def run_probe(paths: list[Path], env: dict[str, str]) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", PROBE, ":".join(str(p) for p in paths)],
        check=True, capture_output=True, text=True, env=env, cwd="/",
    ).stdout  # fmt: skip
    return json.loads(out.strip().splitlines()[-1])  # the last line; logs come before it


def test_handler_runs_on_exactly_the_image_requirements(
    tmp_path: Path, s3_env: dict[str, str]
) -> None:
    serving, aws, task = tmp_path / "serving", tmp_path / "boto3", tmp_path / "task"
    install(serving, "-r", str(REPO / "inference" / "requirements.txt"))
    subprocess.run([sys.executable, str(REPO / "inference" / "prune.py"), str(serving)],
                   check=True, capture_output=True)  # fmt: skip
    install(aws, f"boto3=={metadata.version('boto3')}")
    skip = shutil.ignore_patterns("__pycache__", "events", "*.md", "*.txt", "Dockerfile")
    shutil.copytree(REPO / "inference", task / "inference", ignore=skip)

    data = synthetic.dumps(synthetic.wqi_bundle())
    cache = tmp_path / "tmp"
    env = {
        "PATH": "/usr/bin:/bin", **pinned_env(s3_env, data), "MODEL_CACHE_DIR": str(cache),
        "AWS_ENDPOINT_URL_S3": s3_env["endpoint"],
        **{k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                      "AWS_DEFAULT_REGION")},
    }  # fmt: skip

    cold = run_probe([task, serving, aws], env)  # as in the image: base image boto3 + ours
    assert cold["source"] == "s3"
    assert cold["site"] == []
    answer = cold["answer"]
    assert answer["statusCode"] == 200  # type: ignore[index]
    assert answer["prediction"]["quality"] == "Excellent"  # type: ignore[index]
    assert cold["importable"] == dict.fromkeys(ABSENT, False)

    warm = run_probe([task, serving], env)  # /tmp hit: no boto3 on the path at all
    assert warm["source"] == "tmp"
    assert warm["answer"] == answer
    assert warm["imported"] == []
