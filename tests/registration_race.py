"""``python -m tests.registration_race SPEC BARRIER N``: train SPEC through the real pipeline,
entering the register stage only once N such processes are ready to (a barrier of files in
the folder BARRIER), so that concurrent trainers of the same bytes register at the same
moment. Prints the pipeline's result as one JSON line. Used by the concurrency tests
(tests/training/test_registration_race.py, tests/team/test_ci_path.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from settings import REPO


def main(spec_path: str, barrier: str, count: str) -> None:
    from training import openmp

    openmp.choose()
    from training import pipeline, register
    from training.spec import load_spec_file

    original = register.log_and_register

    def at_once(run: register.TrainingRun) -> register.Registered:
        folder = Path(barrier)
        (folder / str(os.getpid())).touch()
        deadline = time.monotonic() + 900
        while len(list(folder.iterdir())) < int(count) and time.monotonic() < deadline:
            time.sleep(0.05)
        return original(run)

    register.log_and_register = at_once  # type: ignore[assignment]
    result = pipeline.run(load_spec_file(Path(spec_path)))
    print(json.dumps(result.__dict__, sort_keys=True))


def race(spec: Path, envs: list[dict[str, str]], barrier: Path) -> list[dict[str, Any]]:
    """One trainer of ``spec`` per environment, all registering at once; their results."""
    barrier.mkdir()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.registration_race",
                str(spec),
                str(barrier),
                str(len(envs)),
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for env in envs
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=1200)
        assert proc.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def one_version(results: list[dict[str, Any]]) -> str:
    """The version every trainer reports, of which exactly one registered it."""
    (version,) = {r["version"] for r in results}
    assert sorted(r["reused"] for r in results) == [False] + [True] * (len(results) - 1)
    (digest,) = {r["artifact_sha256"] for r in results}
    assert len(digest) == 64
    return str(version)


if __name__ == "__main__":
    main(*sys.argv[1:])
