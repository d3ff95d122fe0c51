"""tools/postgres.py: a postmaster left behind by a killed `make tracking-up` (started, but
never recorded) must not block the next start of the same data directory."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from pathlib import Path

import pytest

from tools import local_s3, postgres
from tools.processes import alive

pytestmark = pytest.mark.integration


def test_a_start_stops_the_unrecorded_postmaster_of_its_directory() -> None:
    # Traversable (not pytest's 0700 tmp_path): under root the server runs as `pgserver`.
    tmp_path = Path(tempfile.mkdtemp(prefix="postgres-orphan-"))
    tmp_path.chmod(0o755)
    data, password = tmp_path / "postgres", secrets.token_urlsafe(16)
    orphan = postgres.start(data, local_s3._free_port(), password, tmp_path / "pg.log")
    # The caller "was killed": nothing remembers `orphan`. The next start must still work.
    again = postgres.start(data, local_s3._free_port(), password, tmp_path / "pg.log")
    try:
        assert not alive(orphan.pid)
        assert alive(again.pid) and again.pid != orphan.pid
    finally:
        postgres.stop(again)
    assert not alive(again.pid)
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_a_private_folder_on_the_way_is_named() -> None:
    """As root, PostgreSQL runs as `pgserver`, which cannot enter a 0700 folder (a checkout in
    /root): tools/postgres.py names that folder instead of initdb's bare failure."""
    root = Path(tempfile.mkdtemp(prefix="postgres-private-"))  # /tmp: traversable
    root.chmod(0o755)
    private = root / "home"
    (private / "checkout").mkdir(parents=True)
    try:
        private.chmod(0o700)
        assert postgres.unreachable(private / "checkout" / "data") == private
        private.chmod(0o755)
        assert postgres.unreachable(private / "checkout" / "data") is None
    finally:
        shutil.rmtree(root, ignore_errors=True)
