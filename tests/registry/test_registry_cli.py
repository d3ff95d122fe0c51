"""The CLI as CI runs it (``python -m registry`` in a subprocess): every refusal gives one line
on stderr, its documented exit code, no traceback and nothing written; plus real concurrency."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest

from registry import errors, publish
from registry.history import history
from registry.promote import promote
from registry.store import ReleaseStore
from tests.registry.registry_helpers import REPO, Versions, approve, run_cli

pytestmark = pytest.mark.integration


def spawn(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "registry", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def object_count(bucket: str) -> int:
    resp = boto3.client("s3").list_object_versions(Bucket=bucket)
    return len(resp.get("Versions", [])) + len(resp.get("DeleteMarkers", []))


def test_help() -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0 and "promote" in proc.stdout and "WorseThanChampion" in proc.stdout


def test_every_bad_input_has_its_exit_code(
    versions: Versions, s3_env: dict[str, str], tmp_path: Path
) -> None:
    bucket = s3_env["bucket"]
    champion, _ = versions.add(metrics={"rmse": 5.0, "r2": 0.8})
    env = os.environ.copy()
    promote("wqi", approve(tmp_path / "c.toml", wqi=champion), log=lambda _: None)
    before = object_count(bucket)

    bundleless, _ = versions.add(with_bundle=False)
    lying, _ = versions.add(tags={"artifact_sha256": "0" * 64})
    failing, _ = versions.add(metrics={"rmse": 99.0, "r2": 0.1})
    worse, _ = versions.add(metrics={"rmse": 9.0, "r2": 0.5})
    plain = bucket + "-plain"
    boto3.client("s3").create_bucket(Bucket=plain)

    def approved(**entry: str) -> str:
        name = "-".join(f"{k}{v}" for k, v in entry.items())
        return str(approve(tmp_path / f"{name}.toml", **entry))

    no_creds = {k: v for k, v in env.items() if not k.startswith("AWS_") or k.endswith("_S3")}
    no_creds |= {
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    no_bucket_env = {k: v for k, v in env.items() if k != "MODEL_BUCKET"}
    good = approved(wqi=champion)
    cases: list[tuple[type[errors.RegistryError], list[str], dict[str, str]]] = [
        (errors.UnknownModel, ["promote", "nosuch", "--approvals", good], env),
        (errors.NotApproved, ["promote", "wqi", "--approvals", approved(potability="1")], env),
        (errors.VersionNotFound, ["promote", "wqi", "--approvals", approved(wqi="99")], env),
        (errors.BundleMissing, ["promote", "wqi", "--approvals", approved(wqi=bundleless)], env),
        (errors.DigestMismatch, ["promote", "wqi", "--approvals", approved(wqi=lying)], env),
        (errors.GateFailed, ["promote", "wqi", "--approvals", approved(wqi=failing)], env),
        (errors.WorseThanChampion, ["promote", "wqi", "--approvals", approved(wqi=worse)], env),
        (errors.BucketMissing, ["promote", "wqi", "--approvals", good], no_bucket_env),
        (
            errors.BucketMissing,
            ["promote", "wqi", "--approvals", good],
            env | {"MODEL_BUCKET": bucket + "-missing"},
        ),
        (errors.NoCredentials, ["promote", "wqi", "--approvals", good], no_creds),
        (
            errors.UnversionedBucket,
            ["promote", "wqi", "--approvals", good],
            env | {"MODEL_BUCKET": plain},
        ),
        (errors.NoRelease, ["rollback", "wqi"], env),  # only one release: nothing earlier
        (errors.NoRelease, ["current", "potability"], env),
        (errors.UsageError, ["promote", "wqi", "--approvals", good, "--force"], env),
    ]
    # A few at a time: fourteen MLflow imports at once on a shared two-core machine took longer
    # than any fixed wait (seen at load 15).
    with ThreadPoolExecutor(max_workers=3) as pool:
        runs = pool.map(lambda case: (case[0], case[1], run_cli(*case[1], env=case[2])), cases)
    for error, args, proc in runs:
        out, err = proc.stdout, proc.stderr
        assert proc.returncode == error.exit_code, (args, err)
        assert out == "", args
        assert err.count("\n") == 1 and err.startswith("registry: error: "), (args, err)
        assert "Traceback" not in err
    assert object_count(bucket) == before
    assert versions.champion() == champion


def test_concurrent_promotions_end_in_one_consistent_release(
    versions: Versions, s3_env: dict[str, str], tmp_path: Path
) -> None:
    """Two CI jobs promoting different versions at once, as separate processes."""
    bucket = s3_env["bucket"]
    v1, _ = versions.add(metrics={"rmse": 5.0, "r2": 0.8})
    v2, _ = versions.add(metrics={"rmse": 5.0, "r2": 0.8})  # equal: either may follow the other
    env = os.environ.copy()
    procs = [
        spawn("promote", "wqi", "--approvals", str(approve(tmp_path / f"{v}.toml", wqi=v)), env=env)
        for v in (v1, v2)
    ]
    results = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    codes = sorted(code for code, _, _ in results)
    assert codes in ([0, 0], [0, errors.ConcurrentUpdate.exit_code]), results
    assert_consistent(versions, bucket, [json.loads(out) for code, out, _ in results if code == 0])


def test_racing_writers_on_the_same_base(
    versions: Versions, s3_env: dict[str, str], tmp_path: Path, monkeypatch: Any
) -> None:
    """Force the worst interleaving: both promotions read the same (empty) manifest, then both
    write at once. Exactly one wins; the other is refused and leaves no trace in the manifest."""
    import threading

    from registry.promote import promote

    bucket = s3_env["bucket"]
    v1, _ = versions.add(metrics={"rmse": 5.0, "r2": 0.8})
    v2, _ = versions.add(metrics={"rmse": 5.0, "r2": 0.8})
    barrier = threading.Barrier(2, timeout=30)
    real_write = publish.write

    def write_together(*args: Any) -> str:
        barrier.wait()
        return real_write(*args)

    monkeypatch.setattr(publish, "write", write_together)
    outcomes: dict[str, Any] = {}

    def job(version: str) -> None:
        try:
            path = approve(tmp_path / f"{version}.toml", wqi=version)
            outcomes[version] = promote("wqi", path, log=lambda _: None).to_dict()
        except errors.RegistryError as exc:
            outcomes[version] = exc

    threads = [threading.Thread(target=job, args=(v,)) for v in (v1, v2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    won = [r for r in outcomes.values() if isinstance(r, dict)]
    lost = [r for r in outcomes.values() if isinstance(r, errors.ConcurrentUpdate)]
    assert len(won) == 1 and len(lost) == 1, outcomes
    assert_consistent(versions, bucket, won)
    assert len(history(ReleaseStore(bucket), "wqi")) == 1


def assert_consistent(versions: Versions, bucket: str, successes: list[dict[str, Any]]) -> None:
    """The live manifest names bytes whose digest matches it and its MLflow version; each
    manifest version's ``previous`` is exactly the one before it (no lost update); the champion
    alias names the live version; every reported success is in the history."""
    store = ReleaseStore(bucket)
    live = publish.current(store, "wqi").release
    assert live is not None
    store.read_verified(live.key, live.version_id, live.sha256)
    assert versions.tags("wqi", live.mlflow_version)["artifact_sha256"] == live.sha256
    assert versions.champion() == live.mlflow_version
    past = [e.release for e in history(store, "wqi")]
    for newer, older in itertools.pairwise(past):
        assert newer.previous == older.as_previous()
    assert past[-1].previous is None
    recorded = [r.to_dict() for r in past]
    assert all(s in recorded for s in successes)
