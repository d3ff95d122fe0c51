"""`make demo`: the whole flow on local defaults, narrated.

train every model -> approve their candidates -> promote to the (loopback) S3 bucket ->
promote again (a no-op) -> answer every sample event through the Lambda handler -> the domain
verdict on both sides (an estuary reading, the seed's fresh water) -> train and promote a
newer potability version -> release history -> roll back.

Everything the demo writes is its own: a fresh MLflow store in `.local/demo/` (whatever
MLFLOW_TRACKING_URI says), the private loopback S3 that `make demo` starts (whatever
MODEL_BUCKET says), and approvals in `.local/demo/approved.toml`, never the committed
`registry/approved.toml`. A team's registry and bucket are never touched.

It prints what a person reads: each command, the stage lines and summaries of training, one
line per release, the answers. The JSON the commands print for scripts is read, not echoed,
and the handler's own log lines and metrics go to `.local/demo/invoke.log`.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from registry.errors import WorseThanChampion
from settings import LOCAL_DIR, REPO
from tools import local_s3
from training.__main__ import summary
from training.spec import available

PY = sys.executable
DEMO_DIR = LOCAL_DIR / "demo"
APPROVALS = DEMO_DIR / "approved.toml"
TRACKING_URI = f"sqlite:///{DEMO_DIR / 'mlflow.db'}"
HANDLER_LOG = DEMO_DIR / "invoke.log"
TUNED_REASON = "demo: the tuned version, accepted below the champion's score"
EVENTS = sorted((REPO / "inference" / "events").glob("*.json"))
# The two sides of the wqi model's domain (inference/README.md, "The domain verdict").
INSIDE, FRESH = EVENTS[0].parent / "direct.json", EVENTS[0].parent / "freshwater.json"
# The models the later steps show (answering every event shape, tuning, rolling back).
SHOWN = ("wqi", "potability")


def step(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def run(*args: str, show: bool = False, refused: int | None = None) -> str:
    """`python -m ARGS` against the demo's store: its stdout, printed too when ``show``; its
    stderr (progress lines, errors) passes through. Exit code ``refused`` is an answer the
    demo shows, not a failure: the run then returns "".

    Raises:
        SystemExit: the command failed; the demo stops, naming it and its exit code.
    """
    print(f"$ {shlex.join(args)}", flush=True)  # as a person would paste it
    env = os.environ | {"MLFLOW_TRACKING_URI": TRACKING_URI}
    out = subprocess.run([PY, "-m", *args], cwd=REPO, text=True, check=False, env=env,
                         stdout=subprocess.PIPE)  # fmt: skip
    if out.returncode == refused:
        return ""
    if out.returncode != 0:
        raise SystemExit(f"demo stopped: `{' '.join(args)}` exited {out.returncode}")
    if show:
        print(out.stdout, end="", flush=True)
    return out.stdout or ""


def train(*models: str) -> dict[str, tuple[str, str]]:
    """Candidates by name: (MLflow version, artifact_sha256). Each model's line is the one
    `make train` prints."""
    results = [json.loads(line) for line in run("training", *models, "--json").splitlines()]
    for result in results:
        print(summary(SimpleNamespace(**result)), flush=True)
    return {r["name"]: (r["version"], r["artifact_sha256"]) for r in results if r["candidate"]}


def invoke(event: Path, model: str) -> str:
    """The answer to one event, as `make invoke` prints it (the handler's logs to a file)."""
    return run("tools.invoke", str(event.relative_to(REPO)), "--model", model,
               "--logs", str(HANDLER_LOG.relative_to(REPO)), show=True)  # fmt: skip


def approve(versions: dict[str, tuple[str, str]]) -> None:
    """The reviewer's edit: the version, and the sha256 of the bytes they approved."""
    APPROVALS.write_text("".join(
        f'[{name}]\nversion = "{version}"\nsha256 = "{sha}"\napproved_by = "make demo"\n'
        f'reason = "demo: candidate version {version}"\n\n'
        for name, (version, sha) in sorted(versions.items())
    ))  # fmt: skip
    print(APPROVALS.read_text(), end="")


def promote(model: str, *extra: str, refused: int | None = None) -> dict[str, object] | None:
    """The release promotion made (None when it refused with exit code ``refused``)."""
    out = run("registry", "promote", model, "--approvals", str(APPROVALS), *extra, refused=refused)
    if not out:
        return None
    release = json.loads(out)
    print(
        f"-> {model}: MLflow version {release['mlflow_version']} is S3 VersionId "
        f"{release['version_id']}"
    )
    return release


def main() -> int:
    """The whole flow, narrated.

    Raises:
        SystemExit: not run through `make demo` (no private loopback S3), a model the later
            steps show is not a candidate, or a step failed.
    """
    if not os.environ.get("AWS_ENDPOINT_URL_S3", "").startswith(f"http://{local_s3.HOST}:"):
        raise SystemExit("demo stopped: run it with `make demo`, which starts a private local S3")
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    DEMO_DIR.mkdir(parents=True)
    print(f"MLflow store for this demo: {TRACKING_URI}")

    models = available()  # every spec in training/specs/: a third model joins the demo
    step(f"1. train and register every model: {', '.join(models)} (make train)")
    versions = train()
    below = sorted(set(models) - set(versions))
    if any(name in below for name in SHOWN):
        raise SystemExit(
            f"demo stopped: not every model became a candidate (not: {', '.join(below)})"
        )
    if below:  # a model being added that misses its gates must not stop everyone's demo
        print(
            f"\nnot candidates (registered, below their [gates]; not promoted): {', '.join(below)}"
        )

    step("2. approve the candidates (a reviewed edit of registry/approved.toml in real life)")
    approve(versions)

    step("3. promote: upload, read back the VersionId, write the release manifest")
    first = {model: promote(model) for model in sorted(versions)}

    step("4. promote the same approved version again: nothing is uploaded")
    again = promote("wqi")
    print("same release as before:", again == first["wqi"])

    step("5. answer every event shape with the promoted wqi release (make invoke)")
    for event in EVENTS:
        if event == FRESH:  # step 5b
            continue
        print(f"\n--- {event.name}")
        invoke(event, "wqi")

    step("5b. the domain verdict: an estuary reading, and the seed's freshwater reading")
    for event, what in ((INSIDE, "inside the training data"),
                        (FRESH, "the seed's fresh water: TDS 410 mg/L, pH 7.4")):  # fmt: skip
        print(f"\n--- {event.name} ({what})")
        answer = json.loads(invoke(event, "wqi"))
        print(f"-> domain {json.dumps(answer['prediction']['domain'])}, confidence "
              f"{answer['prediction']['confidence']}")  # fmt: skip
    print("(outside the domain the confidence is the training labels' share of the band)")

    step("6. tune potability (min_child_weight 3 -> 1), train, approve and promote it")
    tuned = DEMO_DIR / "potability.toml"
    spec = (REPO / "training" / "specs" / "potability.toml").read_text()
    tuned.write_text(spec.replace("min_child_weight = 3", "min_child_weight = 1"))
    versions |= train("--spec", str(tuned))
    approve(versions)
    if promote("potability", refused=WorseThanChampion.exit_code) is None:
        print("-> refused: it scores below the champion (the line above says by how much); a "
              "reviewer who accepts that says why, and the release records it:")  # fmt: skip
        promote("potability", "--force", "--reason", TUNED_REASON)

    step("7. the release history, read from the S3 versions of release.json")
    run("registry", "releases", "potability", show=True)

    step("8. roll back to the previous release (no bytes re-uploaded)")
    back = json.loads(run("registry", "rollback", "potability", "--steps", "1"))
    print(f"-> potability: live again MLflow version {back['mlflow_version']}, S3 VersionId "
          f"{back['version_id']}")  # fmt: skip
    run("registry", "releases", "potability", show=True)

    step("done")
    print(
        f"MLflow: `MLFLOW_TRACKING_URI={TRACKING_URI} make ui` shows the demo's runs, "
        "versions, tags and aliases (`make train` uses mlruns/)."
    )
    print(f"The handler's log lines and metrics of every answer: {HANDLER_LOG.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
