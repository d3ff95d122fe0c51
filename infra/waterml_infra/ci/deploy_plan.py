"""Which models a deploy run deploys: the `plan` job of deploy.yml.

    python -m waterml_infra.ci.deploy_plan --env dev [--requested JSON-or-names] \
        [--event push --base <sha> --head <sha>] [--github-output]

- `--requested` (promote.yml's promoted models, or the `models` input of a run started by
  hand): exactly those models. Names the environment does not serve are skipped with a
  warning; when none of them is served the plan fails (exit 2), naming the served ones.
- a run started by hand without models (`--event workflow_dispatch`): every model.
- a push (`--event push`): every model when the image or the infrastructure changed between
  `--base` and `--head` (or when that cannot be told: a new branch, a force push); otherwise
  every model whose release manifest differs from what its `live` alias serves
  (`waterml_infra.ci.status`), so a model-only release, a model just added to `cdk.json` or a
  deployment CodeDeploy rolled back is deployed again.
- "every model" is every model with a release: one never promoted is skipped with a warning.

Prints the plan; with `--github-output` writes `models` (a JSON list, deploy.yml's
`strategy.matrix.model`), `count` and `reason`, and a table to the run's step summary.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from inference.bundle import is_model_name
from waterml_infra.config import ConfigError, load_settings, resolve

REPO = Path(__file__).resolve().parents[2]
_SHA = re.compile(r"^[0-9a-f]{7,40}$")

# Files whose change reaches every function: the image (its code, requirements, Dockerfile)...
IMAGE_PATHS = ("inference/*", ".dockerignore")
# ...or the stacks and the tooling that deploys them (a cdk.json setting, the CDK library, the
# release contract the deploy scripts read, this workflow).
INFRA_PATHS = (
    "infra/*",
    "registry/manifest.py",
    "pyproject.toml",
    "uv.lock",
    ".github/workflows/deploy.yml",
)
# Documentation never changes what runs.
IGNORED = ("*.md",)

# What a model's `live` alias serves against its release manifest (waterml_infra.ci.status).
IN_SYNC, DIFFERS, UNRELEASED = "in sync", "differs", "unreleased"
State = Callable[[str], str]


class PlanError(ValueError):
    """The plan cannot be made (bad input): the message says why; exit 2."""


@dataclasses.dataclass(frozen=True)
class Plan:
    models: list[str]
    reason: str
    # model -> why it is not deployed
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)
    warnings: list[str] = dataclasses.field(default_factory=list)

    def outputs(self) -> dict[str, str]:
        return {
            "models": json.dumps(self.models, separators=(",", ":")),
            "count": str(len(self.models)),
            "reason": self.reason,
        }

    def summary(self, env: str) -> str:
        lines = [f"### deploy plan for {env}: {self.reason}", ""]
        if not self.models:
            lines += ["**Nothing to deploy.**", ""]
        rows = [(m, "deploy", self.reason) for m in self.models]
        rows += [(m, "skip", why) for m, why in self.skipped.items()]
        if rows:
            lines += ["| model | action | why |", "| --- | --- | --- |"]
            lines += [f"| {m} | {action} | {why} |" for m, action, why in rows]
        lines += [f"- warning: {w}" for w in self.warnings]
        return "\n".join(lines) + "\n"


def parse_requested(text: str) -> list[str]:
    """Model names from a JSON list (promote.yml) or comma/space-separated (a person)."""
    text = text.strip()
    if text.startswith(("[", "{")):
        try:
            names = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PlanError(f"models {text!r} is not a JSON list: {exc.msg}") from exc
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise PlanError(f"models {text!r} must be a JSON list of names")
    else:
        names = [n for n in re.split(r"[,\s]+", text) if n]
    bad = [n for n in names if not is_model_name(n)]
    if bad:
        raise PlanError(f"invalid model name(s) {bad}: lowercase letters, digits, '-' and '_'")
    return list(dict.fromkeys(names))  # order kept, duplicates dropped


def _matches(path: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(path, p) for p in patterns)


def fleet_changes(changed: Sequence[str]) -> dict[str, list[str]]:
    """The changed files that reach every model, by kind ("image", "infrastructure")."""
    found: dict[str, list[str]] = {}
    for path in changed:
        if _matches(path, IGNORED):
            continue
        if _matches(path, IMAGE_PATHS):
            found.setdefault("image", []).append(path)
        elif _matches(path, INFRA_PATHS):
            found.setdefault("infrastructure", []).append(path)
    return found


def changed_files(base: str | None, head: str, repo: Path | None = None) -> list[str] | None:
    """Files changed between two commits, or None when that cannot be told (no base: a new
    branch; a base the clone does not have: a force push or a shallow clone)."""
    if not base or set(base) == {"0"}:
        return None
    for sha in (base, head):
        if not _SHA.match(sha):
            raise PlanError(f"{sha!r} is not a commit SHA")
    result = subprocess.run(
        ["git", "diff", "--name-only", "--no-renames", base, head],
        cwd=repo or REPO,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        return None
    return [line for line in result.stdout.splitlines() if line]


def _brief(paths: list[str], limit: int = 3) -> str:
    more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
    return ", ".join(paths[:limit]) + more


def plan(
    served: Sequence[str],
    *,
    requested: Sequence[str] | None = None,
    event: str = "push",
    changed: Sequence[str] | None = None,
    state: State | None = None,
) -> Plan:
    """Decide which of the environment's `served` models to deploy (see the module doc)."""
    served = list(served)
    if requested is not None:
        if not requested:
            return Plan([], "no model was requested")
        chosen = [m for m in requested if m in served]
        unserved = [m for m in requested if m not in served]
        skipped = {m: "not served in this environment (infra/cdk.json models)" for m in unserved}
        warnings = [
            f"{m} is not served in this environment: add it to the environment's models in "
            "infra/cdk.json to deploy it"
            for m in unserved
        ]
        if not chosen:
            raise PlanError(
                f"none of {list(requested)} is served in this environment; it serves {served}"
            )
        return Plan(chosen, "requested", skipped, warnings)
    if event == "workflow_dispatch":
        return _by_state(served, state, "every model (started by hand)", every=True)
    if event != "push":
        raise PlanError(f"unknown event {event!r}: push or workflow_dispatch")
    if changed is None:
        why = "every model: the changed files cannot be told (new branch?)"
        return _by_state(served, state, why, every=True)
    fleet = fleet_changes(changed)
    if fleet:
        why = "; ".join(f"the {kind} changed ({_brief(paths)})" for kind, paths in fleet.items())
        return _by_state(served, state, f"every model: {why}", every=True)
    return _by_state(served, state, "released differs from deployed", every=False)


def _by_state(served: list[str], state: State | None, reason: str, *, every: bool) -> Plan:
    """Every released model (`every`), or those whose `live` does not serve their release.
    A model with no release yet is never deployed: there is nothing to pin."""
    if state is None:
        raise PlanError("the plan needs the deployed state (waterml_infra.ci.status)")
    chosen: list[str] = []
    skipped: dict[str, str] = {}
    warnings: list[str] = []
    for model in served:
        try:
            now = state(model)
        except Exception as exc:  # deploying is the safe answer to "unknown"
            warnings.append(f"{model}: deployed state unknown ({exc}); deploying it")
            now = DIFFERS
        if now == UNRELEASED:
            skipped[model] = "no release yet: promote it first"
            warnings.append(f"{model} has no readable release.json in this environment")
        elif now == IN_SYNC and not every:
            skipped[model] = "live serves its release"
        else:
            chosen.append(model)
    if not chosen and not every:
        reason = "every released model serves its release"
    return Plan(chosen, reason, skipped, warnings)


def served_models(env: str) -> list[str]:
    """The models the environment serves, from infra/cdk.json."""
    return list(resolve(load_settings(), env).models)


def live_state(env: str, account: str | None, region: str | None) -> State:  # pragma: no cover
    """Ask `waterml_infra.ci.status` (AWS, as the deploy role) what each model's `live` serves
    against its release. (AWS only: status.py's own tests cover model_status.)"""
    import boto3

    from waterml_infra.ci import status

    cfg = resolve(load_settings(), env, account=account, region=region)
    s3, lam = (
        boto3.client("s3", region_name=cfg.region),
        boto3.client("lambda", region_name=cfg.region),
    )

    def check(model: str) -> str:
        found = status.model_status(s3, lam, cfg, model)
        if found.release is None:
            return UNRELEASED
        return IN_SYNC if found.in_sync else DIFFERS

    return check


def _write(path_var: str, text: str) -> None:
    target = os.environ.get(path_var)
    if not target:
        raise PlanError(f"{path_var} is not set")
    with open(target, "a", encoding="utf-8") as out:
        out.write(text)


def main(argv: list[str] | None = None, *, state_for: Callable[..., State] = live_state) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", required=True)
    parser.add_argument(
        "--requested", default="", help="these models only (JSON list or comma-separated)"
    )
    parser.add_argument("--event", default="push", help="github.event_name")
    parser.add_argument("--base", help="the push's previous head (github.event.before)")
    parser.add_argument("--head", help="the pushed commit (github.sha)")
    parser.add_argument("--account", help="the environment's account (for the deployed state)")
    parser.add_argument("--region", help="the environment's region (for the deployed state)")
    parser.add_argument("--github-output", action="store_true")
    args = parser.parse_args(argv)
    try:
        served = served_models(args.env)
        requested = parse_requested(args.requested) if args.requested.strip() else None
        changed = None
        if requested is None and args.event == "push":
            if not args.head:
                raise PlanError("a push needs --head (and --base)")
            changed = changed_files(args.base, args.head)
        result = plan(
            served,
            requested=requested,
            event=args.event,
            changed=changed,
            state=state_for(args.env, args.account, args.region),
        )
        if args.github_output:
            _write("GITHUB_OUTPUT", "".join(f"{k}={v}\n" for k, v in result.outputs().items()))
            if os.environ.get("GITHUB_STEP_SUMMARY"):
                _write("GITHUB_STEP_SUMMARY", result.summary(args.env))
    except (PlanError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for warning in result.warnings:
        # A workflow annotation on GitHub, a plain line elsewhere.
        print(f"::warning title=deploy plan::{warning}")
    print(result.summary(args.env), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
