"""Honest outcomes when S3 misbehaves mid-release, through a fault proxy between the CLI and the
loopback S3 (real HTTP both ways): the reply of the manifest write lost, S3 gone right after a
release, both. The command reports what is true: released, or "outcome unknown" (exit 18)
naming the command that settles it; never an untranslated botocore exception (exit 1)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from registry import cli, errors, publish
from tests.registry.fault_proxy import FaultProxy, Rule
from tests.registry.registry_helpers import Versions, approve

pytestmark = pytest.mark.integration

MANIFEST = "/models/wqi/release.json"


def is_manifest(path: str) -> bool:
    return path.split("?")[0].endswith(MANIFEST)  # path-style: /<bucket>/models/...


@pytest.fixture
def two_versions(
    versions: Versions, s3_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Any]]:
    """v1 is live; v2 is approved and about to be promoted."""
    monkeypatch.setattr(publish, "SETTLE_PAUSE_S", 0.01)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")  # botocore's own retries: keep the test short
    v1, _ = versions.add(metrics={"rmse": 6.0, "r2": 0.7})
    v2, _ = versions.add(metrics={"rmse": 5.0, "r2": 0.8})
    assert cli.main(["promote", "wqi", "--approvals", str(approve(tmp_path / "1", wqi=v1))]) == 0
    yield {"v1": v1, "v2": v2, "approvals": str(approve(tmp_path / "2", wqi=v2))}


def through_proxy(
    rule: Rule, endpoint: str, monkeypatch: pytest.MonkeyPatch, *argv: str
) -> tuple[int, str, str, FaultProxy]:
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with FaultProxy(endpoint, rule) as proxy, monkeypatch.context() as m:
        m.setenv("AWS_ENDPOINT_URL_S3", proxy.endpoint)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(list(argv))
    return code, out.getvalue(), err.getvalue(), proxy


def live(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert cli.main(["current", "wqi"]) == 0
    return dict(json.loads(capsys.readouterr().out))


def test_write_applied_reply_lost_reports_released(
    two_versions: dict[str, Any],
    versions: Versions,
    s3_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Before: exit 16 "unreachable while trying to write release.json" while v2 was live and
    `champion` still named v1."""

    def lose_manifest_replies(method: str, path: str) -> str:
        return "apply-drop" if method == "PUT" and is_manifest(path) else "pass"

    code, out, err, proxy = through_proxy(
        lose_manifest_replies, s3_env["endpoint"], monkeypatch,
        "promote", "wqi", "--approvals", two_versions["approvals"],
    )  # fmt: skip

    assert code == 0, err
    assert "S3 shows it applied" in err
    assert any(a == "apply-drop" for _, _, a in proxy.seen)  # the fault really happened
    released = json.loads(out)
    assert released["mlflow_version"] == two_versions["v2"]
    assert live(capsys) == released
    assert versions.champion() == two_versions["v2"]
    assert versions.tags("wqi", two_versions["v2"])["s3_version_id"] == released["version_id"]


def test_s3_gone_right_after_a_complete_release_is_not_a_crash(
    two_versions: dict[str, Any],
    versions: Versions,
    s3_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Before: exit 1 with an untranslated botocore exception. S3 vanishes once the manifest
    was written and read back: the release is live, and the command says so (exit 0)."""
    seen_put = []

    def vanish_after_read_back(method: str, path: str) -> str:
        if method == "PUT" and is_manifest(path):
            seen_put.append(path)
        if seen_put and method == "GET" and is_manifest(path) and "versionId=" in path:
            return "apply-vanish"
        return "pass"

    code, out, err, _ = through_proxy(
        vanish_after_read_back, s3_env["endpoint"], monkeypatch,
        "promote", "wqi", "--approvals", two_versions["approvals"],
    )  # fmt: skip

    assert code == 0, err
    assert "Traceback" not in err and "unexpected" not in err
    assert "catches it up" in err  # MLflow's follow-up check could not reach S3: it says so
    assert live(capsys) == json.loads(out)


def test_reply_lost_and_s3_gone_is_outcome_unknown_then_settled(
    two_versions: dict[str, Any],
    versions: Versions,
    s3_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    def drop_and_vanish(method: str, path: str) -> str:
        return "apply-drop-vanish" if method == "PUT" and is_manifest(path) else "pass"

    code, out, err, _ = through_proxy(
        drop_and_vanish, s3_env["endpoint"], monkeypatch,
        "promote", "wqi", "--approvals", two_versions["approvals"],
    )  # fmt: skip

    assert code == errors.OutcomeUnknown.exit_code == 18, err
    assert out == "" and err.count("registry: error:") == 1
    assert "python -m registry current wqi" in err.splitlines()[-1]
    # S3 is back: `current` settles it (the write had been applied) and a re-run finishes
    # MLflow's side, saying so.
    assert live(capsys)["mlflow_version"] == two_versions["v2"]
    assert versions.champion() == two_versions["v1"]
    assert cli.main(["promote", "wqi", "--approvals", two_versions["approvals"]]) == 0
    assert "reconciled MLflow" in capsys.readouterr().err
    assert versions.champion() == two_versions["v2"]


def test_a_write_that_never_left_is_not_sent_not_unknown(
    two_versions: dict[str, Any],
    versions: Versions,
    s3_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Before: exit 18, the same code as a write whose reply was lost, though the request had
    never left (S3 refused every connection from the upload's read-back on)."""
    bundle_read_back = False

    def refuse_before_the_manifest_write(method: str, path: str) -> str:
        nonlocal bundle_read_back
        if method == "GET" and "/models/wqi/model.joblib?" in path and not bundle_read_back:
            bundle_read_back = True  # promote reads its upload back, then writes release.json
            return "pass-then-refuse"
        return "pass"

    code, out, err, proxy = through_proxy(
        refuse_before_the_manifest_write, s3_env["endpoint"], monkeypatch,
        "promote", "wqi", "--approvals", two_versions["approvals"],
    )  # fmt: skip

    assert code == 19 == errors.NotSent.exit_code, err
    assert out == "" and "never left" in err and "nothing was released" in err
    assert not any(method == "PUT" and is_manifest(path) for method, path, _ in proxy.seen)
    assert live(capsys)["mlflow_version"] == two_versions["v1"]  # as the code said


def at_the_close(action: str) -> Rule:
    """``action`` for the rollback's second intent.json PUT (it closes the intent); the first,
    which opens it, passes."""
    puts = 0

    def rule(method: str, path: str) -> str:
        nonlocal puts
        if method == "PUT" and path.split("?")[0].endswith("/models/wqi/intent.json"):
            puts += 1
            return action if puts > 1 else "pass"
        return "pass"

    return rule


@pytest.fixture
def rolled_forward(two_versions: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> str:
    """v2 promoted on top of v1: a plain rollback goes to v1."""
    assert cli.main(["promote", "wqi", "--approvals", two_versions["approvals"]]) == 0
    capsys.readouterr()
    return str(two_versions["v1"])


def test_a_rollback_whose_intent_close_lost_its_reply_still_reports_success(
    rolled_forward: str,
    versions: Versions,
    s3_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Before: the reply to the final write (closing the intent) was lost: `rollback` printed
    the release, exited 16, and production had moved; the retry exited 0 "already done"."""
    code, out, err, _ = through_proxy(at_the_close("apply-drop"), s3_env["endpoint"],
                                      monkeypatch, "rollback", "wqi")  # fmt: skip

    assert code == 0, err
    assert json.loads(out)["mlflow_version"] == rolled_forward == versions.champion()
    assert "error" not in err and "still open" not in err  # read back: it was closed
    assert live(capsys)["mlflow_version"] == rolled_forward


def test_a_rollback_whose_intent_cannot_be_closed_says_what_the_next_one_does(
    rolled_forward: str,
    s3_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """S3 gone right after the release: released (exit 0), the open intent named."""
    code, out, err, _ = through_proxy(at_the_close("apply-drop-vanish"), s3_env["endpoint"],
                                      monkeypatch, "rollback", "wqi")  # fmt: skip

    assert code == 0, err
    assert json.loads(out)["mlflow_version"] == rolled_forward
    assert "intent is still open" in err and "reports this release as done" in err
    assert live(capsys)["mlflow_version"] == rolled_forward


@pytest.mark.parametrize(("action", "released"), [("hang", False), ("apply-hang", True)])
def test_s3_hanging_on_the_manifest_write_ends_by_the_deadline_with_the_truth(
    action: str,
    released: bool,
    two_versions: dict[str, Any],
    versions: Versions,
    s3_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Before: with S3 hanging on the release.json write, `promote` took 621 s and exited 18.
    Now the command's deadline ends the wait, and the reserve it keeps re-reads release.json:
    not applied (16, nothing released) or applied (0, released)."""
    monkeypatch.setenv("REGISTRY_DEADLINE_S", "30")

    def hang_the_manifest_write(method: str, path: str) -> str:
        return action if method == "PUT" and is_manifest(path) else "pass"

    code, out, err, _ = through_proxy(
        hang_the_manifest_write, s3_env["endpoint"], monkeypatch,
        "promote", "wqi", "--approvals", two_versions["approvals"],
    )  # fmt: skip

    now = live(capsys)["mlflow_version"]
    if released:
        assert code == 0 and json.loads(out)["mlflow_version"] == now == two_versions["v2"], err
        assert "S3 shows it applied" in err
    else:
        assert code == errors.StorageError.exit_code, err
        assert out == "" and now == two_versions["v1"]
        assert "within the 30 s deadline" in err and "not applied: nothing released" in err


def test_the_deadline_names_what_the_command_waited_for(
    two_versions: dict[str, Any], s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """release.json answered one byte every 0.2 s (about 4 min in all, each wait far under
    botocore's 30 s read timeout): `current` ends at its deadline and says where it waited."""
    monkeypatch.setenv("REGISTRY_DEADLINE_S", "5")

    def trickle_the_manifest(method: str, path: str) -> str:
        return "trickle" if method == "GET" and is_manifest(path) else "pass"

    code, out, err, _ = through_proxy(trickle_the_manifest, s3_env["endpoint"], monkeypatch,
                                      "current", "wqi")  # fmt: skip

    assert code == errors.StorageError.exit_code and out == "", err
    assert "the 5 s deadline (REGISTRY_DEADLINE_S) passed while trying to read s3://" in err
    assert "/models/wqi/release.json" in err.splitlines()[-1]
