"""Typed failures, each with its own documented exit code (registry/README.md keeps the table).

Every refusal happens before anything is written, or says exactly what was written."""

from __future__ import annotations

OK = 0


class RegistryError(Exception):
    """Base class: ``exit_code`` is what the CLI returns, ``str(err)`` the one line it prints."""

    exit_code = 1


class UsageError(RegistryError):
    exit_code = 2


class UnknownModel(RegistryError):
    exit_code = 3


class NotApproved(RegistryError):
    exit_code = 4


class VersionNotFound(RegistryError):
    exit_code = 5


class BundleMissing(RegistryError):
    exit_code = 6


class DigestMismatch(RegistryError):
    exit_code = 7


class GateFailed(RegistryError):
    exit_code = 8


class WorseThanChampion(RegistryError):
    exit_code = 9


class BucketMissing(RegistryError):
    exit_code = 10


class NoCredentials(RegistryError):
    exit_code = 11


class UnversionedBucket(RegistryError):
    exit_code = 12


class ConcurrentUpdate(RegistryError):
    """Another promotion or rollback changed the release while this one ran."""

    exit_code = 13


class NoRelease(RegistryError):
    """No release yet, or the requested earlier release does not exist."""

    exit_code = 14


class RolledBack(RegistryError):
    """The approved version is the one a rollback moved away from."""

    exit_code = 15


class StorageError(RegistryError):
    """S3 or the MLflow tracking store failed in a way none of the above describes."""

    exit_code = 16


class BrokenRelease(RegistryError):
    """The live release names bundle bytes that are missing or do not match its SHA-256."""

    exit_code = 17


class OutcomeUnknown(RegistryError):
    """The manifest write left (S3 may have applied it), and S3 could not be asked afterwards
    whether it did: production is unknown until `current` says."""

    exit_code = 18


class NotSent(StorageError):
    """The manifest write never left: S3 could not be reached (every attempt failed to
    connect). Production is unchanged; re-run once S3 answers."""

    exit_code = 19


class Interrupted(RegistryError):
    exit_code = 130


ALL: tuple[type[RegistryError], ...] = (
    UsageError,
    UnknownModel,
    NotApproved,
    VersionNotFound,
    BundleMissing,
    DigestMismatch,
    GateFailed,
    WorseThanChampion,
    BucketMissing,
    NoCredentials,
    UnversionedBucket,
    ConcurrentUpdate,
    NoRelease,
    RolledBack,
    StorageError,
    BrokenRelease,
    OutcomeUnknown,
    NotSent,
    Interrupted,
)
