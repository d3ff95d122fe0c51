"""`cdk synth` through the pinned CLI, offline: no credentials, no network."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_cdk_cli_synth_offline(infra_node_modules, tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "CDK_")) and k not in {"HTTP_PROXY", "HTTPS_PROXY"}
    }
    env.update(
        AWS_EC2_METADATA_DISABLED="true",
        CDK_DISABLE_CLI_TELEMETRY="true",
        JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20",
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
    )
    out = tmp_path / "cdk.out"
    result = subprocess.run(
        [
            str(infra_node_modules / ".bin" / "cdk"),
            "synth",
            "--quiet",
            "--no-notices",
            "--no-version-reporting",
            "--output",
            str(out),
        ],
        cwd=REPO / "infra",
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    names = sorted(p.name for p in out.glob("*.template.json"))
    # One serving stack per model per environment (cdk.json `models`, however many).
    from waterml_infra.config import load_settings, resolve

    settings = load_settings()
    expected = []
    for env in ("dev", "prod"):
        cfg = resolve(settings, env)
        expected += [f"{cfg.stack_name('Foundation')}.template.json"]
        expected += [f"{cfg.model(m).stack_name}.template.json" for m in cfg.models]
    assert names == sorted(expected)
    for name in [n for n in names if "-Serving-" in n]:
        template = json.loads((out / name).read_text())
        types = {r["Type"] for r in template["Resources"].values()}
        assert {
            "AWS::Lambda::Function",
            "AWS::Lambda::Alias",
            "AWS::CodeDeploy::DeploymentGroup",
            "AWS::CloudWatch::Alarm",
        } <= types, name
