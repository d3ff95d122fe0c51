"""`make invoke EVENT=path.json`: the handler in-process against the local S3 release.

Reads the model's ``release.json`` (written by the registry's promotion) from
``MODEL_BUCKET`` through ``registry.manifest.read_stored``, as every reader does: its bytes must
match the ``sha256`` metadata stored with them. Then pins exactly that object as a deploy would,
answers the event and prints the answer, alone, on stdout: what a person reads. The handler's
own output (its JSON log lines and EMF metrics documents) is appended to ``.local/invoke.log``,
or with ``--logs -`` goes to stderr. Every failure (an event file that is missing or not JSON,
no release, a release that fails its digest or does not parse, S3 unreachable, a model that
does not load, a handler fault) is one ``error: ...`` line on stderr and exit status 1, never a
traceback; so is an HTTP-shaped answer with a 4xx/5xx ``statusCode``, printed first.

A developer tool: it lives outside ``inference/``, so the Lambda image (``COPY inference/*.py``)
does not ship it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import types
import uuid
from collections.abc import Iterator
from typing import Any, TextIO

from inference.bundle import is_model_name, model_name_problem
from registry.manifest import (
    ManifestDigestError,
    ManifestError,
    Release,
    manifest_key,
    read_stored,
)
from settings import LOCAL_DIR

LOG_FILE = LOCAL_DIR / "invoke.log"  # the handler's log lines and metrics, appended per call
TO_STDERR = "-"


class LocalError(Exception):
    """Why `make invoke` cannot answer: printed as one line."""


def read_event(path: str) -> Any:
    """The event file's JSON.

    Raises:
        LocalError: the file cannot be read or is not JSON.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except OSError as exc:
        raise LocalError(f"cannot read event file {path}: {exc.strerror or exc}") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise LocalError(f"event file {path} is not valid JSON: {exc}") from None


def release(bucket: str, model: str) -> Release:
    """The model's live release, read as every reader reads it (its digest checked).

    Raises:
        LocalError: no release, S3 unreachable, a release that fails its digest or does not
            parse, or a release of another model.
    """
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    key = manifest_key(model)
    where = f"s3://{bucket}/{key}"
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or None
    try:
        s3 = boto3.client("s3", endpoint_url=endpoint)
        response = s3.get_object(Bucket=bucket, Key=key)
        body = response["Body"].read()
    except ClientError as exc:
        raise LocalError(
            f"no release at {where} ({exc.response['Error']['Code']}); "
            "train, approve and promote first (see README)"
        ) from None
    except BotoCoreError as exc:  # connection refused, timeouts, no credentials
        raise LocalError(
            f"cannot reach S3 for {where} (endpoint {endpoint or 'AWS'}): {exc}"
        ) from None
    try:
        found = read_stored(body, response.get("Metadata"), where, complete=False)
    except (ManifestDigestError, ManifestError) as exc:
        raise LocalError(f"release refused: {exc}") from None
    if found.name != model:
        raise LocalError(f"{where} is a release of {found.name!r}, not {model!r}")
    return found


def invoke(event_path: str, model: str) -> Any:
    """The handler's answer to the event, with the release's model pinned as a deploy would.

    Raises:
        LocalError: an invalid model name, no bucket set, an unreadable event or release, a
            model that does not load, or a handler fault.
    """
    if not is_model_name(model):  # before it names a key: `../potability` is no model
        raise LocalError(model_name_problem(model))
    bucket = os.environ.get("MODEL_BUCKET")
    if not bucket:
        raise LocalError("MODEL_BUCKET is not set (run through `make invoke`)")
    event = read_event(event_path)  # before any S3 call: a mistyped path fails at once
    pinned = {"MODEL_VERSION": "", **release(bucket, model).environment()}
    os.environ.update(pinned)  # exactly what a deploy sets (registry.manifest.Release)
    os.environ.setdefault("MODEL_CACHE_DIR", str(LOCAL_DIR / "tmp"))
    try:
        from inference import handler  # loads, verifies and checks the pinned bundle now

        if handler._service is None:  # already imported (in-process callers): load now
            handler.init()
    except Exception as exc:  # InitError names the cause
        raise LocalError(f"model failed to load: {exc}") from None
    context = types.SimpleNamespace(
        aws_request_id=f"local-{uuid.uuid4()}", function_name="waterml-inference-local"
    )
    try:
        return handler.lambda_handler(event, context)
    except Exception as exc:  # InferenceError: the cause is in the log line above
        raise LocalError(f"the handler failed: {exc}") from None


@contextlib.contextmanager
def handler_output(target: str) -> Iterator[None]:
    """Everything but the answer to ``target`` (a file, appended; ``-``: stderr): the
    Powertools logger's stream (bound when the logger was made) and anything printed, such as
    the EMF metrics documents.

    Raises:
        LocalError: the log file cannot be opened.
    """
    from inference.observability import logger

    with _opened(target) as stream:
        handler = logger.registered_handler
        streamed = handler if isinstance(handler, logging.StreamHandler) else None
        previous = streamed.setStream(stream) if streamed is not None else None
        try:
            with contextlib.redirect_stdout(stream):
                yield
        finally:
            if streamed is not None and previous is not None:
                streamed.setStream(previous)


@contextlib.contextmanager
def _opened(target: str) -> Iterator[TextIO]:
    if target == TO_STDERR:
        yield sys.stderr
        return
    try:
        os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
        stream = open(target, "a", encoding="utf-8")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise LocalError(f"cannot write the handler's log to {target}: {exc.strerror}") from None
    with stream:
        yield stream


def failed_status(answer: Any) -> int | None:
    """The statusCode of an HTTP-shaped answer that reports a failure, else None."""
    status = answer.get("statusCode") if isinstance(answer, dict) else None
    return status if isinstance(status, int) and status >= 400 else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.invoke", description=__doc__)
    parser.add_argument("event", help="a JSON event file, e.g. inference/events/direct.json")
    parser.add_argument("--model", default="wqi")
    parser.add_argument("--logs", metavar="FILE", default=str(LOG_FILE),
                        help="where the handler's log lines and metrics go, appended (default: "
                        "%(default)s; '-': stderr)")  # fmt: skip
    args = parser.parse_args(argv)
    logged = "" if args.logs == TO_STDERR else f" (the handler's log: {args.logs})"
    try:
        with handler_output(args.logs):
            answer = invoke(args.event, args.model)
    except LocalError as exc:
        print(f"error: {exc}{logged}", file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2))
    status = failed_status(answer)
    if status is not None:
        print(f"error: the handler answered statusCode {status}{logged}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
