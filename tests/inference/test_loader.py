"""Loading order and refusals: nothing is unpickled unless its SHA-256 is the pinned one."""

from __future__ import annotations

import hashlib
import os
import socket
import types
from pathlib import Path
from typing import Any

import pytest
import synthetic
from serving_helpers import KEY, local_config, s3_config, upload

from inference import bundle as bundle_mod
from inference import config as config_mod
from inference import handler, loader
from inference.bundle import DigestMismatch, sha256_hex


@pytest.fixture
def unpickles(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts calls to bundle.loads made by the loader."""
    calls: list[int] = []
    original = loader.loads

    def spy(data: bytes) -> dict[str, Any]:
        calls.append(len(data))
        return original(data)

    monkeypatch.setattr(loader, "loads", spy)
    return calls


@pytest.fixture
def no_s3(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []

    def refuse(config: config_mod.Config, client: Any = None) -> bytes:
        calls.append(config.uri)
        raise AssertionError("S3 must not be called")

    monkeypatch.setattr(loader, "fetch_s3", refuse)
    return calls


@pytest.fixture
def digest_checks(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The bytes every SHA-256 computed by the bundle contract was computed over."""
    checked: list[bytes] = []

    def sha256(data: bytes) -> Any:
        checked.append(bytes(data))
        return hashlib.sha256(data)

    monkeypatch.setattr(bundle_mod, "hashlib", types.SimpleNamespace(sha256=sha256))
    return checked


def test_memory_cache_is_first(wqi_bytes: bytes, cache_dir: Path, unpickles: list[int]) -> None:
    config = local_config(wqi_bytes, cache_dir)
    first = loader.load(config)
    config.cache_path.unlink()  # the second load must not even look at /tmp
    second = loader.load(config)
    assert second.predictor is first.predictor and second.source == "memory"
    assert first.source == "tmp"  # the first load's Model is not rewritten by the second
    assert len(unpickles) == 1


def test_byte_identical_releases_keep_their_own_identity(
    wqi_bytes: bytes, cache_dir: Path, unpickles: list[int]
) -> None:
    # Two S3 versions holding the same bytes (a re-promotion): same SHA-256, different pins.
    first = loader.load(local_config(wqi_bytes, cache_dir, model_version="3"))
    second = loader.load(
        local_config(wqi_bytes, cache_dir, version_id="v-second", model_version="4")
    )
    assert second.identity["s3VersionId"] == "v-second" and second.identity["version"] == "4"
    assert first.identity["s3VersionId"] == "v-local" and first.identity["version"] == "3"
    assert first.source == "tmp" and second.source == "memory"
    assert len(unpickles) == 1  # the verified content is shared, the identity is not


def test_tmp_path_checks_the_digest_exactly_once(
    wqi_bytes: bytes, cache_dir: Path, unpickles: list[int], digest_checks: list[bytes]
) -> None:
    config = local_config(wqi_bytes, cache_dir)
    digest_checks.clear()  # only the loader's own checks count
    loader.load(config)
    assert digest_checks == [wqi_bytes] and unpickles == [len(wqi_bytes)]


def test_tmp_hit_needs_no_s3(
    wqi_bytes: bytes, cache_dir: Path, no_s3: list[str], unpickles: list[int]
) -> None:
    model = loader.load(local_config(wqi_bytes, cache_dir))
    assert model.source == "tmp" and model.name == "wqi"
    assert no_s3 == [] and len(unpickles) == 1


@pytest.mark.integration
def test_s3_get_object_with_the_pinned_version(
    s3_env: dict[str, str],
    wqi_bytes: bytes,
    cache_dir: Path,
    unpickles: list[int],
    digest_checks: list[bytes],
) -> None:
    version = upload(s3_env, wqi_bytes)
    upload(s3_env, b"a newer object at the same key")  # the pin, not the key, decides
    config = s3_config(s3_env, version, sha256_hex(wqi_bytes), cache_dir)
    digest_checks.clear()  # only the loader's own checks count
    model = loader.load(config)
    assert model.source == "s3" and model.version_id == version
    assert digest_checks == [wqi_bytes]  # one check of the bytes unpickled, not two
    assert config.cache_path.read_bytes() == wqi_bytes  # cached for the next cold start
    assert [p.name for p in cache_dir.iterdir()] == [config.cache_path.name]  # no .part left
    loader.clear_memory()
    assert loader.load(config).source == "tmp"
    assert len(unpickles) == 2


@pytest.mark.integration
def test_corrupt_tmp_file_is_refetched_never_loaded(
    s3_env: dict[str, str],
    wqi_bytes: bytes,
    cache_dir: Path,
    unpickles: list[int],
    digest_checks: list[bytes],
) -> None:
    version = upload(s3_env, wqi_bytes)
    config = s3_config(s3_env, version, sha256_hex(wqi_bytes), cache_dir)
    corrupt = wqi_bytes[:-10] + b"0123456789"  # stale / corrupt
    config.cache_path.write_bytes(corrupt)
    digest_checks.clear()  # only the loader's own checks count
    model = loader.load(config)
    assert model.source == "s3"
    assert digest_checks == [corrupt, wqi_bytes]  # each candidate checked once
    assert config.cache_path.read_bytes() == wqi_bytes
    assert unpickles == [len(wqi_bytes)]  # only the verified bytes were read as a bundle


@pytest.mark.integration
def test_tampered_object_is_refused_before_unpickling(
    s3_env: dict[str, str], wqi_bytes: bytes, cache_dir: Path, unpickles: list[int]
) -> None:
    tampered = synthetic.dumps(synthetic.wqi_bundle(name="evil"))
    version = upload(s3_env, tampered)
    config = s3_config(s3_env, version, sha256_hex(wqi_bytes), cache_dir)
    with pytest.raises(DigestMismatch, match="SHA-256 mismatch"):
        loader.load(config)
    assert unpickles == []
    assert not config.cache_path.exists()  # unverified bytes never reach the cache


@pytest.mark.integration
def test_wrong_version_id_is_refused(
    s3_env: dict[str, str], wqi_bytes: bytes, cache_dir: Path, unpickles: list[int]
) -> None:
    good = upload(s3_env, wqi_bytes)
    other = upload(s3_env, synthetic.dumps(synthetic.potability_bundle()))
    assert good != other
    config = s3_config(s3_env, other, sha256_hex(wqi_bytes), cache_dir)
    with pytest.raises(DigestMismatch):
        loader.load(config)
    assert unpickles == []


@pytest.mark.integration
def test_missing_version_is_refused(
    s3_env: dict[str, str], wqi_bytes: bytes, cache_dir: Path, unpickles: list[int]
) -> None:
    upload(s3_env, wqi_bytes)
    config = s3_config(
        s3_env, "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY", sha256_hex(wqi_bytes), cache_dir
    )
    with pytest.raises(loader.ModelNotFound, match="does not exist"):
        loader.load(config)
    missing_key = config_mod.Config(**{**config.__dict__, "key": "models/none/model.joblib"})
    with pytest.raises(loader.ModelNotFound):
        loader.load(missing_key)
    assert unpickles == []


def test_missing_variable_is_a_typed_error(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"MODEL_BUCKET": "b", "MODEL_KEY": KEY, "MODEL_VERSION_ID": "v"}
    with pytest.raises(config_mod.ConfigError, match="MODEL_SHA256"):
        config_mod.from_env(env)
    with pytest.raises(config_mod.ConfigError, match="64 hexadecimal"):
        config_mod.from_env({**env, "MODEL_SHA256": "abc"})
    with pytest.raises(config_mod.ConfigError, match="MAX_BATCH"):
        config_mod.from_env({**env, "MODEL_SHA256": "a" * 64, "MAX_BATCH": "many"})
    config = config_mod.from_env({**env, "MODEL_SHA256": "A" * 64, "MODEL_CACHE_DIR": "/x"})
    assert config.sha256 == "a" * 64 and config.cache_path == Path("/x") / f"{'a' * 64}.joblib"


def test_missing_variable_at_request_time_fails_the_invocation_and_logs_why(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("MODEL_SHA256", raising=False)
    with pytest.raises(handler.InferenceError, match=r"^INFERENCE_ERROR requestId=local-"):
        handler.lambda_handler({"readings": synthetic.GOOD_READING}, None)
    assert "missing environment variable" in caplog.text


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once the socket closes


@pytest.mark.integration
def test_unreachable_s3_after_bounded_retry(
    wqi_bytes: bytes, cache_dir: Path, unpickles: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    config = config_mod.Config(
        bucket="b", key=KEY, version_id="v", sha256=sha256_hex(wqi_bytes),
        endpoint_url=f"http://127.0.0.1:{_closed_port()}", cache_dir=cache_dir,
    )  # fmt: skip
    client = loader.s3_client(config)
    attempts: list[str] = []
    client.meta.events.register("before-send.s3.GetObject", lambda **kw: attempts.append("try"))
    with pytest.raises(loader.S3Unreachable, match="after 3 attempts"):
        loader.load(config, client)
    assert len(attempts) == loader.S3_ATTEMPTS
    assert unpickles == []


def test_init_error_names_the_cause(wqi_bytes: bytes, cache_dir: Path) -> None:
    config = local_config(wqi_bytes, cache_dir)
    bad = config_mod.Config(**{**config.__dict__, "sha256": "f" * 64})
    (cache_dir / f"{'f' * 64}.joblib").write_bytes(wqi_bytes)  # a /tmp file under a false name
    with pytest.raises(handler.InitError, match="S3Unreachable"):
        handler.init(bad)
    assert not (cache_dir / f"{'f' * 64}.joblib").exists()


def test_cache_write_is_atomic(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "x.joblib"
    loader._write_atomically(target, b"abc")
    assert target.read_bytes() == b"abc"
    assert os.listdir(target.parent) == ["x.joblib"]


@pytest.mark.integration
def test_boto3_path_for_other_credential_sources(
    s3_env: dict[str, str], wqi_bytes: bytes, cache_dir: Path, unpickles: list[int]
) -> None:
    # Without credentials in the environment the loader uses boto3 and its credential chain;
    # a client passed in takes the same path.
    version = upload(s3_env, wqi_bytes)
    config = s3_config(s3_env, version, sha256_hex(wqi_bytes), cache_dir)
    model = loader.load(config, loader.s3_client(config))
    assert model.source == "s3" and len(unpickles) == 1
    loader.clear_memory()
    config.cache_path.unlink()
    with pytest.raises(loader.ModelNotFound):
        wrong = config_mod.Config(**{**config.__dict__, "version_id": "nope"})
        loader.load(wrong, loader.s3_client(wrong))
