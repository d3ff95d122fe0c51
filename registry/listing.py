"""``python -m registry models [MODEL] [--json]``: the registry at a glance, without the UI.

Per model: every version (newest first) with its aliases, the primary metric beside its
baseline and the lift, the lineage tags (``artifact_sha256``, ``data_sha256``, ``git_sha``)
and the S3 VersionId promotion recorded (``s3_version_id``). When ``MODEL_BUCKET`` is set, the
live ``release.json`` says which version is serving; S3 that is not configured or does not
answer is reported as such, never an error: the MLflow side is still worth printing.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from inference.bundle import is_model_name, model_name_problem
from registry.errors import RegistryError, UnknownModel, UsageError
from registry.tracking import Tracking
from training.mlflow_names import ARTIFACT_SHA256, DATA_SHA256, GIT_SHA, PROMOTED_AT, S3_VERSION_ID

S3_NOT_CONFIGURED = "S3 not configured"
NOT_RELEASED = "not released"


@dataclass
class VersionRow:
    version: str
    aliases: list[str]
    run_id: str
    run_name: str
    primary: dict[str, Any]  # {"metric", "model", "baseline", "lift"}
    metrics: dict[str, float]
    artifact_sha256: str
    data_sha256: str
    git_sha: str
    s3_version_id: str | None  # the tag promotion wrote
    promoted_at: str | None
    live: bool  # release.json names this version and VersionId


@dataclass
class ModelListing:
    name: str
    primary_metric: str | None
    greater_is_better: bool | None
    s3: dict[str, Any]  # {"status", "bucket", "live_version", "live_version_id", "released_at"}
    versions: list[VersionRow] = field(default_factory=list)


def _primary(name: str) -> tuple[str | None, bool | None]:
    """The spec's gate metric and direction; a registered model without a spec has none."""
    from training.spec import SpecError, load_spec

    try:
        gates = load_spec(name).gates
    except SpecError:
        return None, None
    return gates.primary, gates.greater_is_better


def _lift(model: float | None, baseline: float | None, greater: bool | None) -> float | None:
    """As training logs ``<metric>_lift`` (training/register.py): relative, positive = better."""
    if model is None or not baseline or greater is None:
        return None
    return round(((model - baseline) if greater else (baseline - model)) / abs(baseline), 6)


def _s3_client() -> Any:
    """Short timeouts and one attempt: a listing must not hang on an unreachable endpoint."""
    import boto3
    from botocore.config import Config

    cfg = Config(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=5)
    return boto3.client("s3", config=cfg)


def live_release(name: str) -> dict[str, Any]:
    """What S3 says is live for ``name``, or why it cannot say."""
    bucket = os.environ.get("MODEL_BUCKET", "").strip()
    if not bucket:
        return {"status": S3_NOT_CONFIGURED}
    from registry import publish
    from registry.store import ReleaseStore

    try:
        state = publish.current(ReleaseStore(bucket, client=_s3_client()), name)
    except RegistryError as exc:
        return {"status": f"S3 unavailable: {exc}", "bucket": bucket}
    except Exception as exc:  # a transport error that missed translation: still just a note
        return {"status": f"S3 unavailable: {type(exc).__name__}: {exc}", "bucket": bucket}
    if state.problem:
        return {"status": f"broken: release.json cannot be read: {state.problem}", "bucket": bucket}
    release = state.release
    if release is None:
        return {"status": NOT_RELEASED, "bucket": bucket}
    return {
        "status": "released",
        "bucket": bucket,
        "live_version": release.mlflow_version,
        "live_version_id": release.version_id,
        "released_at": release.released_at,
    }


def model_listing(tracking: Tracking, name: str) -> ModelListing:
    """One registered model's versions, with what S3 says is live.

    Raises:
        MlflowException: MLflow could not list the model (``listings`` checks it exists).
    """
    client = tracking.client
    metric, greater = _primary(name)
    aliases: dict[str, list[str]] = {}
    for alias, version in client.get_registered_model(name).aliases.items():
        aliases.setdefault(str(version), []).append(alias)
    s3 = live_release(name)
    listing = ModelListing(name, metric, greater, s3)
    found = client.search_model_versions(f"name = '{name}'")  # name checked by the caller
    for mv in sorted(found, key=lambda v: int(v.version), reverse=True):
        tags = dict(mv.tags or {})
        metrics: dict[str, float] = {}
        run_name = ""
        if mv.run_id:
            try:
                run = client.get_run(mv.run_id)
                metrics, run_name = dict(run.data.metrics), run.info.run_name or ""
            except Exception:  # a deleted run: the version is still listed
                run_name = "(run gone)"
        model = metrics.get(metric) if metric else None
        baseline = metrics.get(f"baseline_{metric}") if metric else None
        version = str(mv.version)
        listing.versions.append(
            VersionRow(
                version=version,
                aliases=sorted(aliases.get(version, [])),
                run_id=mv.run_id or "",
                run_name=run_name,
                primary={
                    "metric": metric,
                    "model": model,
                    "baseline": baseline,
                    "lift": _lift(model, baseline, greater),
                },
                metrics=metrics,
                artifact_sha256=tags.get(ARTIFACT_SHA256, ""),
                data_sha256=tags.get(DATA_SHA256, ""),
                git_sha=tags.get(GIT_SHA, ""),
                s3_version_id=tags.get(S3_VERSION_ID),
                promoted_at=tags.get(PROMOTED_AT),
                live=s3.get("live_version") == version
                and s3.get("live_version_id") == tags.get(S3_VERSION_ID),
            )
        )
    return listing


def listings(model: str | None, tracking: Tracking | None = None) -> list[ModelListing]:
    """Every registered model (or ``model``) with its versions.

    Raises:
        UsageError: ``model`` is not a valid model name.
        UnknownModel: ``model`` is not registered in MLflow.
    """
    if model is not None and not is_model_name(model):
        raise UsageError(model_name_problem(model))
    tracking = tracking or Tracking()
    if model is None:
        names = sorted(m.name for m in tracking.client.search_registered_models())
    else:
        from mlflow.exceptions import MlflowException

        try:
            tracking.client.get_registered_model(model)
        except MlflowException as exc:
            raise UnknownModel(
                f"{model} is not a registered model in MLflow at {tracking.uri}"
            ) from exc
        names = [model]
    return [model_listing(tracking, name) for name in names if is_model_name(name)]


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1%}"


def _s3_cell(row: VersionRow) -> str:
    if not row.s3_version_id:
        return NOT_RELEASED
    return row.s3_version_id + (" (live)" if row.live else "")


def render(models: list[ModelListing]) -> str:
    if not models:
        return "no registered models"
    blocks = []
    for m in models:
        s3 = m.s3
        if s3["status"] == "released":
            where = (f"live: version {s3['live_version']}, S3 VersionId {s3['live_version_id']}"
                     f" (s3://{s3['bucket']}, released {s3['released_at']})")  # fmt: skip
        else:
            where = f"live: {s3['status']}" + (f" (s3://{s3['bucket']})" if "bucket" in s3 else "")
        direction = "" if m.greater_is_better is None else (
            ", higher is better" if m.greater_is_better else ", lower is better")  # fmt: skip
        metric = m.primary_metric or "metric"
        lines = [f"{m.name} ({metric}{direction}); {where}"]
        header = ("version", "aliases", metric, "baseline", "lift", ARTIFACT_SHA256,
                  DATA_SHA256, GIT_SHA, S3_VERSION_ID)  # fmt: skip
        rows = [header] + [
            (
                r.version,
                ",".join(r.aliases) or "-",
                _number(r.primary["model"]),
                _number(r.primary["baseline"]),
                _percent(r.primary["lift"]),
                r.artifact_sha256[:12] or "-",
                r.data_sha256[:12] or "-",
                r.git_sha[:7] + ("-dirty" if r.git_sha.endswith("-dirty") else "") or "-",
                _s3_cell(r),
            )
            for r in m.versions
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
        for row in rows:
            cells = [c.ljust(w) for c, w in zip(row, widths, strict=False)]
            lines.append("  " + "  ".join([*cells, row[-1]]))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def main(model: str | None, as_json: bool) -> int:
    """Print the listing; 0.

    Raises:
        UsageError, UnknownModel: see ``listings``.
    """
    models = listings(model)
    if as_json:
        print(json.dumps([asdict(m) for m in models], sort_keys=True))
    else:
        print(render(models))
    return 0
