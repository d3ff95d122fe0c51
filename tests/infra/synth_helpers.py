"""Helpers shared by the infra tests that run both sides of a seam (a module name no other
test folder uses): a model's serving stack synthesized exactly as a deploy does it."""

from __future__ import annotations

from typing import Any

from registry.manifest import Release

DIGEST = "sha256:" + "ab" * 32


def serving_template(env: str, release: Release, bundle: dict[str, Any] | None = None,
                     **overrides: str) -> dict[str, Any]:  # fmt: skip
    """The release's model's stack as `cdk deploy` gets it from waterml_infra.ci.deploy_context
    (the release, the bundle's training mix), plus `waterml.<env>.<setting>` overrides."""
    from aws_cdk.assertions import Template
    from waterml_infra.app import build, make_app
    from waterml_infra.ci.deploy_context import context_args
    from waterml_infra.training_mix import TrainingMix

    mix = TrainingMix.from_bundle(bundle) if bundle is not None else None
    args = context_args(env, DIGEST, release, mix)
    context = {**dict(a.split("=", 1) for a in args[1::2]), "nag": "false"}
    context.update({f"waterml.{env}.{k}": v for k, v in overrides.items()})
    app = make_app(context)
    return dict(Template.from_stack(build(app)[env].serving[release.name]).to_json())


def functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The template's Lambda functions' properties, by function name."""
    return {
        r["Properties"]["FunctionName"]: r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Lambda::Function"
    }


# A domain holding every golden input of the synthetic wqi bundle (its golden answers were
# recorded without a domain, as training records them for rows inside it); TDS below 150 mg/L
# is outside.
GOLDEN_DOMAIN = {"pH": (6.0, 8.5), "turbidity": (0.5, 60.0), "tds": (150.0, 36000.0),
                 "temperature": (15.0, 32.0)}  # fmt: skip
OUTSIDE = {"deviceId": "fresh", "readings": {"pH": 7.4, "turbidity": 3.2, "tds": 100.0,
                                             "temperature": 21.5}}  # fmt: skip


def released_bundle() -> dict[str, Any]:
    """The synthetic wqi bundle with a training profile around its golden inputs."""
    import synthetic

    return synthetic.wqi_bundle(profile=synthetic.profile(GOLDEN_DOMAIN))
