"""Reads a prediction log: the records serving writes, wherever they ended up.

A record is one JSON object with ``"kind": "prediction"`` (inference/README.md has its keys).
It is found in any of the shapes the log takes on its way out of Lambda:

- a JSONL file: one record per line;
- a Powertools log line: the record's keys at the top level of a larger object (or under its
  ``message``); other log lines (``model loaded``, errors) are counted and skipped;
- a CloudWatch Logs export to S3: ``<timestamp> <json>`` per line, gzip-compressed objects;
- a subscription delivered by Firehose: gzip members, each a ``{"logEvents": [{"message":
  ...}]}`` envelope, possibly written back to back on one line.

The source is a file, a folder (every file in it, recursively), or ``s3://bucket/prefix``
(every object under it; ``AWS_ENDPOINT_URL_S3`` points boto3 at the loopback server).
A line that is not JSON, or a prediction record without its inputs or output, is counted as
unreadable and reported; it stops the report only when no line could be read.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitoring.errors import LogError

KIND = "prediction"
EXAMPLES = 3  # unreadable lines quoted in the report
_GZIP_MAGIC = b"\x1f\x8b"
_decoder = json.JSONDecoder()


@dataclass
class LogRead:
    """Every record found, and an account of every line that was not one."""

    source: str
    records: list[dict[str, Any]] = field(default_factory=list)
    files: int = 0
    lines: int = 0
    unreadable: int = 0
    other: int = 0  # JSON log lines that are not prediction records
    examples: list[str] = field(default_factory=list)  # where the first unreadable lines are

    def models(self) -> Counter[str]:
        return Counter(str(r["model"].get("name")) for r in self.records)

    def of_model(self, name: str) -> list[dict[str, Any]]:
        """The records of ``name``; LogError when the log has none of them."""
        if self.lines == 0:
            raise LogError(f"{self.source} is empty: no log lines in {self.files} file(s)")
        if not self.records:
            raise LogError(
                f"no readable prediction record in {self.source}: {self.lines:,} line(s), "
                f"{self.unreadable:,} unreadable, {self.other:,} other log lines"
                + (f" (first unreadable: {'; '.join(self.examples)})" if self.examples else "")
            )
        mine = [r for r in self.records if r["model"].get("name") == name]
        if not mine:
            found = ", ".join(f"{m} ({n:,})" for m, n in self.models().most_common())
            raise LogError(f"{self.source} holds no record of model {name!r}; found {found}")
        return mine

    def _unreadable(self, where: str, why: str) -> None:
        self.unreadable += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(f"{where}: {why}")


def read(source: str) -> LogRead:
    log = LogRead(source)
    for where, data in _blobs(source):
        log.files += 1
        try:
            text = _decompress(data).decode("utf-8")
        except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
            log.lines += 1
            log._unreadable(where, f"not UTF-8 text or gzip ({type(exc).__name__})")
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                log.lines += 1
                _line(log, line, f"{where}:{number}")
    return log


def _line(log: LogRead, line: str, where: str) -> None:
    start = line.find("{")  # a CloudWatch export puts "<timestamp> " before the JSON
    if start < 0:
        log._unreadable(where, "no JSON object")
        return
    try:
        values = list(_json_values(line[start:]))
    except ValueError as exc:
        log._unreadable(where, f"not JSON ({exc})")
        return
    found = [r for v in values for r in _records(v)]
    for record in found:
        problem = _problem(record)
        if problem:
            log._unreadable(where, problem)
        else:
            log.records.append(record)
    if not found:
        log.other += 1


def _json_values(text: str) -> Iterator[Any]:
    """Every JSON value in ``text``: Firehose writes objects back to back without a newline."""
    i, n = 0, len(text)
    while i < n:
        value, i = _decoder.raw_decode(text, i)
        yield value
        while i < n and text[i].isspace():
            i += 1


def _records(value: Any) -> Iterator[dict[str, Any]]:
    if not isinstance(value, dict):
        return
    if value.get("kind") == KIND:
        yield value
        return
    events = value.get("logEvents")
    if isinstance(events, list):  # a CloudWatch Logs subscription envelope
        for event in events:
            message = event.get("message") if isinstance(event, dict) else None
            if isinstance(message, str) and "{" in message:
                try:
                    for inner in _json_values(message[message.find("{") :]):
                        yield from _records(inner)
                except ValueError:
                    continue
        return
    message = value.get("message")
    if isinstance(message, dict):
        yield from _records(message)
    elif isinstance(message, str) and message.lstrip().startswith("{"):
        try:
            for inner in _json_values(message.strip()):
                yield from _records(inner)
        except ValueError:
            return


def _problem(record: dict[str, Any]) -> str | None:
    """Why a prediction record cannot be used, or None."""
    for key in ("model", "inputs", "output"):
        if not isinstance(record.get(key), dict):
            return f"prediction record without {key!r}"
    return None


def _decompress(data: bytes) -> bytes:
    # Firehose writes one gzip member per batch: gzip.decompress reads them all.
    return gzip.decompress(data) if data[:2] == _GZIP_MAGIC else data


def _blobs(source: str) -> Iterator[tuple[str, bytes]]:
    if source.startswith("s3://"):
        yield from _s3_objects(source)
        return
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        if not files:
            raise LogError(f"log folder {source} holds no files")
    elif path.is_file():
        files = [path]
    else:
        raise LogError(f"log {source} does not exist")
    for file in files:
        try:
            yield str(file), file.read_bytes()
        except OSError as exc:
            raise LogError(f"cannot read log {file}: {exc.strerror or exc}") from None


def _s3_objects(source: str) -> Iterator[tuple[str, bytes]]:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, prefix = source.removeprefix("s3://").partition("/")
    if not bucket:
        raise LogError(f"{source} names no bucket: use s3://bucket/prefix")
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or None
    s3 = boto3.client("s3", endpoint_url=endpoint)
    where = f"{source} (endpoint {endpoint or 'AWS'})"
    try:
        keys = [
            obj["Key"]
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for obj in page.get("Contents", [])
            if not obj["Key"].endswith("/")
        ]
        if not keys:
            raise LogError(f"no objects under {source}")
        for key in sorted(keys):
            yield f"s3://{bucket}/{key}", s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        raise LogError(f"cannot read {where}: {exc.response['Error']['Code']}") from None
    except BotoCoreError as exc:  # connection refused, timeouts, no credentials
        raise LogError(f"cannot reach S3 for {where}: {exc}") from None
