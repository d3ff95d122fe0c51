"""The MLflow side: read a registered version (tags, run metrics, bundle bytes), record a release.

MLflow is imported lazily: it costs ~2 s, and `--help` or a refused input should not pay it."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.bundle import BUNDLE_FILENAME, normalize_sha256
from registry.errors import BundleMissing, DigestMismatch, StorageError, VersionNotFound
from settings import BUNDLE_ARTIFACT_DIR, tracking_uri
from training.mlflow_names import ARTIFACT_SHA256, CHAMPION, GIT_SHA, quiet_mlflow


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: str
    run_id: str
    source: str
    tags: dict[str, str]
    metrics: dict[str, float]

    @property
    def artifact_sha256(self) -> str:
        """The tag in canonical (lowercase) form: a digest differing only in case is the same.

        Raises:
            BundleMissing: the version has no ``artifact_sha256`` tag.
            DigestMismatch: the tag is not a SHA-256.
        """
        sha = self.tags.get(ARTIFACT_SHA256, "")
        if not sha:
            raise BundleMissing(f"{self.name} version {self.version} has no artifact_sha256 tag")
        canonical = normalize_sha256(sha)
        if canonical is None:
            raise DigestMismatch(
                f"{self.name} version {self.version}: artifact_sha256 tag {sha!r} is not a"
                " SHA-256 (64 hex digits)"
            )
        return canonical

    @property
    def git_sha(self) -> str:
        return self.tags.get(GIT_SHA, "unknown")


_NOT_FOUND_CODES = {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "404", "NoSuchKey", "NotFound"}
_NOT_FOUND_TEXT = ("No such artifact", "NoSuchKey", "(404)", "404 Client Error", "Not Found")


def is_not_found(exc: BaseException) -> bool:
    """Only a missing artifact means "no bundle"; credential, network and server failures are
    storage errors, reported with their cause."""
    if isinstance(exc, FileNotFoundError):
        return True
    code = getattr(exc, "error_code", None)  # MlflowException
    if code is None:
        response = getattr(exc, "response", None)
        if isinstance(response, dict):  # botocore ClientError
            code = response.get("Error", {}).get("Code")
        elif getattr(response, "status_code", None) == 404:  # requests HTTPError
            return True
    if code is not None and str(code) in _NOT_FOUND_CODES:
        return True
    # MLflow wraps a failed download as INTERNAL_ERROR and keeps the cause in the message.
    return code in (None, "INTERNAL_ERROR") and any(t in str(exc) for t in _NOT_FOUND_TEXT)


class Tracking:
    def __init__(self, uri: str | None = None) -> None:
        mlflow = quiet_mlflow()
        self.uri = uri or tracking_uri()
        self.client = mlflow.MlflowClient(tracking_uri=self.uri)

    def version(self, name: str, version: str) -> VersionInfo:
        """A registered version with its tags and its run's metrics.

        Raises:
            VersionNotFound: no such version, or its run is gone.
            StorageError: MLflow could not be asked (unreachable, refused the login).
        """
        from mlflow.exceptions import MlflowException

        try:
            mv = self.client.get_model_version(name, version)
        except MlflowException as exc:
            if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                # A server that refused the login (401/403) or could not be reached: not a
                # missing version (tests/team/test_ci_path.py).
                cause = " ".join(str(exc).split())[:300]
                raise StorageError(
                    f"could not read {name} version {version} from MLflow at {self.uri}: {cause}"
                ) from exc
            raise VersionNotFound(
                f"{name} version {version} is not in the MLflow registry at {self.uri}"
            ) from exc
        metrics: dict[str, float] = {}
        if mv.run_id:
            try:
                metrics = dict(self.client.get_run(mv.run_id).data.metrics)
            except MlflowException as exc:
                raise VersionNotFound(f"{name} version {version}: run {mv.run_id} is gone") from exc
        return VersionInfo(
            name=name,
            version=str(mv.version),
            run_id=mv.run_id or "",
            source=mv.source or "",
            tags=dict(mv.tags or {}),
            metrics=metrics,
        )

    def bundle_bytes(self, info: VersionInfo) -> bytes:
        """The bundle as logged by training: ``<source>/model.joblib``, else the run's copy.

        Raises:
            BundleMissing: neither place has it.
            StorageError: the artifact store failed otherwise (with the cause).
        """
        import mlflow

        # Keep stderr to one line per step: no progress bars from MLflow.
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        candidates: list[dict[str, Any]] = []
        if info.source and not info.source.startswith("models:/"):
            candidates.append({"artifact_uri": f"{info.source.rstrip('/')}/{BUNDLE_FILENAME}"})
        if info.run_id:
            path = f"{BUNDLE_ARTIFACT_DIR}/{BUNDLE_FILENAME}"
            candidates.append({"run_id": info.run_id, "artifact_path": path})
        with tempfile.TemporaryDirectory(prefix="registry-") as tmp:
            for where in candidates:
                try:
                    local = mlflow.artifacts.download_artifacts(
                        **where, dst_path=tmp, tracking_uri=self.uri
                    )
                    return Path(local).read_bytes()
                except Exception as exc:
                    if is_not_found(exc):  # not there: try the next place
                        continue
                    place = where.get("artifact_uri") or (
                        f"runs:/{where['run_id']}/{where['artifact_path']}"
                    )
                    cause = " ".join(str(exc).split())[:300]
                    raise StorageError(
                        f"could not download the bundle of {info.name} version {info.version}"
                        f" from {place}: {type(exc).__name__}: {cause}"
                    ) from exc
        raise BundleMissing(
            f"{info.name} version {info.version} has no {BUNDLE_ARTIFACT_DIR}/{BUNDLE_FILENAME}"
            f" (source {info.source or 'unset'}, run {info.run_id or 'unset'})"
        )

    def record_release(self, info: VersionInfo, tags: dict[str, str]) -> None:
        """Set the release tags on the version.

        Raises:
            StorageError: a tag could not be set (and does not already hold that value).
        """
        for key, value in tags.items():
            try:
                self.client.set_model_version_tag(info.name, info.version, key, value)
            except Exception as exc:
                # Two runs tagging one version at once collide in a SQLite store (a UNIQUE
                # constraint); if the other run wrote what we meant to, that is success.
                if self._tag(info, key) != value:
                    raise StorageError(
                        f"could not tag {info.name} version {info.version}: {exc}"
                    ) from exc

    def _tag(self, info: VersionInfo, key: str) -> str | None:
        try:
            return self.client.get_model_version(info.name, info.version).tags.get(key)
        except Exception:
            return None

    def champion(self, name: str) -> str | None:
        """The version `champion` names, or None when the alias is not set.

        Raises:
            StorageError: MLflow could not be asked.
        """
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client.get_model_version_by_alias(name, CHAMPION).version)
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise StorageError(f"could not read {name}@{CHAMPION}: {exc}") from exc

    def set_champion(self, name: str, version: str) -> None:
        """Move the `champion` alias to ``version``.

        Raises:
            StorageError: MLflow refused or could not be reached.
        """
        try:
            self.client.set_registered_model_alias(name, CHAMPION, version)
        except Exception as exc:
            raise StorageError(f"could not move {name}@{CHAMPION} to {version}: {exc}") from exc
