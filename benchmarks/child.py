"""Runs inside a fresh interpreter: import a handler, answer one event, optionally measure.

Standard library only until the handler's own imports, so the parent can time a cold start
from process creation to the first answer. Usage:

    python [-I -S] child.py PATHS MODULE MODE EVENT_JSON
      PATHS   colon-separated folders put first on sys.path (the dependency set)
      MODULE  the handler module; it must define lambda_handler(event, context)
      MODE    "cold" (answer once, exit) or "warm" (then latency, batch throughput, peak RSS)

The peak RSS is what a Lambda would need: like its runtime, the child holds one event and one
response at a time (each 10,000-record batch is built just before it is measured; each answer
is dropped before the next batch). Holding both batches and two responses at once added
~7 MiB that no function ever holds.
"""

from __future__ import annotations

import json
import sys
import time

MARK = "BENCH "
WARM_CALLS = 3000
WARMUP_CALLS = 300
BATCH_ROWS = 10_000
BATCH_REPEATS = 25
# The seed's reading (fresh water): outside the wqi model's domain.
FRESH = {"pH": 7.4, "turbidity": 3.2, "tds": 410.0, "temperature": 21.5}


class Context:
    aws_request_id = "bench"
    function_name = "bench"


def main() -> None:
    paths, module_name, mode, event_json = sys.argv[1:5]
    sys.path[:0] = [p for p in paths.split(":") if p]
    started = time.perf_counter()
    module = __import__(module_name, fromlist=["lambda_handler"])
    handler = module.lambda_handler
    event = json.loads(event_json)
    answer = handler(event, Context())
    first = time.perf_counter() - started
    print(MARK + json.dumps({"answer": answer, "in_process_s": first}), flush=True)
    if mode == "warm":
        print(MARK + json.dumps(warm(module, handler, event)), flush=True)


def peak_rss_mb() -> float:
    """VmHWM: this process's own high-water mark (ru_maxrss would carry the parent's over the
    fork, since Linux keeps it across exec)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return -1.0


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def warm(module: object, handler: object, event: dict) -> dict:  # type: ignore[type-arg]
    context = Context()
    for _ in range(WARMUP_CALLS):
        handler(event, context)  # type: ignore[operator]
    timings = []
    clock = time.perf_counter
    for _ in range(WARM_CALLS):
        t = clock()
        handler(event, context)  # type: ignore[operator]
        timings.append(clock() - t)
    timings.sort()
    batch = getattr(module, "bench_batch", None) or (
        lambda rs: handler({"records": rs}, context)  # type: ignore[operator]
    )
    raw = getattr(module, "bench_raw_rows_per_s", None)
    domain = getattr(module, "bench_domain_us", None)
    figures: dict[str, object] = {
        "warm_calls": WARM_CALLS,
        "warm_p50_us": round(percentile(timings, 0.50) * 1e6, 1),
        "warm_p99_us": round(percentile(timings, 0.99) * 1e6, 1),
        "batch_rows": BATCH_ROWS,
    }
    domain_us = {}
    # One 10,000-record event alive at a time, as a Lambda holds one event: each is built
    # just before it is measured and dropped after.
    for side, build in (("inside", inside_rows), ("outside", outside_rows)):
        records = build(event)
        key = "batch_rows_per_s" if side == "inside" else "batch_outside_rows_per_s"
        figures[key] = batch_rate(batch, records)
        if side == "inside":
            figures["model_only_rows_per_s"] = raw(records) if raw else None
        if domain:
            domain_us[side] = domain(records)
        del records
    figures["domain_check_us"] = domain_us or None
    figures["peak_rss_mb"] = peak_rss_mb()
    return figures


def inside_rows(event: dict) -> list:  # type: ignore[type-arg]
    """The event's reading (from the middle of the wqi model's domain), varied a little,
    deterministically."""
    return [
        {
            "deviceId": f"d{i}",
            "readings": event["readings"]
            | {"pH": event["readings"]["pH"] + (i % 30 - 15) / 100, "turbidity": 1.0 + i % 30},
        }
        for i in range(BATCH_ROWS)
    ]


def outside_rows(event: dict) -> list:  # type: ignore[type-arg]
    """The seed's fresh water, varied as the seed's devices would: every row outside."""
    return [
        {
            "deviceId": f"d{i}",
            "readings": FRESH | {"pH": 6.0 + (i % 30) / 10.0, "turbidity": float(i % 50)},
        }
        for i in range(BATCH_ROWS)
    ]


def batch_rate(batch: object, records: list) -> int:  # type: ignore[type-arg]
    """Rows per second: the median of BATCH_REPEATS batches. Each answer is counted and
    dropped before the next batch starts: a Lambda returns one response before it takes the
    next event, and never holds two."""
    clock = time.perf_counter
    batch_times = []
    for _ in range(BATCH_REPEATS):
        t = clock()
        result = batch(records)  # type: ignore[operator]
        batch_times.append(clock() - t)
        count = len(result["predictions"]) if isinstance(result, dict) else len(result)
        assert count == BATCH_ROWS, count
        del result
    batch_times.sort()
    return round(BATCH_ROWS / batch_times[len(batch_times) // 2])


if __name__ == "__main__":
    main()
