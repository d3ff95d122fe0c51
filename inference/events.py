"""Event shapes: which one arrived, how to read it, and how to answer in its own shape.

Detection looks only at keys, cheapest and most specific first; the direct invocation, the
hot path, needs two dictionary look-ups. Powertools' event source data classes read the HTTP
envelopes (imported once, on first use); the body's type is checked before it is decoded.
SQS records are read as plain dictionaries, every field type-checked, so that a foreign or
malformed record fails alone (Powertools' accessors raise on one, failing the whole batch).
"""

from __future__ import annotations

import json
from enum import StrEnum
from http import HTTPStatus
from typing import Any

from inference.validation import ValidationError, json_type, problem

JSON_HEADERS = {"Content-Type": "application/json"}


class Kind(StrEnum):
    DIRECT = "direct"
    BATCH = "batch"
    REST_V1 = "apigateway-rest-v1"
    HTTP_V2 = "apigateway-http-v2"
    FUNCTION_URL = "function-url"
    ALB = "alb"
    SQS = "sqs"
    WARMUP = "warmup"
    UNKNOWN = "unknown"


HTTP_KINDS = frozenset({Kind.REST_V1, Kind.HTTP_V2, Kind.FUNCTION_URL, Kind.ALB})


def detect(event: Any) -> Kind:
    if type(event) is not dict:
        return Kind.UNKNOWN
    if "readings" in event:
        return Kind.DIRECT
    if "records" in event:
        return Kind.BATCH
    context = event.get("requestContext")
    if type(context) is dict:
        if event.get("version") == "2.0":
            domain = context.get("domainName")
            url = type(domain) is str and ".lambda-url." in domain
            return Kind.FUNCTION_URL if url else Kind.HTTP_V2
        if "elb" in context:  # an ALB target group's request (also carries httpMethod)
            return Kind.ALB
        if "httpMethod" in event:
            return Kind.REST_V1
    records = event.get("Records")
    if (
        type(records) is list
        and records
        and type(records[0]) is dict
        and records[0].get("eventSource") == "aws:sqs"
    ):
        return Kind.SQS
    if event.get("detail-type") == "Scheduled Event" and event.get("source") == "aws.events":
        return Kind.WARMUP
    return Kind.UNKNOWN


_WRAPPERS: dict[Kind, Any] = {}  # Kind -> Powertools data class, filled on first use


def wrappers() -> dict[Kind, Any]:
    """Powertools' event data classes by kind, imported once, on the first HTTP event:
    a function fed only direct invocations never pays for the import."""
    if not _WRAPPERS:
        from aws_lambda_powertools.utilities.data_classes import (
            ALBEvent,
            APIGatewayProxyEvent,
            APIGatewayProxyEventV2,
            LambdaFunctionUrlEvent,
        )

        _WRAPPERS.update(
            {
                Kind.REST_V1: APIGatewayProxyEvent,
                Kind.HTTP_V2: APIGatewayProxyEventV2,
                Kind.FUNCTION_URL: LambdaFunctionUrlEvent,
                Kind.ALB: ALBEvent,
            }
        )
    return _WRAPPERS


def http_json(kind: Kind, event: dict[str, Any]) -> Any:
    """The request's JSON body (base64 decoded if flagged).

    Raises:
        ValidationError: on ``body``: missing, not a string, not base64 UTF-8, not JSON.
    """
    request = (_WRAPPERS or wrappers())[kind](event)
    text = request.body
    if text is not None and type(text) is not str:  # Powertools would call .encode() on it
        raise ValidationError(
            [problem("body", f"must be a string holding JSON, not {json_type(text)}")],
            "malformed body",
        )
    if text and request.is_base64_encoded:
        try:
            text = request.decoded_body
        except ValueError:  # binascii.Error, UnicodeDecodeError, UnicodeEncodeError
            raise ValidationError(
                [problem("body", "not valid base64 UTF-8")], "malformed body"
            ) from None
    if not text:
        raise ValidationError([problem("body", "missing: send a JSON object")], "malformed body")
    return parse_json(text, "body")


def parse_json(text: str, field: str) -> Any:
    """``text`` as JSON.

    Raises:
        ValidationError: on ``field``: malformed or too deeply nested JSON.
    """
    try:
        return json.loads(text)
    except (ValueError, TypeError) as exc:
        raise ValidationError(
            [problem(field, f"malformed JSON: {exc}")], "malformed JSON"
        ) from None
    except RecursionError:
        # The C decoder recurses once per level up to the recursion limit (about 1,000 levels)
        # and then unwinds cleanly, so this costs nothing until it happens; a request nests 4.
        raise ValidationError(
            [problem(field, "malformed JSON: nested too deeply")], "malformed JSON"
        ) from None


def sqs_messages(event: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(messageId, record) of every record, each id checked before any record is answered.

    ``batchItemFailures`` names a failed record by its messageId. One that has none (or not a
    non-empty string) cannot be named: Lambda reads a null or empty ``itemIdentifier`` as the
    failure of the whole batch, and a record left out of the answer would be deleted with the
    batch. So such a record raises a ValidationError for the whole batch (the handler fails the
    invocation and SQS keeps every message); SQS itself always sends a string id.

    Raises:
        ValidationError: a record without a non-empty string ``messageId``.
    """
    named: list[tuple[str, dict[str, Any]]] = []
    for i, record in enumerate(event["Records"]):  # detect() checked: a non-empty list
        message_id = record.get("messageId") if type(record) is dict else None
        if type(message_id) is not str or not message_id:
            raise ValidationError(
                [problem(f"Records[{i}].messageId", _unnamed(record))],
                "SQS record without messageId",
            )
        named.append((message_id, record))
    return named


def _unnamed(record: Any) -> str:
    if type(record) is not dict:
        return f"missing: the record is {json_type(record)}, not an object"
    if "messageId" not in record:
        return "missing"
    message_id = record["messageId"]
    return (
        "must not be empty"
        if message_id == ""
        else f"must be a string, not {json_type(message_id)}"
    )


def sqs_body(record: dict[str, Any]) -> str:
    """One record's body.

    Raises:
        ValidationError: (that record's item failure) the record is not an SQS message, or its
            body is missing or not a string.
    """
    if record.get("eventSource") != "aws:sqs":
        raise ValidationError(
            [problem("eventSource", "must be aws:sqs: not an SQS record")], "not an SQS record"
        )
    if "body" not in record:
        raise ValidationError([problem("body", "missing")], "malformed body")
    body = record["body"]
    if type(body) is not str:
        raise ValidationError(
            [problem("body", f"must be a string holding JSON, not {json_type(body)}")],
            "malformed body",
        )
    return body


def http_response(
    kind: Kind,
    event: dict[str, Any],
    status: int,
    payload: dict[str, Any],
    request_id: str | None,
) -> dict[str, Any]:
    headers = dict(JSON_HEADERS)
    if request_id:
        headers["X-Request-Id"] = request_id
    response: dict[str, Any] = {
        "statusCode": status,
        "headers": headers,
        "body": json.dumps(payload, separators=(",", ":")),
        "isBase64Encoded": False,
    }
    if kind is Kind.REST_V1:  # the v1 proxy contract also carries multi-value headers
        response["multiValueHeaders"] = {}
    elif kind is Kind.ALB:
        # ALB builds the status line from statusDescription. A target group with multi-value
        # headers on sends only multiValueHeaders and reads only those back ("use
        # multiValueHeaders if you have enabled multi-value headers and headers otherwise").
        response["statusDescription"] = f"{status} {HTTPStatus(status).phrase}"
        if "multiValueHeaders" in event:
            response["multiValueHeaders"] = {k: [v] for k, v in response.pop("headers").items()}
    return response
