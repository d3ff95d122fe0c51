"""`make bench-image`: the serving image built and run as Lambda runs it, beside a seed-style
image built the same way. One JSON object on stdout (a benchmark, not a test).

Both images are built by buildah on the same stand-in Lambda base (tools/lambda_image.py):
ours from inference/Dockerfile; the seed's from benchmarks/baseline/Dockerfile (the seed
article's exact pins installed into the task root, its handler). Both run under runc in the
same sandbox (tools/lambda_sandbox.py: read-only root, 512 MB /tmp, the function's 1,024 MB
as the memory cap, loopback-only network), fetch their model over HTTP from the sandbox's S3
on every cold start, and answer the same direct event. The sides alternate run by run.

Figures: the image's size (its root filesystem, and what it adds to the base), cold start
(the container's start to its first answer: the runtime's init, the model's fetch and load,
one invocation), and the runtime's peak RSS (VmHWM) and the container's peak memory after
that answer. The machine's load average is recorded beside them.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.bench import EVENT, SEED_PINS, log, seed_venv, train_ours, train_seed
from inference.bundle import sha256_hex
from settings import REPO
from tools import lambda_image
from tools.lambda_sandbox import Sandbox

RUNS = int(os.environ.get("BENCH_IMAGE_RUNS", "5"))
MEMORY_MB = 1024  # the functions' memory_mb (infra/cdk.json)
BUCKET = "waterml-bench"
SEED_DOCKERFILE = REPO / "benchmarks" / "baseline" / "Dockerfile"


def seed_image() -> str:
    """The seed-style image: its Dockerfile and handler in a context of their own."""
    context = Path(tempfile.mkdtemp(prefix="seed-image-"))
    try:
        shutil.copy(SEED_DOCKERFILE, context / "Dockerfile")
        shutil.copy(REPO / "benchmarks" / "baseline" / "seed_handler.py", context)
        return lambda_image.build(dockerfile=context / "Dockerfile", context=context,
                                  tag="localhost/waterml-seed-style:bench",
                                  build_args={"SEED_PINS": " ".join(SEED_PINS)})  # fmt: skip
    finally:
        shutil.rmtree(context, ignore_errors=True)


def as_spec(image: lambda_image.Image) -> dict[str, Any]:
    return {"rootfs": str(image.rootfs), "env": image.env, "entrypoint": image.entrypoint,
            "cmd": image.cmd, "workdir": image.workdir}  # fmt: skip


def cold_start(sandbox: Sandbox, name: str, env: dict[str, str]) -> dict[str, float]:
    sandbox.start(name, env, memory_mb=MEMORY_MB)
    posted = sandbox.invoke(name, EVENT)
    stats = sandbox.request(op="stats", name=name)
    sandbox.stop(name)
    if posted["kind"] != "response" or posted["body"].get("statusCode") != 200:
        raise RuntimeError(f"{name} did not answer: {json.dumps(posted)[:2000]}")
    return {"cold_start_s": posted["since_start"], "vm_hwm_mb": stats["VmHWM"] / 1024,
            "cgroup_peak_mb": stats["memory.max_usage_in_bytes"] / 1024}  # fmt: skip


def main() -> int:
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    log("building both images (buildah, the stand-in Lambda base)")
    images = {"ours": lambda_image.image(lambda_image.build()),
              "seed_style": lambda_image.image(seed_image())}  # fmt: skip
    base = lambda_image.image(lambda_image.base())
    log("training the wqi bundle and the seed's pipeline")
    bundle, _ = train_ours()
    seed_model = train_seed(seed_venv())
    results: dict[str, list[dict[str, float]]] = {side: [] for side in images}
    sandboxes = {side: Sandbox(as_spec(image)).__enter__() for side, image in images.items()}
    try:
        data = bundle.read_bytes()
        ours_s3 = sandboxes["ours"].endpoints["s3"]
        version = sandboxes["ours"].put(BUCKET, "models/wqi/model.joblib", data)
        ours_env = {"MODEL_BUCKET": BUCKET, "MODEL_KEY": "models/wqi/model.joblib",
                    "MODEL_VERSION_ID": version, "MODEL_SHA256": sha256_hex(data),
                    "MODEL_VERSION": "1", "AWS_ENDPOINT_URL_S3": ours_s3,
                    "POWERTOOLS_SERVICE_NAME": "waterml-bench-wqi"}  # fmt: skip
        seed_s3 = sandboxes["seed_style"].endpoints["s3"]
        sandboxes["seed_style"].put(BUCKET, "seed/model.joblib", seed_model.read_bytes())
        seed_env = {"MODEL_BUCKET": BUCKET, "MODEL_KEY": "seed/model.joblib",
                    "AWS_ENDPOINT_URL_S3": seed_s3, "AWS_ENDPOINT_URL": seed_s3}  # fmt: skip
        envs = {"ours": ours_env, "seed_style": seed_env}
        for run in range(RUNS):
            for side in images if run % 2 == 0 else reversed(list(images)):
                log(f"cold start {run + 1}/{RUNS}: {side}")
                results[side].append(cold_start(sandboxes[side], f"{side}-{run}", envs[side]))
    finally:
        for sandbox in sandboxes.values():
            sandbox.__exit__(None, None, None)

    def median(side: str, key: str) -> float:
        return round(statistics.median(r[key] for r in results[side]), 3)

    figures: dict[str, Any] = {}
    for side, image in images.items():
        figures[side] = {
            "image_mb": round(image.size_bytes / 1e6, 1),
            "added_to_base_mb": round((image.size_bytes - base.size_bytes) / 1e6, 1),
            "cold_start_s_median": median(side, "cold_start_s"),
            "cold_start_s_all": [round(r["cold_start_s"], 3) for r in results[side]],
            "vm_hwm_mb_median": median(side, "vm_hwm_mb"),
            "cgroup_peak_mb_median": median(side, "cgroup_peak_mb"),
        }
    ratio = {key: round(figures["ours"][key] / figures["seed_style"][key], 3)
             for key in ("image_mb", "added_to_base_mb", "cold_start_s_median",
                         "vm_hwm_mb_median")}  # fmt: skip
    load_after = Path("/proc/loadavg").read_text().split()[:3]
    print(json.dumps({
        "runs": RUNS, "memory_mb": MEMORY_MB, "base_mb": round(base.size_bytes / 1e6, 1),
        "ours": figures["ours"], "seed_style": figures["seed_style"], "ours_over_seed": ratio,
        "loadavg_before": load_before, "loadavg_after": load_after,
    }, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
