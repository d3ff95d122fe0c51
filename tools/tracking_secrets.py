"""The team server's secrets (tools/tracking_server.py): generated at first start, kept in one
file of mode 0600 in its data folder, never printed. A user's login reaches a shell through a
file of its own (``env/<user>.env``, 0600) that ``up`` names; ``rotate`` changes a password."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from tools.team_auth import CI, SCIENTIST

ADMIN = "admin"
FILE = "credentials"


def new_password() -> str:
    return secrets.token_urlsafe(24)


@dataclass(frozen=True)
class Credentials:
    """Generated at first start; the PostgreSQL password never leaves this machine."""

    port: int  # MLflow's port, kept so the exported URI stays valid across restarts
    postgres: str
    flask_secret: str
    admin: str
    ci: str
    scientist: str
    # The server's folder in the artifact bucket: what `down --wipe` deletes ("" in a data
    # folder made before it had one: the whole bucket was the server's).
    artifact_prefix: str = ""

    @classmethod
    def load_or_create(cls, folder: Path, port: int) -> Credentials:
        path = folder / FILE
        if path.exists():
            return cls(**json.loads(path.read_text()))
        made = cls(
            port,
            new_password(),
            new_password(),
            new_password(),
            new_password(),
            new_password(),
            artifact_prefix=f"server-{secrets.token_hex(6)}",
        )
        made.save(folder)
        return made

    def save(self, folder: Path) -> None:
        """Written whole (a temp file, then a rename), readable by its owner only."""
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{FILE}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(asdict(self), fh, indent=1)
        os.replace(tmp, folder / FILE)

    def password(self, user: str) -> str:
        return {ADMIN: self.admin, CI: self.ci, SCIENTIST: self.scientist}[user]

    def with_password(self, user: str, password: str) -> Credentials:
        if user == ADMIN:
            return replace(self, admin=password)
        return replace(self, ci=password) if user == CI else replace(self, scientist=password)


def write_env_file(folder: Path, user: str, env: dict[str, str]) -> Path:
    """``env/<user>.env`` (0600): the client's variables as shell assignments, for
    ``set -a; . FILE; set +a``: the password reaches the shell without being printed."""
    path = folder / "env" / f"{user}.env"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("".join(f"{k}='{v}'\n" for k, v in env.items()))
    os.replace(tmp, path)
    return path
