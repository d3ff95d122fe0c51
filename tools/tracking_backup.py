"""Backups of the team server (tools/tracking_server.py): both PostgreSQL databases (``pg_dump``
from the pgserver wheel, custom format) and every artifact under the server's folder of the
bucket, with a manifest of their SHA-256; restored into a stopped server's data folder, after
which its users log in with that server's own credentials. Also what ``down --wipe`` deletes
of the artifacts: the server's folder, nothing else in the bucket.

    backup/                       (mode 0700)
      manifest.json               {"databases": [...], "artifacts": {key: sha256}}
      mlflow.dump, mlflow_auth.dump
      artifacts/<key>             relative to the server's folder
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from tools import postgres
from tools.tracking_secrets import Credentials

MANIFEST = "manifest.json"


def bucket_client(s3_env: dict[str, str]) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=s3_env["AWS_ENDPOINT_URL_S3"],
        aws_access_key_id=s3_env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=s3_env["AWS_SECRET_ACCESS_KEY"],
        region_name=s3_env.get("AWS_DEFAULT_REGION", "us-east-1"),
    )


def _prefix(creds: Credentials) -> str:
    return f"{creds.artifact_prefix}/" if creds.artifact_prefix else ""


def artifact_digests(s3: Any, bucket: str, creds: Credentials) -> dict[str, str]:
    """Every artifact of the server: its key below the server's folder, and its SHA-256."""
    prefix, out = _prefix(creds), {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            out[obj["Key"][len(prefix) :]] = hashlib.sha256(body).hexdigest()
    return out


def wipe_artifacts(s3: Any, bucket: str, creds: Credentials) -> int:
    """Delete every version of every object in the server's folder; how many."""
    deleted = 0
    pages = s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=_prefix(creds))
    for page in pages:
        found = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                 for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]  # fmt: skip
        for start in range(0, len(found), 1000):
            s3.delete_objects(Bucket=bucket, Delete={"Objects": found[start : start + 1000]})
        deleted += len(found)
    return deleted


def backup(
    server: postgres.Postgres, creds: Credentials, databases: tuple[str, ...], s3: Any,
    bucket: str, dest: Path,
) -> dict[str, Any]:  # fmt: skip
    """Dump ``databases`` and copy the artifacts into ``dest`` (new); the manifest.

    Raises:
        RuntimeError: ``dest`` exists, or pg_dump failed.
    """
    if dest.exists():
        raise RuntimeError(f"{dest} exists: a backup goes into a new folder")
    dest.mkdir(parents=True, mode=0o700)
    for database in databases:
        _pg("pg_dump", server, creds, "--format=custom", f"--file={dest / database}.dump",
            f"--dbname={database}")  # fmt: skip
    prefix, digests = _prefix(creds), {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            key = obj["Key"][len(prefix) :]
            body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            path = dest / "artifacts" / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
            digests[key] = hashlib.sha256(body).hexdigest()
    manifest = {"databases": list(databases), "artifacts": digests}
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def restore(
    server: postgres.Postgres, creds: Credentials, s3: Any, bucket: str, source: Path
) -> dict[str, Any]:
    """Replace the databases by the backup's and upload its artifacts into the server's
    folder, each checked against the manifest first. MLflow must not be running.

    Raises:
        RuntimeError: an artifact whose bytes differ from the manifest, or pg_restore failed.
    """
    import psycopg2

    manifest: dict[str, Any] = json.loads((source / MANIFEST).read_text())
    for key, digest in manifest["artifacts"].items():
        if hashlib.sha256((source / "artifacts" / key).read_bytes()).hexdigest() != digest:
            raise RuntimeError(f"{source}: artifact {key} does not match its manifest")
    conn = psycopg2.connect(server.uri(creds.postgres, "postgres"))
    try:
        conn.autocommit = True  # DROP/CREATE DATABASE cannot run inside a transaction
        with conn.cursor() as cur:
            for database in manifest["databases"]:
                cur.execute(f'DROP DATABASE IF EXISTS "{database}"')  # our names, not input
                cur.execute(f'CREATE DATABASE "{database}"')
    finally:
        conn.close()
    for database in manifest["databases"]:
        _pg("pg_restore", server, creds, "--no-owner", f"--dbname={database}",
            str(source / f"{database}.dump"))  # fmt: skip
    for key in manifest["artifacts"]:
        s3.upload_file(str(source / "artifacts" / key), bucket, _prefix(creds) + key)
    return manifest


def _pg(tool: str, server: postgres.Postgres, creds: Credentials, *args: str) -> None:
    """A PostgreSQL client tool against ``server``; the password in its environment only."""
    env = os.environ | {"PGPASSWORD": creds.postgres}
    done = subprocess.run(
        [postgres.bin_path(tool), f"--host={postgres.HOST}", f"--port={server.port}",
         f"--username={postgres.SUPERUSER}", *args],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{tool} failed: {done.stderr.strip()}")
