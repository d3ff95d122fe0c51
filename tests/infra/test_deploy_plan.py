"""deploy.yml's plan: which models a run deploys (waterml_infra.ci.deploy_plan).

The decisions against plain inputs; the changed files from a real git repository; the CLI's
GitHub outputs and step summary as the workflow reads them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from waterml_infra.ci import deploy_plan
from waterml_infra.ci.deploy_plan import (
    DIFFERS,
    IN_SYNC,
    UNRELEASED,
    PlanError,
    fleet_changes,
    parse_requested,
    plan,
)

SERVED = ["wqi", "potability", "turbidity"]


def states(**by_model: str):
    """A deployed state per model (every other model in sync)."""
    return lambda model: by_model.get(model, IN_SYNC)


def never(model: str) -> bool:
    raise AssertionError(f"the deployed state of {model} was asked for; nothing needed it")


# Requested models (promote.yml's call, or a run by hand with `models`) ----------------------
@pytest.mark.parametrize(
    ("text", "names"),
    [
        ('["wqi","potability"]', ["wqi", "potability"]),
        ("wqi, potability", ["wqi", "potability"]),
        ("wqi potability wqi", ["wqi", "potability"]),
        ("[]", []),
    ],
)
def test_parse_requested(text, names):
    assert parse_requested(text) == names


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('["wqi"', "not a JSON list"),
        ('{"wqi": 1}', "JSON list of names"),
        ("[1, 2]", "JSON list of names"),
        ("wqi ../etc", "invalid model name"),
        ("WQI", "invalid model name"),
    ],
)
def test_parse_requested_refuses_what_is_not_a_model_list(text, message):
    with pytest.raises(PlanError, match=message):
        parse_requested(text)


def test_promoted_models_are_exactly_what_is_deployed():
    result = plan(SERVED, requested=["potability"], changed=["inference/handler.py"], state=never)
    assert result.models == ["potability"]
    assert result.skipped == {} and result.warnings == []


def test_a_requested_model_the_environment_does_not_serve_is_skipped_with_a_warning():
    result = plan(SERVED, requested=["wqi", "nitrate"], state=never)
    assert result.models == ["wqi"]
    assert "nitrate" in result.skipped
    assert "infra/cdk.json" in result.warnings[0]


def test_no_requested_model_served_is_an_error_naming_the_served_ones():
    with pytest.raises(PlanError, match=r"none of \['nitrate'\].*serves \['wqi'"):
        plan(SERVED, requested=["nitrate"], state=never)


def test_an_empty_request_deploys_nothing():
    result = plan(SERVED, requested=[], state=never)
    assert result.models == []
    assert "Nothing to deploy" in result.summary("dev")


def test_by_hand_without_models_deploys_every_released_model():
    result = plan(SERVED, event="workflow_dispatch", state=states(turbidity=UNRELEASED))
    assert result.models == ["wqi", "potability"]  # in sync or not: a person asked
    assert result.skipped == {"turbidity": "no release yet: promote it first"}
    assert "turbidity has no readable release.json" in result.warnings[0]


# A push: what changed ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changed", "kinds"),
    [
        (["inference/handler.py"], {"image"}),
        (["inference/Dockerfile", "inference/requirements.txt"], {"image"}),
        ([".dockerignore"], {"image"}),
        (["infra/cdk.json"], {"infrastructure"}),
        (["infra/waterml_infra/stacks/serving.py"], {"infrastructure"}),
        (["uv.lock", "pyproject.toml"], {"infrastructure"}),
        (["registry/manifest.py"], {"infrastructure"}),
        ([".github/workflows/deploy.yml"], {"infrastructure"}),
        (["inference/handler.py", "infra/cdk.json"], {"image", "infrastructure"}),
        (["infra/README.md", "inference/README.md", "README.md"], set()),
        (["training/specs/wqi.toml", "tests/infra/test_deploy_plan.py"], set()),
        (["registry/approved.toml"], set()),
    ],
)
def test_fleet_changes(changed, kinds):
    assert set(fleet_changes(changed)) == kinds


def test_an_image_change_deploys_every_released_model():
    result = plan(SERVED, changed=["inference/handler.py", "README.md"], state=states())
    assert result.models == SERVED
    assert "the image changed (inference/handler.py)" in result.reason
    result = plan(SERVED, changed=["inference/Dockerfile"], state=states(wqi=UNRELEASED))
    assert result.models == ["potability", "turbidity"]


def test_an_infrastructure_change_deploys_every_model():
    changed = ["infra/a.py", "infra/b.py", "infra/c.py", "infra/d.py"]
    result = plan(SERVED, changed=changed, state=states())
    assert result.models == SERVED
    assert "infra/a.py, infra/b.py, infra/c.py and 1 more" in result.reason


def test_unknown_changes_deploy_every_model():
    """A new branch or a force push: the diff cannot be told, so nothing is assumed."""
    result = plan(SERVED, changed=None, state=states())
    assert result.models == SERVED
    assert "cannot be told" in result.reason


def test_otherwise_only_models_whose_release_differs_from_what_is_deployed():
    result = plan(SERVED, changed=["README.md"], state=states(potability=DIFFERS))
    assert result.models == ["potability"]
    assert result.reason == "released differs from deployed"
    assert result.skipped == {
        "wqi": "live serves its release",
        "turbidity": "live serves its release",
    }


def test_every_model_in_sync_is_an_empty_plan_with_a_clear_message():
    result = plan(SERVED, changed=["README.md"], state=states(turbidity=UNRELEASED))
    assert result.models == []
    assert result.reason == "every released model serves its release"
    summary = result.summary("dev")
    assert "Nothing to deploy" in summary and "| wqi | skip | live serves its release |" in summary
    assert "| turbidity | skip | no release yet: promote it first |" in summary


def test_a_model_whose_state_cannot_be_read_is_deployed_with_a_warning():
    def state(model: str) -> str:
        if model == "turbidity":
            raise RuntimeError("AccessDenied on GetAlias")
        return IN_SYNC

    result = plan(SERVED, changed=[], state=state)
    assert result.models == ["turbidity"]
    assert "AccessDenied on GetAlias" in result.warnings[0]


def test_the_plan_refuses_to_guess_without_the_deployed_state():
    with pytest.raises(PlanError, match="deployed state"):
        plan(SERVED, changed=["README.md"])


def test_unknown_event_is_refused():
    with pytest.raises(PlanError, match="unknown event"):
        plan(SERVED, event="schedule", state=never)


# Changed files from git -------------------------------------------------------------------
def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q")
    (tmp_path / "README.md").write_text("one\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "first")
    return tmp_path


def commit(repo: Path, path: str, text: str = "x\n") -> str:
    (repo / path).parent.mkdir(parents=True, exist_ok=True)
    (repo / path).write_text(text)
    git(repo, "add", ".")
    git(repo, "commit", "-qm", path)
    return git(repo, "rev-parse", "HEAD")


def test_changed_files_between_two_commits(repo):
    base = git(repo, "rev-parse", "HEAD")
    commit(repo, "inference/handler.py")
    head = commit(repo, "README.md", "two\n")
    assert sorted(deploy_plan.changed_files(base, head, repo)) == [
        "README.md",
        "inference/handler.py",
    ]


def test_changed_files_unknown_for_a_new_branch_or_a_missing_base(repo):
    head = git(repo, "rev-parse", "HEAD")
    assert deploy_plan.changed_files("0" * 40, head, repo) is None
    assert deploy_plan.changed_files(None, head, repo) is None
    assert deploy_plan.changed_files("1" * 40, head, repo) is None  # not in this clone
    with pytest.raises(PlanError, match="not a commit SHA"):
        deploy_plan.changed_files("HEAD; rm -rf /", head, repo)


# The CLI, as deploy.yml runs it --------------------------------------------------------------
@pytest.fixture()
def github(tmp_path, monkeypatch):
    out, summary = tmp_path / "output", tmp_path / "summary"
    monkeypatch.setenv("GITHUB_OUTPUT", str(out))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setattr(deploy_plan, "served_models", lambda env: list(SERVED))
    return out, summary


def outputs(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def test_cli_push_of_a_model_only_change(github, repo, monkeypatch, capsys):
    out, summary = github
    base = git(repo, "rev-parse", "HEAD")
    head = commit(repo, "training/specs/wqi.toml")
    monkeypatch.setattr(deploy_plan, "REPO", repo)
    asked: list[tuple] = []

    def state_for(env, account, region):
        asked.append((env, account, region))
        return states(wqi=DIFFERS)

    args = ["--env", "dev", "--event", "push", "--base", base, "--head", head]
    args += ["--account", "222222222222", "--region", "eu-central-1", "--github-output"]
    assert deploy_plan.main(args, state_for=state_for) == 0
    assert asked == [("dev", "222222222222", "eu-central-1")]
    got = outputs(out)
    assert json.loads(got["models"]) == ["wqi"]  # deploy.yml's strategy.matrix.model
    assert got["count"] == "1"
    assert "| wqi | deploy | released differs from deployed |" in summary.read_text()
    assert "### deploy plan for dev" in capsys.readouterr().out


def test_cli_push_of_an_image_change(github, repo, monkeypatch):
    out, _ = github
    base = git(repo, "rev-parse", "HEAD")
    head = commit(repo, "inference/Dockerfile")
    monkeypatch.setattr(deploy_plan, "REPO", repo)
    args = ["--env", "dev", "--base", base, "--head", head, "--github-output"]
    assert deploy_plan.main(args, state_for=lambda *a: states()) == 0
    assert json.loads(outputs(out)["models"]) == SERVED


def test_cli_promoted_models(github, capsys):
    out, summary = github
    args = ["--env", "dev", "--requested", '["potability","nitrate"]', "--github-output"]
    assert deploy_plan.main(args, state_for=lambda *a: never) == 0
    assert outputs(out)["models"] == '["potability"]'
    printed = capsys.readouterr().out
    assert "::warning title=deploy plan::nitrate is not served" in printed
    assert "| nitrate | skip |" in summary.read_text()


@pytest.mark.parametrize(
    "args",
    [
        ["--requested", "nitrate"],  # served nowhere
        ["--requested", "Bad Name"],
        ["--event", "push"],  # no --head
        ["--event", "schedule"],
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(github, args, capsys):
    out, _ = github
    assert deploy_plan.main(["--env", "dev", *args], state_for=lambda *a: never) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.splitlines()) == 1
    assert not out.exists(), "no half-written outputs"


def test_cli_unknown_environment(capsys):
    assert deploy_plan.main(["--env", "staging", "--event", "workflow_dispatch"]) == 2
    assert "unknown environment" in capsys.readouterr().err
