"""End to end through the real path: an MLflow SQLite store and the loopback S3 over HTTP.

Commands run in-process through ``registry.cli.main`` (MLflow's import is paid once); the
subprocess tests in test_registry_cli.py cover the same entry point as a separate program."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from registry import cli, errors, publish
from registry.history import history
from registry.manifest import bundle_key
from registry.store import ReleaseStore
from tests.registry.registry_helpers import Versions, approve

# The store reads every manifest back through the strict parser: a release names its bundle key.
KEY = bundle_key("wqi")

pytestmark = pytest.mark.integration


class Cli:
    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *argv: str, rc: int = 0) -> Any:
        code = cli.main(list(argv))
        out, err = self.capsys.readouterr()
        assert code == rc, err
        if rc:  # refusals print one error line (progress lines only if something was written)
            assert out == "" and err.count("registry: error:") == 1, err
            return err.splitlines()[-1]
        return json.loads(out) if argv[0] != "releases" or "--json" in argv else out


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(capsys)


def versions_of(bucket: str, key: str) -> list[dict[str, Any]]:
    resp = boto3.client("s3").list_object_versions(Bucket=bucket, Prefix=key)
    return [v for v in resp.get("Versions", []) if v["Key"] == key]


def bundle_versions(bucket: str) -> int:
    return len(versions_of(bucket, "models/wqi/model.joblib"))


def manifest_versions(bucket: str) -> int:
    return len(versions_of(bucket, "models/wqi/release.json"))


def test_promote_end_to_end_then_again_is_a_noop(
    versions: Versions, s3_env: dict[str, str], tmp_path: Path, run: Cli
) -> None:
    bucket = s3_env["bucket"]
    v1, sha1 = versions.add()
    approvals = str(approve(tmp_path / "approved.toml", wqi=v1))

    rel = run("promote", "wqi", "--approvals", approvals)

    assert rel["name"] == "wqi" and rel["mlflow_version"] == v1 and rel["sha256"] == sha1
    assert rel["bucket"] == bucket and rel["key"] == "models/wqi/model.joblib"
    assert rel["previous"] is None and rel["action"] == "promote"
    assert rel["released_at"].endswith("Z") and rel["git_sha"] == "abc1234"
    s3 = boto3.client("s3")
    obj = s3.get_object(
        Bucket=bucket, Key=rel["key"], VersionId=rel["version_id"], ChecksumMode="ENABLED"
    )
    body = obj["Body"].read()
    assert hashlib.sha256(body).hexdigest() == sha1
    assert obj["Metadata"] == {"sha256": sha1, "mlflow-version": v1, "git-sha": "abc1234"}
    assert obj["ChecksumSHA256"] == base64.b64encode(bytes.fromhex(sha1)).decode()
    stored = s3.get_object(Bucket=bucket, Key="models/wqi/release.json")
    assert json.loads(stored["Body"].read()) == rel
    tags = versions.tags("wqi", v1)
    assert tags["s3_version_id"] == rel["version_id"]
    assert tags["s3_uri"] == f"s3://{bucket}/models/wqi/model.joblib"
    assert tags["promoted_at"] == rel["released_at"]
    assert versions.champion() == v1
    assert run("current", "wqi", "--verify") == rel

    # Again: nothing uploaded, nothing written, the same JSON.
    assert run("promote", "wqi", "--approvals", approvals) == rel
    assert (bundle_versions(bucket), manifest_versions(bucket)) == (1, 1)


def test_newer_version_rollback_and_history(
    versions: Versions, s3_env: dict[str, str], tmp_path: Path, run: Cli
) -> None:
    bucket = s3_env["bucket"]
    v1, _ = versions.add(metrics={"rmse": 6.0, "r2": 0.7})
    v2, sha2 = versions.add(metrics={"rmse": 5.0, "r2": 0.8})
    r1 = run("promote", "wqi", "--approvals", str(approve(tmp_path / "a1.toml", wqi=v1)))
    approvals2 = str(approve(tmp_path / "a2.toml", wqi=v2))
    r2 = run("promote", "wqi", "--approvals", approvals2)
    assert r2["sha256"] == sha2 and r2["version_id"] != r1["version_id"]
    assert r2["previous"] == {k: v for k, v in r1.items() if k != "previous"}
    assert versions.champion() == v2

    # Rollback by steps: the manifest re-points to v1's object version; no bytes uploaded.
    back = run("rollback", "wqi")
    assert back["version_id"] == r1["version_id"] and back["mlflow_version"] == v1
    assert back["action"] == "rollback" and back["rolled_back_from"] == v2
    assert back["previous"]["version_id"] == r2["version_id"]
    assert versions.champion() == v1
    assert bundle_versions(bucket) == 2

    history = run("releases", "wqi", "--json")
    assert [h["mlflow_version"] for h in history] == [v1, v2, v1]
    assert [h["action"] for h in history] == ["rollback", "promote", "promote"]
    assert [h["current"] for h in history] == [True, False, False]
    table = run("releases", "wqi")
    assert table.splitlines()[1].startswith("*") and r1["version_id"] in table

    # The approval still names v2, which was rolled back: CI re-running promote must not undo it.
    err = run("promote", "wqi", "--approvals", approvals2, rc=errors.RolledBack.exit_code)
    assert "rolled back" in err
    # Nothing earlier than the first promotion.
    run("rollback", "wqi", rc=errors.NoRelease.exit_code)

    # Roll forward again by VersionId; still no upload.
    fwd = run("rollback", "wqi", "--to", r2["version_id"])
    assert fwd["mlflow_version"] == v2 and fwd["version_id"] == r2["version_id"]
    assert versions.champion() == v2 and bundle_versions(bucket) == 2
    run("rollback", "wqi", "--to", "no-such-version", rc=errors.NoRelease.exit_code)
    assert manifest_versions(bucket) == 4


def test_gates_thresholds_champion_and_force(
    versions: Versions, s3_env: dict[str, str], tmp_path: Path, run: Cli
) -> None:
    bucket = s3_env["bucket"]
    bad, _ = versions.add(metrics={"rmse": 20.0, "r2": 0.5})
    err = run(
        "promote",
        "wqi",
        "--approvals",
        str(approve(tmp_path / "bad.toml", wqi=bad)),
        rc=errors.GateFailed.exit_code,
    )
    assert "rmse=20" in err and bundle_versions(bucket) == 0

    good, _ = versions.add(metrics={"rmse": 5.0, "r2": 0.8})
    run("promote", "wqi", "--approvals", str(approve(tmp_path / "good.toml", wqi=good)))
    worse, _ = versions.add(metrics={"rmse": 7.0, "r2": 0.8})
    worse_ok = str(approve(tmp_path / "worse.toml", wqi=worse))
    err = run("promote", "wqi", "--approvals", worse_ok, rc=errors.WorseThanChampion.exit_code)
    assert "higher than champion" in err
    run("promote", "wqi", "--approvals", worse_ok, "--force", rc=errors.UsageError.exit_code)
    assert (bundle_versions(bucket), manifest_versions(bucket)) == (1, 1)

    forced = run("promote", "wqi", "--approvals", worse_ok, "--force", "--reason", "hotfix")
    assert forced["mlflow_version"] == worse and forced["force_reason"] == "hotfix"
    assert versions.champion() == worse


def test_unversioned_bucket_refused(
    versions: Versions, s3_env: dict[str, str], tmp_path: Path, run: Cli, monkeypatch: Any
) -> None:
    plain = s3_env["bucket"] + "-plain"
    boto3.client("s3").create_bucket(Bucket=plain)
    monkeypatch.setenv("MODEL_BUCKET", plain)
    v1, _ = versions.add()
    err = run(
        "promote",
        "wqi",
        "--approvals",
        str(approve(tmp_path / "a.toml", wqi=v1)),
        rc=errors.UnversionedBucket.exit_code,
    )
    assert "versioning" in err
    assert "Contents" not in boto3.client("s3").list_objects_v2(Bucket=plain)


def test_digest_mismatch_refused_with_nothing_written(
    versions: Versions, s3_env: dict[str, str], tmp_path: Path, run: Cli
) -> None:
    bucket = s3_env["bucket"]
    # The tag lies about the bundle.
    tagged, _ = versions.add(tags={"artifact_sha256": "0" * 64})
    err = run(
        "promote",
        "wqi",
        "--approvals",
        str(approve(tmp_path / "t.toml", wqi=tagged)),
        rc=errors.DigestMismatch.exit_code,
    )
    assert "artifact_sha256" in err
    # The artifact changed after registration.
    changed, _ = versions.add()
    logged = next(versions.root.glob("wqi/*/artifacts/bundle/model.joblib"))
    for path in versions.root.glob("wqi/*/artifacts/bundle/model.joblib"):
        path.write_bytes(path.read_bytes() + b"tampered")
    assert logged.exists()
    run(
        "promote",
        "wqi",
        "--approvals",
        str(approve(tmp_path / "c.toml", wqi=changed)),
        rc=errors.DigestMismatch.exit_code,
    )
    assert (bundle_versions(bucket), manifest_versions(bucket)) == (0, 0)
    assert versions.champion() is None


def test_tampered_s3_object_refused_on_rollback(
    versions: Versions, s3_env: dict[str, str], tmp_path: Path, run: Cli
) -> None:
    """Rollback reads the old object version back; a version whose bytes differ is refused,
    even when its metadata claims the right digest (the walk's HEAD check cannot see that)."""
    bucket = s3_env["bucket"]
    v1, _ = versions.add(metrics={"rmse": 6.0, "r2": 0.7})
    v2, _ = versions.add(metrics={"rmse": 5.0, "r2": 0.8})
    r1 = run("promote", "wqi", "--approvals", str(approve(tmp_path / "a1.toml", wqi=v1)))
    run("promote", "wqi", "--approvals", str(approve(tmp_path / "a2.toml", wqi=v2)))
    store = ReleaseStore(bucket)
    current = publish.current(store, "wqi")
    assert current.release is not None
    # Other bytes uploaded under the bundle key with v1's digest as metadata, and a release
    # naming them as v1's.
    swapped = boto3.client("s3").put_object(
        Bucket=bucket, Key=KEY, Body=b"other bytes", Metadata={"sha256": r1["sha256"]}
    )["VersionId"]
    forged = dataclasses.replace(
        current.release, version_id=swapped, sha256=r1["sha256"], mlflow_version=v1
    )
    publish.write(store, forged, current)
    run("rollback", "wqi", "--to", r1["version_id"])  # the honest v1 release still rolls back
    err = run("rollback", "wqi", "--to", swapped, rc=errors.DigestMismatch.exit_code)
    assert "SHA-256 mismatch" in err


def test_interrupt_between_upload_and_manifest_keeps_previous_release(
    versions: Versions, s3_env: dict[str, str], tmp_path: Path, run: Cli, monkeypatch: Any
) -> None:
    bucket = s3_env["bucket"]
    v1, _ = versions.add(metrics={"rmse": 6.0, "r2": 0.7})
    v2, _ = versions.add(metrics={"rmse": 5.0, "r2": 0.8})
    r1 = run("promote", "wqi", "--approvals", str(approve(tmp_path / "a1.toml", wqi=v1)))
    approvals2 = str(approve(tmp_path / "a2.toml", wqi=v2))

    def crash(*_: Any, **__: Any) -> None:
        raise KeyboardInterrupt  # as if CI cancelled the job right after the upload

    with monkeypatch.context() as m:
        m.setattr(publish, "write", crash)
        run("promote", "wqi", "--approvals", approvals2, rc=errors.Interrupted.exit_code)

    assert bundle_versions(bucket) == 2  # the upload happened ...
    assert run("current", "wqi", "--verify") == r1  # ... but v1 is still the release
    assert versions.champion() == v1 and "s3_version_id" not in versions.tags("wqi", v2)

    r2 = run("promote", "wqi", "--approvals", approvals2)  # re-running finishes the job
    assert r2["mlflow_version"] == v2 and r2["previous"]["version_id"] == r1["version_id"]
    assert versions.champion() == v2


def test_stale_conditional_write_is_refused_by_the_server(s3_env: dict[str, str]) -> None:
    """moto honours If-Match / If-None-Match over HTTP: a write based on a stale read fails."""
    from registry.manifest import Release

    store = ReleaseStore(s3_env["bucket"])

    def rel(n: int) -> Release:
        return Release("wqi", "1", s3_env["bucket"], KEY, "v", "a" * 64, "g", f"t{n}")

    empty = publish.current(store, "wqi")
    publish.write(store, rel(1), empty)
    with pytest.raises(errors.ConcurrentUpdate, match="PreconditionFailed"):
        publish.write(store, rel(2), empty)  # If-None-Match: * on an existing object
    first = publish.current(store, "wqi")
    publish.write(store, rel(3), first)
    with pytest.raises(errors.ConcurrentUpdate, match="PreconditionFailed"):
        publish.write(store, rel(4), first)  # If-Match with the ETag of a replaced version
    assert manifest_versions(s3_env["bucket"]) == 2


def test_write_is_withdrawn_when_the_server_ignores_the_condition(s3_env: dict[str, str]) -> None:
    """A server that evaluates If-Match non-atomically (or not at all) can accept a write based
    on a stale read. The version-order check catches it, deletes that write, and refuses."""
    from registry.manifest import Release

    class IgnoresConditions:
        def __init__(self) -> None:
            self.real = boto3.client("s3")

        def __getattr__(self, name: str) -> Any:
            return getattr(self.real, name)

        def put_object(self, **kwargs: Any) -> Any:
            kwargs.pop("IfMatch", None)
            kwargs.pop("IfNoneMatch", None)
            return self.real.put_object(**kwargs)

    bucket = s3_env["bucket"]
    store = ReleaseStore(bucket, client=IgnoresConditions())

    def rel(n: int) -> Release:
        return Release("wqi", str(n), bucket, KEY, f"v{n}", "a" * 64, "g", f"t{n}")

    empty = publish.current(store, "wqi")
    publish.write(store, rel(1), empty)
    with pytest.raises(errors.ConcurrentUpdate, match="at the same time"):
        publish.write(store, rel(2), empty)  # stale: the manifest exists now
    first = publish.current(store, "wqi")
    publish.write(store, rel(3), first)
    with pytest.raises(errors.ConcurrentUpdate, match="at the same time"):
        publish.write(store, rel(4), first)  # stale: rel(3) replaced it
    assert publish.current(store, "wqi").release == rel(3)
    assert [e.release for e in history(store, "wqi")] == [rel(3), rel(1)]


def test_identical_bytes_are_reused_and_rollback_still_moves_champion(
    versions: Versions, s3_env: dict[str, str], tmp_path: Path, run: Cli
) -> None:
    """A retrained version can be byte-identical (seeded training): no second upload, and
    rolling back still moves `champion` to the earlier MLflow version."""
    bucket = s3_env["bucket"]
    v1, sha = versions.add(payload={"same": "bytes"})
    v2, sha2 = versions.add(payload={"same": "bytes"})
    assert sha == sha2
    r1 = run("promote", "wqi", "--approvals", str(approve(tmp_path / "a1.toml", wqi=v1)))
    r2 = run("promote", "wqi", "--approvals", str(approve(tmp_path / "a2.toml", wqi=v2)))
    assert r2["version_id"] == r1["version_id"] and bundle_versions(bucket) == 1
    assert versions.champion() == v2
    back = run("rollback", "wqi")
    assert back["mlflow_version"] == v1 and back["version_id"] == r1["version_id"]
    assert versions.champion() == v1
    # One VersionId, two MLflow versions: --to is ambiguous, --to-version is not.
    err = run("rollback", "wqi", "--to", r1["version_id"], rc=errors.UsageError.exit_code)
    assert "--to-version" in err
    forward = run("rollback", "wqi", "--to-version", v2)
    assert forward["mlflow_version"] == v2 and forward["version_id"] == r1["version_id"]
    assert versions.champion() == v2


def test_approval_pins_the_bytes_even_if_artifact_and_tag_are_edited(
    versions: Versions, s3_env: dict[str, str], tmp_path: Path, run: Cli
) -> None:
    """After the merge, someone swaps the artifact in MLflow and rewrites artifact_sha256 to
    match: tag == bytes, but not what was approved. Refused, nothing written."""
    bucket = s3_env["bucket"]
    v1, sha1 = versions.add()
    approvals = str(approve(tmp_path / "a.toml", wqi=(v1, sha1)))
    for path in versions.root.glob("wqi/*/artifacts/bundle/model.joblib"):
        path.write_bytes(path.read_bytes() + b"swapped")
        new_sha = hashlib.sha256(path.read_bytes()).hexdigest()
    versions.client.set_model_version_tag("wqi", v1, "artifact_sha256", new_sha)

    err = run("promote", "wqi", "--approvals", approvals, rc=errors.DigestMismatch.exit_code)
    assert f"approved sha256 {sha1}" in err and new_sha in err
    assert (bundle_versions(bucket), manifest_versions(bucket)) == (0, 0)

    # An entry without sha256 is not a proper approval: exit 4, naming the field.
    (tmp_path / "old.toml").write_text(
        f'[wqi]\nversion = "{v1}"\napproved_by = "tester"\nreason = "test"\n'
    )
    err = run("promote", "wqi", "--approvals", str(tmp_path / "old.toml"), rc=4)
    assert "lacks sha256" in err


def test_promote_after_the_manifest_was_deleted(
    versions: Versions, s3_env: dict[str, str], tmp_path: Path, run: Cli
) -> None:
    """A plain delete on a versioned bucket leaves a delete marker: no release is current, and
    the next promotion must succeed (the marker, not the older real version, precedes it)."""
    bucket = s3_env["bucket"]
    v1, _ = versions.add()
    approvals = str(approve(tmp_path / "a.toml", wqi=v1))
    run("promote", "wqi", "--approvals", approvals)
    boto3.client("s3").delete_object(Bucket=bucket, Key="models/wqi/release.json")
    assert publish.current(ReleaseStore(bucket), "wqi").release is None

    again = run("promote", "wqi", "--approvals", approvals)
    assert again["mlflow_version"] == v1 and again["previous"] is None
    assert run("current", "wqi", "--verify") == again
    assert manifest_versions(bucket) == 2


def test_an_unreadable_old_manifest_version_is_skipped_with_a_warning(
    versions: Versions,
    s3_env: dict[str, str],
    tmp_path: Path,
    run: Cli,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bucket = s3_env["bucket"]
    s3 = boto3.client("s3")
    mkey = "models/wqi/release.json"
    v1, _ = versions.add(metrics={"rmse": 6.0, "r2": 0.7})
    v2, _ = versions.add(metrics={"rmse": 5.0, "r2": 0.8})
    r1 = run("promote", "wqi", "--approvals", str(approve(tmp_path / "a1.toml", wqi=v1)))
    good = s3.get_object(Bucket=bucket, Key=mkey)
    body, meta = good["Body"].read(), good["Metadata"]
    # A corrupt version in the middle of the history, then the good manifest again on top.
    bad = s3.put_object(Bucket=bucket, Key=mkey, Body=b"{not json", Metadata={"sha256": "0" * 64})
    s3.put_object(Bucket=bucket, Key=mkey, Body=body, Metadata=meta)

    r2 = run("promote", "wqi", "--approvals", str(approve(tmp_path / "a2.toml", wqi=v2)))
    assert r2["previous"]["version_id"] == r1["version_id"]
    history = run("releases", "wqi", "--json")
    assert [h["mlflow_version"] for h in history] == [v2, v1, v1]
    back = run("rollback", "wqi")
    assert back["mlflow_version"] == v1 and back["version_id"] == r1["version_id"]
    cli.main(["releases", "wqi"])
    err = capsys.readouterr().err
    assert "warning: skipping unreadable" in err and bad["VersionId"] in err


def test_promotion_reuses_bytes_without_reading_every_past_release(
    versions: Versions, s3_env: dict[str, str], tmp_path: Path, run: Cli, monkeypatch: Any
) -> None:
    bucket = s3_env["bucket"]
    releases = []
    for i in range(4):
        v, _ = versions.add(metrics={"rmse": 6.0 - i * 0.1, "r2": 0.7})
        releases.append(
            run("promote", "wqi", "--approvals", str(approve(tmp_path / f"{i}.toml", wqi=v)))
        )
    same, _ = versions.add(payload={"same": "bytes"}, metrics={"rmse": 5.0, "r2": 0.8})
    run("promote", "wqi", "--approvals", str(approve(tmp_path / "s.toml", wqi=same)))
    twin, _ = versions.add(payload={"same": "bytes"}, metrics={"rmse": 4.0, "r2": 0.8})
    run("rollback", "wqi")
    run("rollback", "wqi")  # the identical bytes are neither the live release nor its previous
    live = run("current", "wqi")
    assert live["mlflow_version"] == releases[2]["mlflow_version"]
    assert live["previous"]["mlflow_version"] == releases[3]["mlflow_version"]

    reads: list[str | None] = []
    real = publish.read

    def counting(store: ReleaseStore, name: str, version_id: str | None) -> Any:
        reads.append(version_id)
        return real(store, name, version_id)

    monkeypatch.setattr(publish, "read", counting)
    before = bundle_versions(bucket)
    rel = run("promote", "wqi", "--approvals", str(approve(tmp_path / "t.toml", wqi=twin)))
    assert bundle_versions(bucket) == before  # reused, not uploaded again
    assert rel["mlflow_version"] == twin
    # Only the write's own read-back names a manifest version; no per-release GETs.
    assert len([r for r in reads if r is not None]) == 1


@pytest.mark.parametrize(
    "failure",
    [
        ConnectionError("connection refused by mlflow.example:443"),
        PermissionError("AccessDenied reading s3://artifacts/bundle/model.joblib"),
    ],
)
def test_bundle_download_failures_are_storage_errors_not_missing_bundles(
    versions: Versions,
    s3_env: dict[str, str],
    tmp_path: Path,
    run: Cli,
    monkeypatch: Any,
    failure: Exception,
) -> None:
    import mlflow.artifacts

    v1, _ = versions.add()
    approvals = str(approve(tmp_path / "a.toml", wqi=v1))

    def broken(**_: Any) -> str:
        raise failure

    with monkeypatch.context() as m:
        m.setattr(mlflow.artifacts, "download_artifacts", broken)
        err = run("promote", "wqi", "--approvals", approvals, rc=errors.StorageError.exit_code)
    assert str(failure) in err and type(failure).__name__ in err
    # A bundle that is really not there is still "missing" (exit 6).
    bundleless, _ = versions.add(with_bundle=False)
    approvals = str(approve(tmp_path / "b.toml", wqi=bundleless))
    run("promote", "wqi", "--approvals", approvals, rc=errors.BundleMissing.exit_code)


def test_manifest_digest_catches_corruption_and_the_readme_says_only_that(
    versions: Versions, s3_env: dict[str, str], tmp_path: Path, run: Cli
) -> None:
    bucket = s3_env["bucket"]
    v1, _ = versions.add()
    run("promote", "wqi", "--approvals", str(approve(tmp_path / "a.toml", wqi=v1)))
    s3 = boto3.client("s3")
    good = s3.get_object(Bucket=bucket, Key="models/wqi/release.json")
    body, meta = good["Body"].read(), good["Metadata"]
    # Corruption: the body changes, the digest written with it does not -> refused as a broken
    # live release (exit 17), which `promote` or `rollback` repairs (test_registry_repair.py).
    s3.put_object(Bucket=bucket, Key="models/wqi/release.json", Body=body[:-5], Metadata=meta)
    err = run("current", "wqi", rc=errors.BrokenRelease.exit_code)
    assert "SHA-256 mismatch" in err
    # The check is kept, and documented for what it is: corruption, not tampering.
    readme = (Path(__file__).resolve().parents[2] / "registry" / "README.md").read_text()
    digests = " ".join(readme.split("**Digests.**")[1].split("\n\n")[0].split())
    assert "detects corruption only" in digests and "not tampering" in digests


def test_once_released_nothing_after_it_makes_the_command_fail(
    versions: Versions,
    s3_env: dict[str, str],
    tmp_path: Path,
    run: Cli,
    monkeypatch: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Ctrl-C after the manifest write landed (here: while the rollback closes its intent):
    the release is live, so the command says so, prints it once and exits 0."""
    from registry import intents

    for i, rmse in enumerate((6.0, 5.0)):
        v, _ = versions.add(metrics={"rmse": rmse, "r2": 0.8})
        run("promote", "wqi", "--approvals", str(approve(tmp_path / f"{i}.toml", wqi=v)))

    def interrupted(*_: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(intents, "close", interrupted)
    code = cli.main(["rollback", "wqi"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert len(out.splitlines()) == 1 and json.loads(out)["action"] == "rollback"
    assert "warning: released; after that: interrupted" in err
    assert run("current", "wqi") == json.loads(out)


def test_cut_short_while_the_write_is_on_its_way_is_unknown_not_failed(
    versions: Versions, s3_env: dict[str, str], tmp_path: Path, run: Cli, monkeypatch: Any
) -> None:
    """Ctrl-C after S3 applied the write but before the reply was seen: exit 130 saying that
    whether it was released is unknown (it was), never "nothing released"."""
    v1, _ = versions.add()
    real = publish.write

    def applied_then_interrupted(*args: Any) -> str:
        real(*args)
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(publish, "write", applied_then_interrupted)
        err = run("promote", "wqi", "--approvals", str(approve(tmp_path / "a.toml", wqi=v1)),
                  rc=errors.Interrupted.exit_code)  # fmt: skip
    assert "whether it was released is unknown" in err and "registry current wqi" in err
    assert run("current", "wqi")["mlflow_version"] == v1
