"""Loading order and refusals: nothing is unpickled unless its SHA-256 is the pinned one."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import types
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import synthetic
from hung_s3 import HungEndpoint, TricklingEndpoint
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


@pytest.mark.integration
def test_byte_identical_releases_keep_their_own_identity(
    s3_env: dict[str, str], wqi_bytes: bytes, cache_dir: Path, unpickles: list[int]
) -> None:
    # Two S3 versions holding the same bytes (a re-promotion): same SHA-256, different pins.
    sha = sha256_hex(wqi_bytes)
    first_version, second_version = upload(s3_env, wqi_bytes), upload(s3_env, wqi_bytes)
    first = loader.load(
        replace(s3_config(s3_env, first_version, sha, cache_dir), model_version="3")
    )
    second = loader.load(
        replace(s3_config(s3_env, second_version, sha, cache_dir), model_version="4")
    )
    assert second.identity["s3VersionId"] == second_version and second.identity["version"] == "4"
    assert first.identity["s3VersionId"] == first_version and first.identity["version"] == "3"
    assert first.source == "s3" and second.source == "s3"  # the second pin verified by a GET
    assert len(unpickles) == 1  # the verified content is shared, the identity is not
    again = loader.load(s3_config(s3_env, first_version, sha, cache_dir))
    assert again.source == "memory" and again.version_id == first_version


@pytest.mark.integration
def test_memory_never_vouches_for_an_unverified_version_id(
    s3_env: dict[str, str], wqi_bytes: bytes, cache_dir: Path
) -> None:
    sha = sha256_hex(wqi_bytes)
    loader.load(s3_config(s3_env, upload(s3_env, wqi_bytes), sha, cache_dir))
    made_up = s3_config(s3_env, "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY", sha, cache_dir)
    with pytest.raises(loader.ModelNotFound, match="does not exist"):
        loader.load(made_up)


@pytest.mark.integration
def test_warm_tmp_copy_never_vouches_for_an_unverified_version_id(
    s3_env: dict[str, str], wqi_bytes: bytes, cache_dir: Path
) -> None:
    # Issue 9 §2: a warm /tmp copy from VersionId A, pinned to B with the same SHA-256, once
    # answered with B in its identity though nothing had read B.
    sha = sha256_hex(wqi_bytes)
    version_a = upload(s3_env, wqi_bytes)
    assert loader.load(s3_config(s3_env, version_a, sha, cache_dir)).source == "s3"
    loader.clear_memory()  # a new process in the same warm environment: /tmp stays
    made_up = s3_config(s3_env, "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY", sha, cache_dir)
    with pytest.raises(loader.ModelNotFound, match="does not exist"):
        loader.load(made_up)
    version_b = upload(s3_env, wqi_bytes)  # a re-promotion: the same bytes, a new VersionId
    pinned_b = s3_config(s3_env, version_b, sha, cache_dir)
    model = loader.load(pinned_b)
    assert model.source == "s3" and model.identity["s3VersionId"] == version_b
    loader.clear_memory()
    assert loader.load(pinned_b).source == "tmp"  # B's bytes verified: its copy now serves
    loader.clear_memory()
    assert loader.load(s3_config(s3_env, version_a, sha, cache_dir)).source == "s3"


@pytest.mark.parametrize(
    "changes",
    [{"version_id": "v-other"}, {"bucket": "other-bucket"}, {"key": "models/other/model.joblib"}],
)
def test_tmp_copy_serves_only_the_pin_it_was_verified_for(
    wqi_bytes: bytes, cache_dir: Path, changes: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fetched: list[str] = []

    def fetch(config: config_mod.Config, client: Any = None) -> bytes:
        fetched.append(config.uri)
        raise loader.ModelNotFound(f"{config.uri} does not exist (NoSuchVersion)")

    monkeypatch.setattr(loader, "fetch_s3", fetch)
    config = local_config(wqi_bytes, cache_dir)  # cached as verified for bucket/key/v-local
    other = config_mod.Config(**{**config.__dict__, **changes})
    with pytest.raises(loader.ModelNotFound):
        loader.load(other)
    assert fetched == [other.uri]
    assert loader.load(config).source == "tmp"


def test_tmp_copy_without_its_record_is_not_trusted(
    wqi_bytes: bytes, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = local_config(wqi_bytes, cache_dir)
    loader.pin_path(config).unlink()  # e.g. a copy left by an older image
    fetched: list[str] = []
    monkeypatch.setattr(loader, "fetch_s3", lambda c, client=None: fetched.append(c.uri) or b"")
    with pytest.raises(DigestMismatch):
        loader.load(config)
    assert fetched == [config.uri]


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
    cached = sorted(p.name for p in cache_dir.iterdir())  # the copy, its pin, no .part left
    assert cached == [config.cache_path.name, loader.pin_path(config).name]
    assert json.loads(loader.pin_path(config).read_text())["version_id"] == version
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
    corrupt = wqi_bytes[:-10] + b"0123456789"  # stale / corrupt, though its pin matches
    loader.cache_verified(config, corrupt)
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


def endpoint(kind: str) -> HungEndpoint | TricklingEndpoint:
    if kind == "silent":
        return HungEndpoint()
    # A byte every 0.1 s, under each wait's 0.2 s share of the 0.6 s deadline: no socket
    # timeout fires, and the whole answer would take 10 s.
    return TricklingEndpoint(kind.split()[-1], interval=0.1, size=100)


@pytest.mark.parametrize("kind", ["silent", "trickling headers", "trickling body"])
@pytest.mark.parametrize("credentials", ["environment", "boto3 chain"])
def test_hung_s3_fails_by_the_load_deadline_naming_endpoint_and_attempts(
    credentials: str,
    kind: str,
    wqi_bytes: bytes,
    cache_dir: Path,
    tmp_path: Path,
    unpickles: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Issue 9 §3: a hung endpoint took 30.45 s (3 x 10 s reads), three times Lambda's init.
    # Issue 17: on the boto3 path (credentials from a profile), a trickling S3 kept init
    # running past 60 s; on both paths, trickled headers were not bounded as a whole.
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    if credentials == "environment":  # as in Lambda: the signed stdlib GET
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    else:  # a profile: boto3 and its credential chain
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            monkeypatch.delenv(name, raising=False)
        profile = tmp_path / "credentials"
        profile.write_text("[default]\naws_access_key_id = t\naws_secret_access_key = t\n")
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(profile))
    with endpoint(kind) as hung:
        config = config_mod.from_env({
            "MODEL_BUCKET": "b", "MODEL_KEY": KEY, "MODEL_VERSION_ID": "v",
            "MODEL_SHA256": sha256_hex(wqi_bytes), "MODEL_CACHE_DIR": str(cache_dir),
            "AWS_ENDPOINT_URL_S3": hung.url, "MODEL_LOAD_DEADLINE_S": "0.6",
        })  # fmt: skip
        with pytest.raises(handler.InitError) as caught:
            handler.init(config)
        made = hung.connections()
        if isinstance(hung, TricklingEndpoint):
            hung.stop()  # the loader gave up: no answer may have been read to its end
            assert hung.finished == 0
    assert isinstance(caught.value.__cause__, loader.S3Unreachable)
    message = str(caught.value)
    assert 1 <= made <= loader.S3_ATTEMPTS  # bounded by the deadline, not 3 x 10 s
    assert hung.url in message, message
    assert f"after {made} attempt" in message and "deadline 0.6 s" in message, message
    assert re.search(r"in \d+\.\d+ s", message), message  # the time spent
    assert unpickles == []


def test_no_credentials_anywhere_is_named_as_such(
    wqi_bytes: bytes, cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
        monkeypatch.setenv(name, str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    config = replace(local_config(wqi_bytes, cache_dir), version_id="v-elsewhere")
    with pytest.raises(loader.LoadError, match="no AWS credentials to read s3://unused/"):
        loader.fetch_s3(config)


def test_load_deadline_is_configurable_with_a_default_inside_lambda_init() -> None:
    env = {"MODEL_BUCKET": "b", "MODEL_KEY": KEY, "MODEL_VERSION_ID": "v", "MODEL_SHA256": "a" * 64}
    assert config_mod.from_env(env).load_deadline_s == config_mod.DEFAULT_LOAD_DEADLINE_S
    assert config_mod.DEFAULT_LOAD_DEADLINE_S <= 6.0  # Lambda's init phase is 10 s in all
    assert config_mod.from_env({**env, "MODEL_LOAD_DEADLINE_S": "2.5"}).load_deadline_s == 2.5
    for bad in ("0", "-1", "soon", "nan", "inf"):
        with pytest.raises(config_mod.ConfigError, match="MODEL_LOAD_DEADLINE_S"):
            config_mod.from_env({**env, "MODEL_LOAD_DEADLINE_S": bad})


def test_init_error_names_the_cause(
    wqi_bytes: bytes, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")  # as in Lambda; nothing listens on :9
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    config = local_config(wqi_bytes, cache_dir)
    bad = config_mod.Config(**{**config.__dict__, "sha256": "f" * 64})
    loader.cache_verified(bad, wqi_bytes)  # a /tmp file (and pin) under a false name
    with pytest.raises(handler.InitError, match="S3Unreachable"):
        handler.init(bad)
    assert not bad.cache_path.exists() and not loader.pin_path(bad).exists()


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
