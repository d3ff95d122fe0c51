"""How XGBoost's OpenMP threads wait, chosen before anything loads OpenMP (libgomp reads its
settings once, when xgboost or scikit-learn is imported). Waiting never changes the bytes.

A waiting thread spins GOMP_SPINCOUNT times (libgomp's default: 300,000), then sleeps. On a
CPU other programs are using, spinning threads take the time slices the working one needs;
sleeping at once (OMP_WAIT_POLICY=PASSIVE) costs a wake-up per wait, which on an idle VM is
slow. Measured on the 2-core machine, wqi's fits (the bulk of its train stage):

    waiting thread                 idle         two busy loops on the two cores
    spins 300,000 times (default)  3.6-5.3 s    58-147 s
    spins 1,000 times              3.8-4.3 s    15-20 s
    sleeps at once (PASSIVE)       15-18 s      7-17 s

So: PASSIVE when other programs keep the CPU busy as training starts, else 1,000 spins (the
knee: as fast as the default when idle, bounded if work arrives later). A policy or a spin
count already in the environment is respected. libgomp is what the Linux wheels of xgboost and
scikit-learn ship; macOS's libomp ignores GOMP_SPINCOUNT (it still honours OMP_WAIT_POLICY).

Only the standard library here: importing this module must not load OpenMP.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, MutableMapping

SPINS = "1000"
BUSY_CORES = 0.5  # others' use, in cores, from which waiting threads had better sleep
SAMPLE_SECONDS = 0.2


def busy_cores(sample: float = SAMPLE_SECONDS) -> float | None:
    """Cores other programs keep busy now (this process sleeps while it looks): the non-idle
    share of /proc/stat's CPU time over a short sample. None where there is no /proc/stat."""

    def read() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as stat:
            ticks = [int(v) for v in stat.readline().split()[1:9]]  # user .. steal
        return sum(ticks), ticks[3] + ticks[4]  # all, idle + iowait

    try:
        total_before, idle_before = read()
        time.sleep(sample)
        total_after, idle_after = read()
    except (OSError, ValueError, IndexError):
        return None
    total = total_after - total_before
    if total <= 0:
        return None
    return (os.cpu_count() or 1) * (1.0 - (idle_after - idle_before) / total)


def wait_policy(
    environ: Mapping[str, str], measure: Callable[[], float | None] = busy_cores
) -> dict[str, str]:
    """The variables to add to ``environ``: none when the user chose already."""
    if "OMP_WAIT_POLICY" in environ or "GOMP_SPINCOUNT" in environ:
        return {}
    busy = measure()
    if busy is not None and busy >= BUSY_CORES:
        return {"OMP_WAIT_POLICY": "PASSIVE"}
    return {"GOMP_SPINCOUNT": SPINS}


def choose(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Sets the policy in the environment (call before importing xgboost or scikit-learn)."""
    chosen = wait_policy(environ)
    environ.update(chosen)
    return chosen
