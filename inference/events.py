"""Event shapes: which one arrived, how to read it, and how to answer in its own shape.

Detection looks only at keys, cheapest and most specific first; the direct invocation, the
hot path, needs two dictionary look-ups. Powertools' event source data classes read the
HTTP and SQS envelopes (base64 bodies, message ids); they are imported once, on first use.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

from inference.validation import ValidationError, problem

JSON_HEADERS = {"Content-Type": "application/json"}


class Kind(StrEnum):
    DIRECT = "direct"
    BATCH = "batch"
    REST_V1 = "apigateway-rest-v1"
    HTTP_V2 = "apigateway-http-v2"
    FUNCTION_URL = "function-url"
    SQS = "sqs"
    WARMUP = "warmup"
    UNKNOWN = "unknown"


HTTP_KINDS = frozenset({Kind.REST_V1, Kind.HTTP_V2, Kind.FUNCTION_URL})


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
            domain = str(context.get("domainName", ""))
            return Kind.FUNCTION_URL if ".lambda-url." in domain else Kind.HTTP_V2
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
    """Powertools' event data classes by kind, imported once, on the first HTTP or SQS event:
    a function fed only direct invocations never pays for the import."""
    if not _WRAPPERS:
        from aws_lambda_powertools.utilities.data_classes import (
            APIGatewayProxyEvent,
            APIGatewayProxyEventV2,
            LambdaFunctionUrlEvent,
            SQSEvent,
        )

        _WRAPPERS.update(
            {
                Kind.REST_V1: APIGatewayProxyEvent,
                Kind.HTTP_V2: APIGatewayProxyEventV2,
                Kind.FUNCTION_URL: LambdaFunctionUrlEvent,
                Kind.SQS: SQSEvent,
            }
        )
    return _WRAPPERS


def http_json(kind: Kind, event: dict[str, Any]) -> Any:
    """The request's JSON body (base64 decoded if flagged), or a ValidationError."""
    request = (_WRAPPERS or wrappers())[kind](event)
    try:
        text = request.decoded_body
    except (ValueError, UnicodeDecodeError):
        raise ValidationError(
            [problem("body", "not valid base64 UTF-8")], "malformed body"
        ) from None
    if not text:
        raise ValidationError([problem("body", "missing: send a JSON object")], "malformed body")
    return parse_json(text, "body")


def parse_json(text: str, field: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, TypeError) as exc:
        raise ValidationError(
            [problem(field, f"malformed JSON: {exc}")], "malformed JSON"
        ) from None


def sqs_messages(event: dict[str, Any]) -> list[tuple[str, str]]:
    """(messageId, body) of each SQS record; a record without a messageId raises."""
    sqs = (_WRAPPERS or wrappers())[Kind.SQS](event)
    return [(record.message_id, record.body or "") for record in sqs.records]


def http_response(
    kind: Kind, status: int, payload: dict[str, Any], request_id: str | None
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
    return response
