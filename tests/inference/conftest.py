"""Fixtures for the serving tests: synthetic bundles, a per-test /tmp cache, S3 uploads."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The helpers beside this file import by bare name under either pytest import mode.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import synthetic
from serving_helpers import local_config

from inference import handler


@pytest.fixture(autouse=True)
def _fresh_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # `make test` exports MODEL_BUCKET for the whole run; these tests configure explicitly.
    for name in ("MODEL_KEY", "MODEL_VERSION_ID", "MODEL_SHA256", "MODEL_VERSION", "MAX_BATCH"):
        monkeypatch.delenv(name, raising=False)
    handler.reset()
    yield
    handler.reset()


@pytest.fixture
def wqi_bytes() -> bytes:
    return synthetic.dumps(synthetic.wqi_bundle())


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    path = tmp_path / "cache"
    path.mkdir()
    return path


@pytest.fixture
def served(wqi_bytes: bytes, cache_dir: Path) -> handler.Service:
    """The handler with the synthetic wqi bundle loaded."""
    return handler.init(local_config(wqi_bytes, cache_dir, model_version="7"))
