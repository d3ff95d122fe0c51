"""Promotion gates: the spec's thresholds, and "not worse than the current champion"."""

from __future__ import annotations

from registry.errors import GateFailed, UsageError, WorseThanChampion
from registry.tracking import VersionInfo
from training.spec import Gates


def check_thresholds(gates: Gates, candidate: VersionInfo) -> None:
    """The spec's metric thresholds.

    Raises:
        GateFailed: a metric misses its threshold (or is missing).
    """
    failures = gates.failures(candidate.metrics)
    if failures:
        raise GateFailed(f"{candidate.name} version {candidate.version}: " + "; ".join(failures))


def require_reason(force: bool, reason: str | None) -> None:
    """``--force`` is recorded with its reason.

    Raises:
        UsageError: ``force`` without a non-blank ``reason``.
    """
    if force and not (reason and reason.strip()):
        raise UsageError('--force needs --reason "...": the override is recorded in the release')


def check_against_champion(
    gates: Gates,
    candidate: VersionInfo,
    champion: VersionInfo | None,
    force: bool,
    reason: str | None,
) -> str | None:
    """Return a note for stderr when the comparison was overridden.

    Raises:
        UsageError: ``force`` without a reason.
        WorseThanChampion: the candidate's primary metric is worse (or cannot be compared)
            and ``force`` is not set.
    """
    require_reason(force, reason)
    if champion is None or champion.version == candidate.version:
        return None
    metric = gates.primary
    new, old = candidate.metrics.get(metric), champion.metrics.get(metric)
    if new is not None and old is not None and gates.better_or_equal(new, old):
        return None
    if new is None or old is None:
        detail = f"cannot compare {metric} (candidate {new}, champion {old})"
    else:
        word = "lower" if gates.greater_is_better else "higher"
        detail = (
            f"{metric}={new:.6g} is {word} than champion version {champion.version}'s {old:.6g}"
        )
    if force:
        return f"forced past the champion gate: {detail}"
    raise WorseThanChampion(
        f'{candidate.name} version {candidate.version}: {detail}; use --force --reason "..."'
    )
