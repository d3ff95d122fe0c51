"""Property-based fuzzing of every event shape through lambda_handler (issue 9 section 4).

Any event gets a 2xx, a 4xx naming a field, or SQS item failures: never a 5xx, never an
exception escaping the handler other than the documented ``InferenceError`` for an SQS batch
holding a record that cannot be named, never a fault counted, and a valid request afterwards
answers exactly as before. Events are structurally plausible mutations of the samples in
inference/events/ (wrong types, missing keys, huge or deep values, unicode, NaN literals,
base64 flags, odd headers and readings) and random JSON.

Fixed seed (``derandomize``), a bounded number of examples, no deadline. The outcome counts are
printed when the module finishes (``-s`` or not) and written to
``<pytest basetemp>/events_fuzz_counts.json``.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serving_helpers import context
from synthetic import WQI_FIELDS

from inference import events, handler
from inference.contract import FAULT_METRIC
from inference.events import HTTP_KINDS, Kind

EVENTS = Path(__file__).resolve().parents[2] / "inference" / "events"
TEXTS = {path.stem: path.read_text() for path in EVENTS.glob("*.json")}
EXAMPLES = 250  # per shape: nine shapes run in about 15 s on a busy 2-core machine
MISSING = object()  # "leave the key out"
COUNTS: dict[str, Counter[str]] = {}

pytestmark = pytest.mark.usefixtures("served")


def fresh(name: str) -> Any:
    """A new copy of a sample event (parsed again, so nothing is shared between examples)."""
    return json.loads(TEXTS[name])


def nested(depth: int, opener: str) -> str:
    inner, closer = ("", "]") if opener == "[" else ("1", "}")
    return opener * depth + inner + closer * depth


def deep_value(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


# ---- values -----------------------------------------------------------------------------------
NAMES = ["pH", "turbidity", "tds", "temperature"]
KEYS = st.sampled_from(
    [*NAMES, "ph", "PH", "readings", "records", "deviceId", "Records", "body", "messageId",
     "eventSource", "requestContext", "version", "httpMethod", "isBase64Encoded", "headers",
     "multiValueHeaders", "elb", "domainName", "detail-type", "source", "", "\u00e9", "\ud800"]
) | st.text(max_size=8)  # fmt: skip
ODD_SCALARS = [
    "NaN", "Infinity", "-Infinity", "1e999", "7.4", " 7.4", "", "\ud800", "\x00", "\u202e",
    "buoy-\U0001f30a", "x" * 129, "y" * 20_000, 10**400, -(2**63), 2**64, 1e308, -0.0, 5e-324,
    float("nan"), float("inf"), float("-inf"), True, False, None,
]  # fmt: skip
# Containers are parsed anew for every draw: a mutation must never change the next example.
ODD = st.sampled_from(ODD_SCALARS) | st.sampled_from(["[]", "{}", "[[]]", '{"": {}}']).map(
    json.loads
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=16)
    | ODD
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=10,
)
DEEP = st.integers(900, 3_000).map(deep_value)
# In range or not, any type. SHALLOW is what a body can be written from (json.dumps recurses
# too); bodies nested deeper than the decoder goes are written as text ("deep" below).
SHALLOW = st.one_of(st.floats(-10, 60), st.integers(-10, 5_000), SCALARS, JSON)
VALUES = SHALLOW | DEEP


# ---- records, batches and envelopes ------------------------------------------------------------
@st.composite
def readings(draw: st.DrawFn, values_of: Any) -> Any:
    values: dict[Any, Any] = dict(fresh("direct")["readings"])
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["set", "set", "delete", "add", "rename"]))
        key = draw(st.sampled_from(NAMES))
        if action == "set":
            values[key] = draw(values_of)
        elif action == "delete":
            values.pop(key, None)
        elif action == "add":
            values[draw(KEYS)] = draw(values_of)
        elif key in values:
            values[draw(KEYS)] = values.pop(key)
    return values if draw(st.integers(0, 9)) else draw(values_of)


@st.composite
def records(draw: st.DrawFn, values_of: Any = VALUES) -> Any:
    record: dict[str, Any] = {"readings": draw(readings(values_of))}
    device = draw(st.sampled_from(["buoy-01", MISSING, None, "odd"]))
    if device is not MISSING:
        odd = values_of | st.text(max_size=140)
        record["deviceId"] = draw(odd) if device == "odd" else device
    if not draw(st.integers(0, 7)):
        record[draw(KEYS)] = draw(values_of)
    return record if draw(st.integers(0, 9)) else draw(values_of)


@st.composite
def batches(draw: st.DrawFn, values_of: Any = VALUES) -> Any:
    batch: dict[str, Any] = {"records": draw(st.lists(records(values_of), max_size=6))}
    if not draw(st.integers(0, 7)):
        batch[draw(KEYS)] = draw(values_of)
    return batch if draw(st.integers(0, 9)) else {"records": draw(values_of)}


PAYLOADS = st.one_of(records(SHALLOW), batches(SHALLOW))  # written as JSON text

# Valid requests with varied content: any in-range number, any deviceId up to 128 characters.
FIELDS: list[dict[str, Any]] = WQI_FIELDS  # the synthetic bundle's schema
VALID_RECORDS = st.builds(
    lambda readings, device: readings if device is MISSING else {**readings, "deviceId": device},
    st.fixed_dictionaries(
        {
            f["name"]: st.floats(f["minimum"], f["maximum"])
            | st.integers(int(f["minimum"]), int(f["maximum"]))
            for f in FIELDS
        }
    ).map(lambda values: {"readings": values}),
    st.just(MISSING) | st.none() | st.text(max_size=128),
)
VALID_PAYLOADS = VALID_RECORDS | st.builds(
    lambda rs: {"records": rs}, st.lists(VALID_RECORDS, min_size=1, max_size=6)
)


def _spots(value: Any, depth: int = 0) -> Iterator[tuple[Any, Any]]:
    """(container, key) of every value down to depth 3: where a mutation can land."""
    if depth > 3:
        return
    if type(value) is dict:
        items: list[tuple[Any, Any]] = list(value.items())
    else:
        items = list(enumerate(value)) if type(value) is list else []
    for key, inner in items:
        yield value, key
        yield from _spots(inner, depth + 1)


@st.composite
def mutated(draw: st.DrawFn, event: Any) -> Any:
    """``event`` with up to 3 structural changes: a key deleted, a value replaced, a key added."""
    for _ in range(draw(st.integers(0, 3))):
        spots = list(_spots(event))
        if not spots:
            break
        container, key = draw(st.sampled_from(spots))
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            container[key] = draw(VALUES)
        elif action == "delete":
            del container[key]
        elif type(container) is dict:
            container[draw(KEYS)] = draw(VALUES)
        else:
            container.append(draw(VALUES))
    return event


@st.composite
def bodies(draw: st.DrawFn) -> tuple[Any, Any]:
    """(body, isBase64Encoded) of an HTTP request; MISSING leaves the key out."""
    form = draw(
        st.sampled_from(
            ["json", "json", "json", "base64", "text", "deep", "value", "missing", "cut", "nan"]
        )
    )
    flag: Any = form == "base64"
    text: Any
    if form in ("json", "base64", "cut"):
        text = json.dumps(draw(PAYLOADS))  # NaN and Infinity come out as literals
        if form == "cut":
            text = text[: draw(st.integers(0, len(text)))]
        elif form == "base64":
            text = base64.b64encode(text.encode()).decode()  # json.dumps wrote ASCII
    elif form == "text":
        text = draw(st.text(max_size=40) | ODD.filter(lambda v: type(v) is str))
    elif form == "deep":
        text = nested(draw(st.integers(500, 5_000)), draw(st.sampled_from(["[", '{"a":'])))
    elif form == "value":
        text = draw(JSON.filter(lambda v: type(v) is not str))
    elif form == "missing":
        text = MISSING
    else:
        text = NAN_LITERALS
    if not draw(st.integers(0, 4)):  # a flag that lies, or is no boolean
        flag = draw(st.sampled_from([not flag, "true", "false", 1, 0, None, [], MISSING]))
    return text, flag


NAN_LITERALS = (  # Python's json reads these; 1e999 overflows to infinity
    '{"readings": {"pH": NaN, "turbidity": Infinity, "tds": -Infinity, "temperature": 1e999}}'
)
HEADERS = st.dictionaries(
    KEYS, st.text(max_size=20) | ODD | st.lists(st.text(max_size=5), max_size=3), max_size=5
)


@st.composite
def valid_http_events(draw: st.DrawFn, name: str) -> Any:
    """A valid request in ``name``'s envelope, base64 or not, with any headers."""
    event = fresh(name)
    text = json.dumps(draw(VALID_PAYLOADS))
    event["isBase64Encoded"] = draw(st.booleans())
    event["body"] = base64.b64encode(text.encode()).decode() if event["isBase64Encoded"] else text
    event["headers"] = draw(HEADERS)
    if name == "alb" and draw(st.booleans()):
        multi_value(event)
    return event


def multi_value(event: dict[str, Any]) -> None:
    """An ALB request from a target group with multi-value headers switched on."""
    event["multiValueHeaders"] = {k: [v] for k, v in event.pop("headers").items()}
    event["multiValueQueryStringParameters"] = event.pop("queryStringParameters")


@st.composite
def http_events(draw: st.DrawFn, name: str) -> Any:
    event = fresh(name)
    text, flag = draw(bodies())
    for key, value in (("body", text), ("isBase64Encoded", flag)):
        if value is MISSING:
            del event[key]
        else:
            event[key] = value
    if name == "alb" and draw(st.booleans()):
        multi_value(event)
    if not draw(st.integers(0, 3)):
        event[draw(st.sampled_from(["headers", "multiValueHeaders"]))] = draw(HEADERS | VALUES)
    return draw(mutated(event))


@st.composite
def valid_sqs_events(draw: st.DrawFn) -> Any:
    template = fresh("sqs")["Records"][0]
    bodies = draw(st.lists(VALID_RECORDS.map(json.dumps), min_size=1, max_size=5))
    return {
        "Records": [
            {**template, "messageId": f"m-{i}", "body": body} for i, body in enumerate(bodies)
        ]
    }


@st.composite
def sqs_events(draw: st.DrawFn) -> Any:
    template = fresh("sqs")["Records"][0]
    event: dict[str, list[Any]] = {"Records": []}
    for i in range(draw(st.integers(1, 5))):
        record: Any = {
            **template,
            "messageId": f"m-{i}",
            "body": json.dumps(draw(records(SHALLOW))),
        }
        odd = draw(st.integers(0, 11))
        if odd == 0:
            record["body"] = draw(st.sampled_from([MISSING, "", "{oops"]) | JSON)
        elif odd == 1:
            record["body"] = nested(draw(st.integers(500, 5_000)), "[")
        elif odd == 2:
            record["eventSource"] = draw(st.sampled_from(["aws:kinesis", MISSING]) | VALUES)
        elif odd == 3 and i:  # a record that cannot be named (not the first: that is detection)
            record = draw(st.sampled_from([{**record, "messageId": None}, 1, None, "x"]) | JSON)
        elif odd == 4:
            record = draw(mutated(record))
        if type(record) is dict:
            record = {k: v for k, v in record.items() if v is not MISSING}
        event["Records"].append(record)
    return event


def cases(valid: Any, odd: Any) -> Any:
    """(event, valid?) pairs, a third of them valid: a valid one must be answered in full."""
    return st.one_of(valid.map(lambda e: (e, True)), odd.map(lambda e: (e, False)), odd.map(
        lambda e: (e, False)))  # fmt: skip


SHAPES: dict[str, Any] = {
    "direct": cases(VALID_RECORDS, records().flatmap(mutated)),
    "batch": cases(
        st.lists(VALID_RECORDS, min_size=1, max_size=6).map(lambda rs: {"records": rs}),
        batches().flatmap(mutated),
    ),
    **{
        name: cases(valid_http_events(name), http_events(name))
        for name in ("apigw-rest-v1", "http-api-v2", "function-url", "alb")
    },
    "sqs": cases(valid_sqs_events(), sqs_events()),
    "warmup": cases(
        st.builds(fresh, st.just("warmup")), st.builds(fresh, st.just("warmup")).flatmap(mutated)
    ),
    "random-json": cases(st.nothing(), JSON | st.dictionaries(KEYS, JSON, max_size=6)),
}


# ---- the property ------------------------------------------------------------------------------
def unnamed_record(event: Any) -> bool:
    """An SQS event holding a record batchItemFailures cannot name (see events.sqs_messages)."""
    return events.detect(event) is Kind.SQS and any(
        type(r) is not dict or type(r.get("messageId")) is not str or not r["messageId"]
        for r in event["Records"]
    )


def field_level(error: dict[str, Any]) -> None:
    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"], "a 400 names at least one field"
    for detail in error["details"]:
        assert type(detail["field"]) is str and detail["field"]
        assert type(detail["reason"]) is str and detail["reason"]


def outcome(event: Any, valid: bool) -> Counter[str]:
    """Invoke the handler on ``event`` and check its answer; the counts it adds up to."""
    kind = events.detect(event)
    unnamed = unnamed_record(event)
    try:
        response = handler.lambda_handler(event, context("req-fuzz"))
    except handler.InferenceError:
        assert unnamed, "InferenceError for an event without an unnamed SQS record"
        return Counter(sqs_batch_failed=1)
    assert not unnamed, "an SQS record that cannot be named must fail the batch"
    assert len(json.dumps(response)) < 1_000_000  # what the runtime sends; ALB's response limit
    if kind is Kind.SQS:
        assert set(response) == {"batchItemFailures"}
        ids = [r["messageId"] for r in event["Records"]]
        failed = [f["itemIdentifier"] for f in response["batchItemFailures"]]
        assert set(failed) <= set(ids) and len(set(failed)) == len(failed)
        assert not (valid and failed), "a valid message reported failed"
        return Counter(sqs_item_failures=len(failed), sqs_answered=len(ids) - len(failed))
    if kind in HTTP_KINDS:
        assert response["isBase64Encoded"] is False and type(response["body"]) is str
        headers = response.get("headers") or {
            k: v[0] for k, v in response.get("multiValueHeaders", {}).items()
        }
        assert headers["Content-Type"] == "application/json"
        assert headers["X-Request-Id"] == "req-fuzz"
        payload = json.loads(response["body"])
    else:
        payload = response
    status = response["statusCode"]
    if kind is Kind.ALB:
        assert response["statusDescription"].startswith(f"{status} ")
    if status // 100 == 5:
        return Counter({"5xx": 1})
    assert status in (200, 400), status
    assert status == 200 or not valid, f"a valid request answered {status}"
    if status == 400:
        field_level(payload["error"])
        return Counter({"4xx": 1})
    assert "error" not in payload
    return Counter({"2xx": 1})


def answers(name: str) -> Any:
    try:
        return handler.lambda_handler(fresh(name), context("req-fuzz"))
    except handler.InferenceError as exc:  # not expected of a sample: compared all the same
        return repr(exc)


@pytest.mark.parametrize("shape", list(SHAPES))
def test_no_event_gets_a_5xx_or_an_unexpected_exception(
    shape: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    baseline = {name: answers(name) for name in TEXTS}
    counted: list[str] = []
    monkeypatch.setattr(handler, "count_error", counted.append)
    counts = COUNTS.setdefault(shape, Counter())
    counts.update({"5xx": 0})

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
            HealthCheck.filter_too_much,
        ],
    )
    @given(case=SHAPES[shape])
    def run(case: tuple[Any, bool]) -> None:
        counts["examples"] += 1
        found = outcome(*case)
        counts.update(found)
        assert not found["5xx"], "a 5xx"
        assert FAULT_METRIC not in counted, "a fault was counted"
        # The handler keeps no state from a bad event: a valid request answers as before.
        assert answers("direct") == baseline["direct"]

    run()
    assert {name: answers(name) for name in TEXTS} == baseline


@pytest.fixture(scope="module", autouse=True)
def _report(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    yield
    total: Counter[str] = Counter()
    for counts in COUNTS.values():
        total.update(counts)  # update, not +: a Counter sum drops the zero 5xx count
    summary = {"total": dict(total), **{shape: dict(c) for shape, c in COUNTS.items()}}
    path = tmp_path_factory.getbasetemp() / "events_fuzz_counts.json"
    path.write_text(json.dumps(summary, indent=2))
    line = (
        f"\nevents fuzz: {total['examples']} examples, 2xx={total['2xx']}, 4xx={total['4xx']}, "
        f"SQS item failures={total['sqs_item_failures']} (answered {total['sqs_answered']}), "
        f"SQS batches failed whole={total['sqs_batch_failed']}, 5xx={total['5xx']} ({path})"
    )
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if capture is None:
        print(line)
    else:
        with capture.global_and_fixture_disabled():  # shown with or without -s
            print(line)
