"""The model card of a registered version: what it is for, what it learned from, where its
answers hold (the domain, in words, from the bundle's training profile), how well it did
beside its baseline, how its confidence is calibrated, its known limits and its lineage.

Registration (training/register.py) records the card's facts with the run
(``card/facts.json``), logs the card as Markdown and HTML (``card/model_card.md``,
``card/model_card.html``) and makes the Markdown the version's description. The command
renders it again from those facts, with the S3 VersionId once the registry has promoted it:

    python -m training.model_card MODEL [--version N] [--format md|html] [--out FILE] [--publish]

(default: the champion, else the newest version); ``--publish`` also writes it back to
MLflow, so after a promotion the version's page shows its S3 VersionId. Exit codes: 0 printed,
2 bad command line, 3 unknown model or version, 4 the version has no card (registered before
cards), 5 MLflow failed, 6 --out cannot be written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inference.bundle import is_model_name
from settings import REPO
from training.card_content import render
from training.mlflow_names import (
    ARTIFACT_SHA256,
    CARD_MARKDOWN,
    CHAMPION,
    DATA_SHA256,
    GIT_SHA,
)

if TYPE_CHECKING:
    from training.register import TrainingRun

FACTS = "card/facts.json"
MARKDOWN = CARD_MARKDOWN
HTML = "card/model_card.html"
# MLflow keeps a version's description in a VARCHAR(5000) (PostgreSQL enforces it).
DESCRIPTION_LIMIT = 5000


class CardError(Exception):
    code = 5


class UnknownVersion(CardError):
    code = 3


class NoCard(CardError):
    code = 4


class OutputError(CardError):
    code = 6


# --- facts: recorded at registration ---------------------------------------------------------


def date_range(run: TrainingRun) -> dict[str, str] | None:
    """The first and last timestamp in the data file, and the first held-out one (a
    chronological split). Only the timestamp column is read, vectorised: about 50 ms for wqi,
    where the whole load with a strptime per row took 1.6 s on a busy machine."""
    import pandas as pd

    from inference.calendar_features import zone
    from training.spec import ISO_8601

    spec, stamp = run.spec.data, run.spec.data.timestamp
    if stamp is None:
        return None
    header = next((raw for raw, new in spec.rename.items() if new == stamp.column), stamp.column)
    try:
        column = pd.read_csv(
            spec.path,
            usecols=[header],
            encoding=spec.encoding,
            na_values=list(spec.na_values),
            keep_default_na=False,
        )[header]
        moments = pd.to_datetime(column.dropna(), format=stamp.format if stamp.format !=
                                 ISO_8601 else "ISO8601")  # fmt: skip
    except (OSError, ValueError):
        return None  # training read it already; a card without dates rather than no card
    if moments.empty:
        return None
    tz = zone(stamp.utc_offset)
    first, last = (
        m.tz_localize(tz) if m.tzinfo is None else m for m in (moments.min(), moments.max())
    )
    out = {"first": first.isoformat(), "last": last.isoformat()}
    held = [s for s in (run.parts.timestamps_test or []) if s is not None]
    if held and run.spec.split["method"] == "chronological":
        out["held_out_from"] = min(datetime.fromisoformat(s) for s in held).isoformat()
    return out


def facts(run: TrainingRun, version: str, run_id: str) -> dict[str, Any]:
    """Everything the card says, as plain JSON, from what training produced."""
    spec, bundle, metrics = run.spec, run.bundle, run.metrics
    path = spec.data.path
    profile = bundle.get("profile")
    if isinstance(profile, dict):  # the samples are for drift tests, not for reading
        profile = profile | {
            "features": {
                name: {k: v for k, v in entry.items() if k != "sample"}
                for name, entry in profile["features"].items()
            }
        }
    return {
        "name": spec.name,
        "version": version,
        "run_id": run_id,
        "description": spec.description,
        "task": spec.task,
        "features": list(spec.features),
        "nullable": list(spec.nullable),
        "calendar": list(spec.calendar_features),
        "label": spec.label,
        "output": bundle["output"],
        "ranges": {
            f["name"]: [f.get("minimum"), f.get("maximum")] for f in bundle["schema"]["fields"]
        },
        "data": {
            "source": path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else str(path),
            "sha256": run.data_sha256,
            "filter": spec.data.filter.text if spec.data.filter else None,
            "split": spec.split,
            "dates": date_range(run),
        },
        "metrics": metrics,
        "gates": {"primary": spec.gates.primary, "greater_is_better": spec.gates.greater_is_better},
        "profile": profile,
        "lineage": {k: run.tags.get(k, "") for k in (DATA_SHA256, GIT_SHA, ARTIFACT_SHA256)},
    }


def description(card: str) -> str:
    """The card as a version description: whole when it fits MLflow's column, else cut at a
    section boundary with a pointer to the artifact."""
    if len(card) <= DESCRIPTION_LIMIT:
        return card
    note = f"\n\n(The full card is the version's artifact {MARKDOWN}.)\n"
    cut = card.rfind("\n## ", 0, DESCRIPTION_LIMIT - len(note))
    return card[: max(cut, 0)] + note


def attach(client: Any, run: TrainingRun, version: str, run_id: str) -> str:
    """Log the card with the run and make it the version's description; the Markdown."""
    f = facts(run, version, run_id)
    client.log_dict(run_id, f, FACTS)
    return publish(client, f)


def publish(client: Any, f: dict[str, Any], release: dict[str, str] | None = None) -> str:
    """The card (with the release, once promoted) as the run's artifacts and the version's
    description; the Markdown."""
    card = render(f, release)
    client.log_text(f["run_id"], card, MARKDOWN)
    client.log_text(f["run_id"], render(f, release, "html"), HTML)
    client.update_model_version(f["name"], f["version"], description=description(card))
    return card


# --- the command -----------------------------------------------------------------------------


def load(name: str, version: str | None) -> tuple[dict[str, Any], dict[str, str]]:
    """The recorded facts of a version and its release tags."""
    from mlflow.exceptions import MlflowException

    from registry.errors import RegistryError
    from registry.tracking import Tracking

    tracking = Tracking()
    client = tracking.client
    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise CardError(f"cannot read the MLflow registry at {tracking.uri}: {exc}") from None
        raise UnknownVersion(f"unknown model {name!r}: not in the MLflow registry at "
                             f"{tracking.uri}") from None  # fmt: skip
    try:
        if version is None:
            version = tracking.champion(name) or max(
                (str(v.version) for v in client.search_model_versions(f"name = '{name}'")),
                key=int, default=None,
            )  # fmt: skip
            if version is None:
                raise UnknownVersion(f"{name} has no versions")
        mv = client.get_model_version(name, version)
    except MlflowException:
        raise UnknownVersion(f"{name} has no version {version!r}") from None
    except RegistryError as exc:  # the champion alias could not be read
        raise CardError(str(exc)) from None
    try:
        import mlflow

        with tempfile.TemporaryDirectory() as tmp:
            path = mlflow.artifacts.download_artifacts(
                run_id=mv.run_id, artifact_path=FACTS, dst_path=tmp, tracking_uri=tracking.uri
            )
            recorded = json.loads(Path(path).read_text(encoding="utf-8"))
    except Exception as exc:
        from registry.tracking import is_not_found

        if is_not_found(exc) or isinstance(exc, MlflowException):
            raise NoCard(f"{name} version {version} has no model card ({FACTS} in run "
                         f"{mv.run_id}): registered before cards; retrain") from None  # fmt: skip
        raise CardError(f"cannot read the card of {name} version {version}: {exc}") from None
    return recorded, dict(mv.tags or {})


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None


def _publish(recorded: dict[str, Any], tags: dict[str, str]) -> None:
    from registry.tracking import Tracking

    try:
        publish(Tracking().client, recorded, tags)
    except Exception as exc:  # an MLflow or artifact store failure
        raise CardError(f"cannot publish the card to MLflow: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m training.model_card",
        description="Print the model card of a registered version.",
        epilog="exit codes: 0 printed, 2 bad command line, 3 unknown model or version, 4 no "
        "card for the version, 5 MLflow failed, 6 --out cannot be written",
    )
    p.add_argument("model")
    p.add_argument("--version", help=f"MLflow version (default: {CHAMPION}, else the newest)")
    p.add_argument("--format", choices=("md", "html"), default="md")
    p.add_argument("--out", type=Path, help="write the card here instead of printing it")
    p.add_argument("--publish", action="store_true",
                   help="also write it back to MLflow (description and artifacts): after a "
                   "promotion, the version's page then shows its S3 VersionId")  # fmt: skip
    args = p.parse_args(argv)
    if not is_model_name(args.model):
        p.error(f"invalid model name {args.model!r}")
    try:
        recorded, tags = load(args.model, args.version)
        card = render(recorded, tags, args.format)
        if args.publish:
            _publish(recorded, tags)
        if args.out is None:
            sys.stdout.write(card)
        else:
            _write(args.out, card)
            print(f"{args.out}", file=sys.stderr)
    except CardError as exc:
        print(f"model_card: error: {exc}", file=sys.stderr)
        return exc.code
    return 0


if __name__ == "__main__":
    sys.exit(main())
