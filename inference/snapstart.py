"""Lambda SnapStart runtime hooks: what must hold before a snapshot and after every restore.

With SnapStart, Lambda runs init once when a version is published, snapshots the memory and
disk of that environment, and resumes every later cold start from the snapshot. So:

- **Before the snapshot** the pinned model is loaded (digest-checked, sanity-checked with the
  bundle's golden samples, as every load is) and warmed through the serving path once, so a
  restored environment answers its first request without any load work.
- **After each restore** nothing in the snapshot is trusted that can be checked cheaply:
  1. the ``MODEL_*`` pins are the ones the snapshot's model was loaded for and the model it
     serves carries them; otherwise the restore fails (``RestoreRefused``) and the snapshot's
     model is dropped, so that model never answers under other pins;
  2. the ``/tmp`` copy still holds the pinned bytes (and their pin record): read and
     SHA-256-checked; a copy that is gone or corrupt is fetched again from S3 by the pin and
     the model is reloaded from those proven bytes (a fetch that fails fails the restore);
  3. the process-wide pseudo-random generators are re-seeded: every environment restored from
     one snapshot would otherwise draw the same sequence (``random`` drives s3_get's backoff
     jitter, so restored environments retrying together would all pause alike).

An exception from an after-restore hook makes the runtime report a restore error and exit
(awslambdaric ``on_init_complete``; the caller sees ``SnapStartException``), so an environment
that fails a check never serves. ``snapshot_restore_py`` ships with the Lambda Python runtimes
(and with awslambdaric); ``register`` is a no-op where it is absent, and registering changes
nothing unless the runtime runs the hooks, which it does only for a SnapStart init.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from inference import config as config_mod
from inference import loader
from inference.observability import logger

if TYPE_CHECKING:
    from inference.handler import Service

PIN_FIELDS = ("bucket", "key", "version_id", "sha256", "model_version")
_snapshot_pins: dict[str, Any] | None = None  # what before_snapshot loaded and warmed


class RestoreRefused(Exception):
    """A restored environment must not serve: its model is not the one the pins name."""


def register() -> bool:
    """Register the hooks with the runtime's SnapStart library; False where there is none."""
    try:
        from snapshot_restore_py import register_after_restore, register_before_snapshot
    except ImportError:
        return False
    register_before_snapshot(before_snapshot)
    register_after_restore(after_restore)
    return True


def pins(cfg: config_mod.Config) -> dict[str, Any]:
    return {name: getattr(cfg, name) for name in PIN_FIELDS}


def served_pins(service: Service) -> dict[str, Any]:
    """The pins a loaded model carries (bucket and key live in the loader's proof, not here)."""
    model = service.model
    return {
        "version_id": model.version_id,
        "sha256": model.sha256,
        "model_version": model.configured_version,
    }


def mismatches(cfg: config_mod.Config, service: Service) -> list[str]:
    """Every pin on which the environment and the loaded model (or the snapshot) disagree."""
    wanted, served = pins(cfg), served_pins(service)
    problems = [
        f"{name}: serving {have!r}, pinned {wanted[name]!r}"
        for name, have in served.items()
        if have != wanted[name]
    ]
    for name, have in (_snapshot_pins or {}).items():  # bucket and key: as loaded for the snapshot
        if name not in served and have != wanted[name]:
            problems.append(f"{name}: snapshot loaded {have!r}, pinned {wanted[name]!r}")
    return problems


def warm(service: Service) -> None:
    """One pass of the golden inputs through the serving path (validation aside)."""
    inputs = service.model.bundle["golden"]["inputs"]
    service.predict(inputs, [None] * len(inputs))


def before_snapshot() -> None:
    """Load (or reuse) the pinned model and warm it; raising fails the version's publish.

    Raises:
        inference.config.ConfigError: the pins are missing or malformed.
        inference.handler.InitError: the model does not load.
        RestoreRefused: the loaded model is not the pinned one.
    """
    global _snapshot_pins
    from inference import handler  # deferred: the handler imports this module

    cfg = config_mod.from_env()
    service = handler._service or handler.init(cfg)
    problems = mismatches(cfg, service)
    if problems:
        raise RestoreRefused("the loaded model is not the pinned one: " + "; ".join(problems))
    warm(service)
    _snapshot_pins = pins(cfg)
    logger.info("snapshot ready: model loaded and warmed", extra={"model": service.model.name})


def reseed() -> None:
    """Fresh entropy for the process-wide generators the snapshot froze. ``uuid.uuid4`` and
    ``secrets`` read the kernel each call and need nothing."""
    random.seed()
    np.random.seed()


def after_restore() -> dict[str, Any]:
    """Re-check a restored environment; raises rather than serve anything unproven. Returns
    what it found (the tests and the log read it).

    Raises:
        RestoreRefused: the restored model does not match its pins.
        inference.loader.LoadError: the bundle can no longer be fetched by its pin.
        inference.handler.InitError: the model does not load again.
    """
    from inference import handler

    started = time.perf_counter()
    reseed()
    cfg = config_mod.from_env()
    service = handler._service
    if service is None:  # the snapshot holds no model (it failed to load): load it now
        handler.init(cfg)
        return _report("loaded", started)
    problems = mismatches(cfg, service)
    if problems:
        handler.reset()  # the snapshot's model must never answer under these pins
        raise RestoreRefused(
            "restored model does not match its pins, refusing to serve: " + "; ".join(problems)
        )
    _, source = loader.fetch_verified(cfg)  # reads and digest-checks the /tmp copy
    if source == "tmp":
        return _report("intact", started)
    # The copy was gone, corrupt or unpinned and has just been fetched again by the pin and
    # proven: rebuild the model from those bytes rather than trust the snapshot's memory.
    logger.warning("the /tmp bundle did not survive the restore: re-fetched, reloading")
    handler.reset()
    handler.init(cfg)
    return _report("refetched", started)


def _report(outcome: str, started: float) -> dict[str, Any]:
    report = {"outcome": outcome, "ms": round((time.perf_counter() - started) * 1000, 2)}
    logger.info("restore checked", extra=report)
    return report
