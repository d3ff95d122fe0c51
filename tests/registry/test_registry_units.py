"""Unit tests: approvals, gates, the manifest, target selection, exit codes. No S3, no MLflow."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest

from registry import approvals, cli, deadline, errors, gates, manifest
from registry.errors import GateFailed, NoRelease, NotApproved, UsageError, WorseThanChampion
from registry.history import ManifestVersion
from registry.manifest import Release
from registry.targets import pick_target
from registry.tracking import VersionInfo
from tests.registry.registry_helpers import approve
from training.spec import Gates

WQI_GATES = Gates(
    primary="rmse", greater_is_better=False, minimum={"r2": 0.0}, maximum={"rmse": 15}
)


def info(version: str, **metrics: float) -> VersionInfo:
    return VersionInfo("wqi", version, "run", "src", {}, dict(metrics))


def release(version: str, vid: str, action: str = "promote", **extra: str) -> Release:
    return Release(
        "wqi", version, "b", "models/wqi/model.joblib", vid, version * 64, "g", "t", action, extra
    )


# -- approvals ------------------------------------------------------------------------------


def test_approvals_read_versions_as_strings(tmp_path: Path) -> None:
    path = tmp_path / "a.toml"
    path.write_text(
        f'[wqi]\nversion = 3\nsha256 = "{"AB" * 32}"\n'
        'approved_by = "jane"\nreason = "better rmse"\n'
    )
    got = approvals.approved("wqi", path)
    assert (got.version, got.approved_by, got.reason) == ("3", "jane", "better rmse")
    assert got.sha256 == "ab" * 32


def test_approval_without_sha256_is_refused_naming_the_field(tmp_path: Path) -> None:
    path = tmp_path / "a.toml"
    path.write_text('[wqi]\nversion = "3"\napproved_by = "jane"\nreason = "better rmse"\n')
    with pytest.raises(NotApproved, match="not approved properly: it lacks sha256"):
        approvals.approved("wqi", path)
    path.write_text('[wqi]\nversion = "3"\nsha256 = "abc"\napproved_by = "j"\nreason = "r"\n')
    with pytest.raises(NotApproved, match="sha256 must be 64 hex digits"):
        approvals.approved("wqi", path)


def test_unapproved_model_and_incomplete_entries_refused(tmp_path: Path) -> None:
    path = approve(tmp_path / "a.toml", potability="1")
    with pytest.raises(NotApproved, match="no approved version"):
        approvals.approved("wqi", path)
    path.write_text('[wqi]\nversion = "1"\n')
    with pytest.raises(NotApproved, match="sha256, approved_by, reason"):
        approvals.approved("wqi", path)
    with pytest.raises(NotApproved, match="does not exist"):
        approvals.approved("wqi", tmp_path / "missing.toml")
    path.write_text("[wqi\n")
    with pytest.raises(NotApproved, match="unreadable"):
        approvals.approved("wqi", path)


def test_shipped_approval_file_parses() -> None:
    approvals.load()  # entries stay commented out until the lead has trained


# -- gates ----------------------------------------------------------------------------------


def test_thresholds() -> None:
    gates.check_thresholds(WQI_GATES, info("1", rmse=5, r2=0.5))
    with pytest.raises(GateFailed, match="rmse=20"):
        gates.check_thresholds(WQI_GATES, info("1", rmse=20, r2=0.5))
    with pytest.raises(GateFailed, match="r2=None"):
        gates.check_thresholds(WQI_GATES, info("1", rmse=5))


def test_champion_gate() -> None:
    champ = info("1", rmse=5.0)
    assert gates.check_against_champion(WQI_GATES, info("2", rmse=5.0), champ, False, None) is None
    assert gates.check_against_champion(WQI_GATES, info("2", rmse=4), None, False, None) is None
    with pytest.raises(WorseThanChampion, match="rmse=6 is higher than champion version 1"):
        gates.check_against_champion(WQI_GATES, info("2", rmse=6), champ, False, None)
    with pytest.raises(UsageError, match="--reason"):
        gates.check_against_champion(WQI_GATES, info("2", rmse=6), champ, True, " ")
    note = gates.check_against_champion(WQI_GATES, info("2", rmse=6), champ, True, "hotfix")
    assert note and "forced" in note


# -- manifest -------------------------------------------------------------------------------


def test_manifest_round_trip_keeps_contract_fields() -> None:
    first = release("1", "v1", approved_by="jane")
    second = Release(**{**first.__dict__, "version_id": "v2", "previous": first.as_previous()})
    raw = json.loads(manifest.dumps(second))
    assert list(raw)[:8] == list(manifest.CORE_FIELDS)
    assert raw["previous"]["version_id"] == "v1" and "previous" not in raw["previous"]
    assert raw["approved_by"] == "jane" and raw["action"] == "promote"
    assert manifest.loads(manifest.dumps(second)) == second
    assert json.loads(manifest.one_line(second)) == raw


def test_manifest_missing_field_refused() -> None:
    with pytest.raises(errors.StorageError, match="lacks field 'bucket'"):
        manifest.loads(b'{"name": "wqi", "mlflow_version": "1"}')
    with pytest.raises(errors.StorageError, match="not a JSON object"):
        manifest.loads(b"[]")


def test_manifest_strict_refusals_keep_the_storage_exit_code() -> None:
    """The registry reads release.json through the same strict parser infra deploys with."""
    raw = release("1", "v1").to_dict()
    for bad in ({"sha256": "ABC"}, {"key": "k"}, {"version_id": "null"}):
        with pytest.raises(manifest.ManifestError) as caught:
            manifest.loads(json.dumps(raw | bad).encode())
        assert isinstance(caught.value, errors.StorageError) and caught.value.exit_code == 16


def test_manifest_context_form_needs_complete_false() -> None:
    """`to_context` (the CDK `-c release=` form) lacks git_sha and released_at; it carries the
    signature's pins when the release was signed."""
    unsigned = release("1", "v1")
    signature_pins = {"signature_key", "signature_version_id"}
    assert set(unsigned.to_context()) == set(manifest.CONTEXT_FIELDS) - signature_pins
    first = release(
        "1", "v1", signature_key=manifest.signature_key("wqi"), signature_version_id="s1"
    )
    context = first.to_context()
    assert set(context) == set(manifest.CONTEXT_FIELDS)
    with pytest.raises(errors.StorageError, match="lacks field 'git_sha'"):
        manifest.parse_release(context)
    parsed = manifest.parse_release(context, complete=False)
    assert parsed.same_target(first) and parsed.environment() == first.environment()
    assert (parsed.git_sha, parsed.released_at) == ("", "")


def test_utc_timestamp_ends_with_z() -> None:
    assert manifest.utc_now().endswith("Z") and "T" in manifest.utc_now()


# -- rollback target ------------------------------------------------------------------------


def history(*releases: Release) -> list[ManifestVersion]:
    return [ManifestVersion(f"m{i}", i == 0, "t", r) for i, r in enumerate(releases)]


def test_rollback_steps_walk_back_through_promotions() -> None:
    p1, p2, p3 = release("1", "v1"), release("2", "v2"), release("3", "v3")
    assert pick_target(p3, history(p3, p2, p1), None, 1) == p2
    assert pick_target(p3, history(p3, p2, p1), None, 2) == p1
    # After rolling back to 2, one more step goes to 1 (not forward to 3).
    back = release("2", "v2", action="rollback")
    assert pick_target(back, history(back, p3, p2, p1), None, 1) == p1
    with pytest.raises(NoRelease, match="1 earlier"):
        pick_target(back, history(back, p3, p2, p1), None, 2)
    assert pick_target(p3, history(p3, p2, p1), "v1", 1) == p1
    # Two MLflow versions holding identical bytes (one S3 version): still distinct releases.
    same = release("4", "v3")
    same = dataclasses.replace(same, sha256=p3.sha256)
    assert pick_target(same, history(same, p3, p2, p1), None, 1) == p3
    with pytest.raises(NoRelease, match="nope"):
        pick_target(p3, history(p3, p2, p1), "nope", 1)


def test_rollback_to_a_shared_version_id_needs_the_mlflow_version() -> None:
    """Reused bytes: MLflow versions 1 and 2 are both releases of S3 VersionId v1."""
    p1, p3 = release("1", "v1"), release("3", "v3")
    p2 = dataclasses.replace(release("2", "v1"), sha256=p1.sha256)
    hist = history(p3, p2, p1)
    with pytest.raises(UsageError, match="MLflow versions 1, 2; say which with --to-version"):
        pick_target(p3, hist, "v1", 1)
    assert pick_target(p3, hist, None, 1, to_version="1") == p1
    assert pick_target(p3, hist, None, 1, to_version="2") == p2
    with pytest.raises(NoRelease, match="MLflow version 9"):
        pick_target(p3, hist, None, 1, to_version="9")
    assert pick_target(p3, hist, "v3", 1) == p3  # unambiguous VersionIds still work


def test_rollback_target_options_are_mutually_exclusive(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for argv in (["--to", "v1", "--to-version", "1"], ["--to-version", "1", "--steps", "2"]):
        with pytest.raises(SystemExit) as exc:
            cli.main(["rollback", "wqi", *argv])
        assert exc.value.code == UsageError.exit_code
        assert "not allowed with argument" in capsys.readouterr().err


# -- exit codes and the CLI -----------------------------------------------------------------


def test_exit_codes_are_distinct() -> None:
    codes = [e.exit_code for e in errors.ALL]
    assert len(codes) == len(set(codes)) and 0 not in codes and 1 not in codes


def test_help_lists_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert all(e.__name__ in out for e in errors.ALL)


def test_cli_refusals_before_any_io(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MODEL_BUCKET", raising=False)
    approved = str(approve(tmp_path / "a.toml", wqi="1"))
    cases = [
        (["promote", "nosuchmodel"], errors.UnknownModel),
        (["promote", "wqi", "--approvals", str(tmp_path / "none.toml")], errors.NotApproved),
        (["promote", "wqi", "--approvals", approved], errors.BucketMissing),
        (["promote", "wqi", "--approvals", approved, "--force"], errors.UsageError),
        (["rollback", "wqi", "--steps", "0"], errors.UsageError),
        (["current", "wqi"], errors.BucketMissing),
    ]
    for argv, error in cases:
        assert cli.main(argv) == error.exit_code, argv
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.count("\n") == 1 and captured.err.startswith("registry: error:")


def test_only_missing_artifacts_count_as_not_found() -> None:
    from mlflow.exceptions import MlflowException

    from registry.tracking import is_not_found

    missing = MlflowException("No such artifact: 'model.joblib'", "RESOURCE_DOES_NOT_EXIST")
    assert is_not_found(missing) and is_not_found(FileNotFoundError("model.joblib"))
    assert not is_not_found(MlflowException("Connection refused", "INTERNAL_ERROR"))
    assert not is_not_found(ConnectionError("timed out"))


# -- the command deadline ---------------------------------------------------------------------


def test_the_deadline_interrupts_a_blocking_wait_once() -> None:
    with deadline.command(0.2):
        with pytest.raises(deadline.DeadlineExceeded) as caught:
            time.sleep(30)
        assert caught.value.seconds == 0.2
        time.sleep(0.3)  # spent: it fires once, not again while the command winds down


def test_the_reserve_is_lent_only_to_settle() -> None:
    with deadline.command(1.0, reserve_s=0.8):
        with pytest.raises(deadline.DeadlineExceeded):
            time.sleep(30)  # the work's share (0.2 s) is spent
        with deadline.settling():
            time.sleep(0.1)  # the reserve lets the settling run ...
            with pytest.raises(deadline.DeadlineExceeded):
                time.sleep(30)  # ... up to the command's very end


def test_a_bounded_attempt_ends_alone() -> None:
    with deadline.command(30):
        with pytest.raises(deadline.DeadlineExceeded) as caught, deadline.bounded(0.1) as mine:
            time.sleep(30)
        assert caught.value.limit is mine
        time.sleep(0.2)  # the command's own limit is untouched


def test_off_the_main_thread_there_is_no_alarm() -> None:
    import threading

    ran: list[bool] = []

    def work() -> None:
        with deadline.command(0.01), deadline.settling(), deadline.bounded(0.01) as mine:
            time.sleep(0.1)
            ran.append(mine is None and not deadline.active())

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=30)
    assert ran == [True]


def test_the_readme_lists_every_exit_code() -> None:
    readme = (Path(__file__).resolve().parents[2] / "registry" / "README.md").read_text()
    table = readme.split("## Exit codes")[1].split("\n## ")[0]
    for error in errors.ALL:
        assert f"| {error.exit_code} | `{error.__name__}` |" in table, error.__name__
