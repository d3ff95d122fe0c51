"""`make bench-train ARGS="--rows 1e6,1e7"`: training at scale, per engine. Prints JSON.

The potability table (3,276 rows) is resampled with replacement to each size, with Gaussian
noise of 1 % of each feature's spread, clipped to the suite's ranges (missing cells stay
missing, the label is the sampled row's), and written once as CSV under .local/bench-train/.
Each engine then trains it end to end (`pipeline.run`: load, validate, train, evaluate,
bundle, register into a private MLflow store) in a child process; the parent samples the RSS
of the child's whole process tree (the Spark JVM and its Python workers included) every
0.2 s. A benchmark, not a test.

The pandas engine is not started where its measured bytes per row say it would not fit in
the machine's available memory: that row count is reported as where it stops fitting.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil

from inference.bundle import sha256_hex
from settings import LOCAL_DIR, REPO
from training.expectations import feature_ranges, load_suite
from training.spec import load_spec

WORK = LOCAL_DIR / "bench-train"
MODEL = "potability"
ENGINES = ("pandas", "spark")
NOISE = 0.01  # of each feature's standard deviation
CHUNK = 1_000_000  # rows generated and written at a time
HEADROOM = 0.8  # of the available memory a run may be expected to use


def synthetic_csv(rows: int, seed: int = 7) -> Path:
    """The model's table resampled to ``rows`` with noise; written once, then reused."""
    path = WORK / f"{MODEL}-{rows}.csv"
    if path.is_file():
        return path
    spec = load_spec(MODEL)
    source = pd.read_csv(spec.data.path)
    features = list(spec.features)
    spread = source[features].std().to_numpy()
    ranges = feature_ranges(load_suite(spec.data.expectations), features)
    lows, highs = (np.array([ranges[f][k] for f in features]) for k in ("minimum", "maximum"))
    rng = np.random.default_rng(seed)
    WORK.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as out:
        for start in range(0, rows, CHUNK):
            part = source.iloc[rng.integers(0, len(source), min(CHUNK, rows - start))].copy()
            noise = rng.normal(0.0, 1.0, (len(part), len(features))) * spread * NOISE
            # Within the suite's ranges (noise must not fail validation); NaN stays missing.
            part[features] = np.clip(part[features].to_numpy() + noise, lows, highs)
            part.to_csv(out, index=False, header=start == 0, float_format="%.6g")
    tmp.replace(path)
    return path


def child(engine: str, path: Path) -> None:
    """One training run, as `python -m training` would do it, on the synthetic file."""
    from training import openmp, pipeline

    openmp.choose()
    spec = load_spec(MODEL)
    raw_sha = sha256_hex(path.read_bytes()) if engine == "pandas" else _streamed_sha(path)
    spec = replace(spec, engine=engine, data=replace(spec.data, path=path, sha256=raw_sha))
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        result = pipeline.run(spec, Path(tmp) / "bundles")
    print(json.dumps({"metrics": result.metrics, "candidate": result.candidate}))


def _streamed_sha(path: Path) -> str:
    from training.engines.spark import file_sha256

    return file_sha256(replace(load_spec(MODEL).data, path=path))


def measure(engine: str, path: Path) -> dict[str, Any]:
    """Wall time, the peak RSS of the child's process tree, and of the child alone (the
    Spark engine's driver; the JVM and its Python workers are its children)."""
    env = os.environ | {"PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.train_scale", "--child", engine, str(path)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    peak = driver = 0
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(_rss(p) for p in tree))
            driver = max(driver, _rss(root))
        except psutil.NoSuchProcess:
            pass
        time.sleep(0.2)
    seconds = time.perf_counter() - start
    out = proc.stdout.read() if proc.stdout else ""
    result: dict[str, Any] = {"seconds": round(seconds, 1), "peak_rss_mib": round(peak / 2**20),
                              "driver_peak_rss_mib": round(driver / 2**20)}  # fmt: skip
    if proc.returncode != 0:
        return result | {"ok": False, "exit_code": proc.returncode}
    report = json.loads(out.strip().splitlines()[-1])
    primary = load_spec(MODEL).gates.primary
    return result | {"ok": True, primary: report["metrics"][primary],
                     "candidate": report["candidate"]}  # fmt: skip


def bytes_per_row(runs: list[tuple[int, float]]) -> float:
    """The slope between the two largest pandas runs (imports cost the same at every size);
    from one run, its peak over its rows, an overestimate."""
    if len(runs) < 2:
        return runs[-1][1] / runs[-1][0]
    (small, small_peak), (large, large_peak) = runs[-2], runs[-1]
    return max((large_peak - small_peak) / (large - small), 1.0)


def _rss(process: psutil.Process) -> int:
    try:
        return int(process.memory_info().rss)
    except psutil.NoSuchProcess:
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.train_scale")
    parser.add_argument("--rows", default="3e5", help="comma-separated sizes, e.g. 1e6,1e7,3e7")
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--child", nargs=2, metavar=("ENGINE", "CSV"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return 0
    sizes = [int(float(s)) for s in args.rows.split(",")]
    engines = [e for e in args.engines.split(",") if e]
    available = psutil.virtual_memory().available
    runs: list[dict[str, Any]] = []
    pandas_bytes_per_row: float | None = None
    pandas_runs: list[tuple[int, float]] = []
    for rows in sorted(sizes):
        path = synthetic_csv(rows)
        base = {"rows": rows, "csv_mib": round(path.stat().st_size / 2**20)}
        for engine in engines:
            expected = None if pandas_bytes_per_row is None else pandas_bytes_per_row * rows
            if engine == "pandas" and expected is not None and expected > HEADROOM * available:
                skipped = f"estimated {expected / 2**30:.1f} GiB"
                runs.append(base | {"engine": engine, "ok": False, "skipped": skipped})
                continue
            run = base | {"engine": engine} | measure(engine, path)
            runs.append(run)
            print(json.dumps(run), file=sys.stderr, flush=True)
            if engine == "pandas" and run["ok"]:
                pandas_runs.append((rows, run["peak_rss_mib"] * 2**20))
                pandas_bytes_per_row = bytes_per_row(pandas_runs)
    total = psutil.virtual_memory().total
    limit = None if pandas_bytes_per_row is None else int(total / pandas_bytes_per_row)
    print(json.dumps({
        "model": MODEL,
        "machine": {"cpus": os.cpu_count(), "memory_gib": round(total / 2**30, 1)},
        "runs": runs,
        "pandas_bytes_per_row": pandas_bytes_per_row and round(pandas_bytes_per_row),
        "pandas_fits_up_to_rows_estimated": limit,
    }, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
