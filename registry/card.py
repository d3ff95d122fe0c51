"""The model card of a registered version, read from the registry: its recorded facts
(training/card_facts.py) rendered with the release tags promotion wrote on the version.

    python -m registry.card MODEL [--version N] [--format md|html] [--out FILE] [--publish]

prints the card of the champion (else the newest version), or writes it to ``--out``;
``--publish`` also writes it back to MLflow (description and artifacts). Promotion publishes
the released version's card as its description itself (``released``), so its MLflow page
shows the S3 VersionId it serves from. Exit codes: 0 printed, 2 bad command line, 3 unknown model or
version, 4 the version has no card (registered before cards), 5 MLflow failed, 6 --out
cannot be written.

Why here and not in training/: the command reads what the registry knows (the champion, the
release tags), and promotion is what changes it; training only produces the facts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from inference.bundle import is_model_name
from registry.errors import RegistryError
from registry.manifest import Release
from registry.tracking import Tracking, is_not_found
from training.card_content import render
from training.mlflow_names import CHAMPION
from training.model_card import FACTS, publish


class CardError(Exception):
    """A card cannot be shown or published; ``code`` is the command's exit status."""

    code = 5


class UnknownVersion(CardError):
    code = 3


class NoCard(CardError):
    code = 4


class OutputError(CardError):
    code = 6


def load(
    name: str, version: str | None, tracking: Tracking | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """The recorded facts of a version (default: the champion, else the newest) and its tags.

    Raises:
        UnknownVersion: no such model or version.
        NoCard: the version was registered before cards.
        CardError: MLflow or its artifact store failed.
    """
    from mlflow.exceptions import MlflowException

    tracking = tracking or Tracking()
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
        if is_not_found(exc) or isinstance(exc, MlflowException):
            raise NoCard(f"{name} version {version} has no model card ({FACTS} in run "
                         f"{mv.run_id}): registered before cards; retrain") from None  # fmt: skip
        raise CardError(f"cannot read the card of {name} version {version}: {exc}") from None
    return recorded, dict(mv.tags or {})


def released(release: Release, tracking: Tracking, log: Callable[[str], None]) -> Release:
    """``release``, once its version's card is published with the release tags promotion
    wrote (registry/promote.py calls it on the release it committed)."""
    publish_release(tracking, release.name, release.mlflow_version, log)
    return release


def publish_release(
    tracking: Tracking, name: str, version: str, log: Callable[[str], None]
) -> bool:
    """Publish a version's card with its release tags as its description, so its MLflow page
    names the S3 VersionId (the run's card artifacts stay as registered: a record of what
    training produced; ``--publish`` rewrites them too). Never raises: the release is done
    whatever happens here, so a failure is one warning line through ``log``. Whether it was
    published."""
    try:
        recorded, tags = load(name, version, tracking)
        publish(tracking.client, recorded, tags, artifacts=False)
    except CardError as exc:
        log(f"warning: the card of {name} version {version} was not published: {exc}")
        return False
    except Exception as exc:  # an MLflow or artifact store failure while writing
        log(f"warning: the card of {name} version {version} was not published: "
            f"{type(exc).__name__}: {exc}")  # fmt: skip
        return False
    log(f"published the card of {name} version {version} with its release")
    return True


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m registry.card",
        description="Print the model card of a registered version.",
        epilog="exit codes: 0 printed, 2 bad command line, 3 unknown model or version, 4 no "
        "card for the version, 5 MLflow failed, 6 --out cannot be written",
    )
    p.add_argument("model")
    p.add_argument("--version", help=f"MLflow version (default: {CHAMPION}, else the newest)")
    p.add_argument("--format", choices=("md", "html"), default="md")
    p.add_argument("--out", type=Path, help="write the card here instead of printing it")
    p.add_argument("--publish", action="store_true",
                   help="also write it back to MLflow (description and artifacts), as "
                   "promotion does")  # fmt: skip
    args = p.parse_args(argv)
    if not is_model_name(args.model):
        p.error(f"invalid model name {args.model!r}")
    try:
        tracking = Tracking()
        recorded, tags = load(args.model, args.version, tracking)
        card = render(recorded, tags, args.format)
        if args.publish:
            try:
                publish(tracking.client, recorded, tags)
            except Exception as exc:  # an MLflow or artifact store failure
                raise CardError(f"cannot publish the card to MLflow: {exc}") from None
        if args.out is None:
            sys.stdout.write(card)
        else:
            _write(args.out, card)
            print(f"{args.out}", file=sys.stderr)
    except CardError as exc:
        print(f"card: error: {exc}", file=sys.stderr)
        return exc.code
    return 0


if __name__ == "__main__":
    sys.exit(main())
