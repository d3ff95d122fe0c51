"""The Lambda entry point: ``inference.handler.lambda_handler``.

Sections, in reading order: init (configuration and the model, loaded at import when the
``MODEL_*`` variables are set, so provisioned concurrency and warm-up pre-load it), the event
dispatch, one function per event family, and the error mapping (400 VALIDATION_ERROR with
field-level reasons; a fault is a 500/503 INFERENCE_ERROR in the HTTP kinds' own shape, and an
``InferenceError`` carrying only the code and request id, raised, for every other kind).
"""

from __future__ import annotations

import gc
import os
import sys
import time
import uuid
from typing import Any

import numpy as np

from inference import config as config_mod
from inference import events, loader
from inference.contract import FAULT_METRIC, INVALID_METRIC
from inference.events import HTTP_KINDS, Kind
from inference.observability import (
    AnswerMetrics,
    count_error,
    debug_enabled,
    logger,
    publish_cold_start,
)
from inference.outputs import Answered
from inference.prediction_log import PredictionLog
from inference.predictor import joined_answers
from inference.validation import ValidationError, Validator, json_type, problem

# The answers' error codes (counted as contract.INVALID_METRIC and FAULT_METRIC).
VALIDATION_ERROR = "VALIDATION_ERROR"
INFERENCE_ERROR = "INFERENCE_ERROR"
UNRECOGNISED = {"field": "event", "reason": "unrecognised event shape (see inference/README.md)"}


class InitError(Exception):
    """The model could not be loaded at init; the message says why (no request is served)."""


class Service:
    """A loaded model with everything the hot path needs, precomputed once."""

    def __init__(
        self, model: loader.Model, max_batch: int, prediction_log: PredictionLog | None = None
    ) -> None:
        self.model = model
        self.predictor = model.predictor
        self.validator = Validator(model.bundle["schema"], max_batch)
        self.identity = model.identity
        names = [f["name"] for f in model.bundle["schema"]["fields"]]
        self.metrics = AnswerMetrics(self.identity, self.predictor.output.labels, names)
        self.prediction_log = prediction_log or PredictionLog(0.0)

    def predict(
        self, features: np.ndarray | list[list[float]], devices: list[str | None]
    ) -> list[dict[str, Any]]:
        """One answer per row, led by its deviceId."""
        return self.answered(features, devices).answers

    def answered(
        self, features: np.ndarray | list[list[float]], devices: list[str | None]
    ) -> Answered:
        """Answers with their domain verdicts, and their tally for the metrics."""
        return self.predictor.answered(as_float32(features), devices)

    def answer_batch(self, records: Any) -> list[dict[str, Any]]:
        """A batch's answers, or ValidationError listing every problem (all or nothing)."""
        return self.answered_batch(records).answers

    def answered_batch(self, records: Any) -> Answered:
        """A batch's answers and tally, or ValidationError listing every problem.

        The cyclic garbage collector waits while a batch is answered: each answer is a dict
        holding its verdict, so the collector tracks it, and a 10,000-record batch (~30,000
        containers) set off ~40 young collections and, every few batches, a full one over
        everything alive (measured, 80 batches: CPU p90 55 ms with it, 36 ms paused; no full
        collection). What a batch allocates is freed by reference counting; a rare cycle (an
        exception's traceback) waits for the collector, which runs again once the batch is
        answered."""
        if not gc.isenabled():
            return self._answered_batch(records)
        gc.disable()
        try:
            return self._answered_batch(records)
        finally:
            gc.enable()

    def _answered_batch(self, records: Any) -> Answered:
        """The batch, all or nothing.

        Row blocks are validated on this thread and predicted and answered on their own
        (inference/blocks.py), so validating one block overlaps predicting another. A block
        that is not plainly valid sends the whole batch through the full pass.
        """
        validator, predictor = self.validator, self.predictor
        validator.check_batch(records)

        def prepare(lo: int, hi: int) -> tuple[np.ndarray, list[str | None]] | None:
            block = validator.fast_batch(records[lo:hi])
            # Converted here, not in the block's thread: numpy releases the GIL while it
            # copies, and the caller would take it back before the block reached the model.
            return None if block is None else (as_float32(block[1]), block[0])

        def answer(block: tuple[np.ndarray, list[str | None]] | None) -> Answered | None:
            return None if block is None else predictor.answered_here(*block)

        parts = predictor.blocks.map(len(records), prepare, answer)
        if any(part is None for part in parts):
            devices, matrix = validator.batch(records)  # raises, or is valid (e.g. with nulls)
            return self.answered(matrix, devices)
        return joined_answers(parts)  # type: ignore[arg-type]

    def report(self, answered: Answered, records: list[Any], context: Any) -> None:
        """After answering: the invocation's one EMF document, and the sampled prediction
        log. Never fails the request (logged instead)."""
        try:
            self.metrics.publish(answered.tally)
            rows = self.prediction_log.sample(len(records))
            if rows:
                log, calendar = self.prediction_log, self.validator.calendar
                log.write(rows, records, answered.answers, self.identity, _request_id(context),
                          calendar)  # fmt: skip
        except Exception:
            logger.exception("could not publish the answers' metrics or prediction log")


def as_float32(features: np.ndarray | list[list[float]]) -> np.ndarray:
    """The model's input. Every path goes float64 -> float32 here, so a reading gets the same
    answer alone, in a batch or from SQS."""
    return np.asarray(features, dtype=np.float64).astype(np.float32, order="C")


# ---- init -------------------------------------------------------------------------------------
_service: Service | None = None
_cold = True
_init_ms: float | None = None


def init(cfg: config_mod.Config | None = None) -> Service:
    """Load (or reuse) the pinned model.

    Raises:
        InitError: the configuration, the fetch, the digest or a load-time check failed; the
            message names the cause.
    """
    global _service, _init_ms
    started = time.perf_counter()
    try:
        cfg = cfg or config_mod.from_env()
        model = loader.load(cfg)
    except Exception as exc:
        logger.error("model failed to load", extra={"error": f"{type(exc).__name__}: {exc}"})
        raise InitError(f"{type(exc).__name__}: {exc}") from exc
    log = PredictionLog(cfg.prediction_log_rate, cfg.prediction_log_seed)
    _service = Service(model, cfg.max_batch, log)
    _init_ms = round((time.perf_counter() - started) * 1000, 2)
    logger.append_keys(
        model_name=model.name,
        model_version=model.identity["version"],
        model_s3_version_id=model.version_id,
        model_sha256=model.sha256[:12],
    )
    logger.info(
        "model loaded",
        extra={
            "source": model.source,
            "timings_ms": model.timings_ms,
            "domain": "profile" if model.predictor.domain else "none (bundle without a profile)",
            "prediction_log_rate": cfg.prediction_log_rate,
        },
    )
    if cfg.prediction_log_rate > 0 and logger.log_level > 20:  # logging.INFO
        logger.warning("the prediction log writes at INFO: POWERTOOLS_LOG_LEVEL turns it off")
    return _service


def reset() -> None:
    """Forget the loaded model (tests; a new configuration)."""
    global _service, _cold, _init_ms
    _service, _cold, _init_ms = None, True, None
    loader.clear_memory()


# Under a Lambda runtime (AWS_LAMBDA_RUNTIME_API is set) the model loads now, before the first
# request, and a failure is an init error naming its cause. Elsewhere (tests, `make invoke`)
# only when the pin MODEL_SHA256 is set, so importing this module stays harmless.
if os.environ.get("AWS_LAMBDA_RUNTIME_API") or os.environ.get("MODEL_SHA256"):
    init()

_DEBUG = debug_enabled()


# ---- dispatch ---------------------------------------------------------------------------------
def lambda_handler(event: Any, context: Any = None) -> dict[str, Any]:
    """The Lambda entry point: every event shape answered in its own shape. Bad input is a
    400 ``VALIDATION_ERROR`` answer, and a fault a 500 (503 while the model cannot load) to an
    HTTP caller.

    Raises:
        InferenceError: a fault, or a batch-wide invalid SQS event, for a caller that is not
            HTTP (direct, batch, SQS): the invocation fails, naming only the request id.
    """
    global _cold
    if _cold:
        _cold = False
        _first_invocation(context)
    kind = Kind.UNKNOWN
    try:  # detection too: a malformed event is a 400, never a stack trace
        kind = events.detect(event)
        if kind is Kind.WARMUP:  # answer at once: the point is only to keep this env warm
            return {"statusCode": 200, "warm": True, "model": _identity()}
        if kind is Kind.UNKNOWN:
            raise ValidationError([UNRECOGNISED], "unrecognised event")
        service = _service or init()
        if kind is Kind.DIRECT:
            answer = _one(service, event, context)
            return {"statusCode": 200, "model": service.identity, "prediction": answer}
        if kind is Kind.BATCH:
            return {"statusCode": 200, "model": service.identity, **_batch(service, event, context)}
        if kind is Kind.SQS:
            return _sqs(service, event, context)
        return _http(service, kind, event, context)
    except ValidationError as exc:
        return _validation_error(kind, exc, event, context)
    except Exception:
        return _fault(kind, event, context)


def _first_invocation(context: Any) -> None:
    try:
        name = _service.model.name if _service else None
        publish_cold_start(context, name, _init_ms)
    except Exception:  # metrics must never fail a request
        logger.exception("could not publish cold-start metrics")


def _identity() -> dict[str, Any] | None:
    return _service.identity if _service else None


# ---- event families ---------------------------------------------------------------------------
def _one(service: Service, record: Any, context: Any) -> dict[str, Any]:
    device, row = service.validator.single(record)
    answered = service.answered([row], [device])
    answer = answered.answers[0]
    if _DEBUG:
        logger.debug("prediction", extra={"answer": answer})
    service.report(answered, [record], context)
    return answer


def _batch(service: Service, body: dict[str, Any], context: Any) -> dict[str, Any]:
    if len(body) != 1:
        extra = sorted(str(k) for k in body if k != "records")
        # An empty key is named "" as validation names it (a field name must be readable).
        raise ValidationError([problem(k or '""', "unknown field") for k in extra])
    records = body["records"]
    answered = service.answered_batch(records)
    service.report(answered, records, context)
    return {"predictions": answered.answers}


def _http(service: Service, kind: Kind, event: dict[str, Any], context: Any) -> dict[str, Any]:
    body = events.http_json(kind, event)
    if type(body) is not dict:  # named as the body it is, not as the event around it
        raise ValidationError([problem("body", f"must be a JSON object, not {json_type(body)}")])
    if "records" in body:
        payload = {"model": service.identity, **_batch(service, body, context)}
    else:
        payload = {"model": service.identity, "prediction": _one(service, body, context)}
    return events.http_response(kind, event, 200, payload, _request_id(context))


def _sqs(service: Service, event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Valid messages are predicted in one call; the invalid ones are reported back to SQS.

    A record that cannot be named in ``batchItemFailures`` raises ValidationError before
    anything is predicted (see events.sqs_messages): the whole invocation then fails.
    """
    failures: list[dict[str, str]] = []
    ids, devices, rows, bodies = [], [], [], []
    for message_id, record in events.sqs_messages(event):
        try:
            body = events.parse_json(events.sqs_body(record), "body")
            device, row = service.validator.single(body)
        except ValidationError as exc:
            logger.warning(
                "invalid SQS message", extra={"messageId": message_id, "details": exc.details}
            )
            failures.append({"itemIdentifier": message_id})
            continue
        except Exception:  # a fault reading this one message: SQS retries it alone
            logger.exception(
                "SQS message failed",
                extra={"messageId": message_id, "requestId": _request_id(context)},
            )
            count_error(FAULT_METRIC)
            failures.append({"itemIdentifier": message_id})
            continue
        ids.append(message_id)
        devices.append(device)
        rows.append(row)
        bodies.append(body)
    if rows:
        try:
            answered = service.answered(rows, devices)
        except Exception:
            logger.exception(
                "SQS batch inference failed", extra={"requestId": _request_id(context)}
            )
            count_error(FAULT_METRIC)
            return {"batchItemFailures": failures + [{"itemIdentifier": i} for i in ids]}
        # The answers go to the log as one structured line (async callers read them there).
        answers = answered.answers
        logger.info(
            "sqs predictions",
            extra={
                "predictions": [{"messageId": i, **a} for i, a in zip(ids, answers, strict=True)]
            },
        )
        service.report(answered, bodies, context)
    return {"batchItemFailures": failures}


# ---- errors -----------------------------------------------------------------------------------
class InferenceError(Exception):
    """A fault answering a direct, batch or SQS invocation: raised so Lambda counts it failed.

    Async invokes are then retried and finally reach the on-failure destination, SQS returns
    the whole batch to the queue, and the Errors metric counts it. The message carries only
    the code and the request id; the cause is logged under that id.
    """

    def __init__(self, request_id: str) -> None:
        super().__init__(f"{INFERENCE_ERROR} requestId={request_id}")
        self.request_id = request_id


def _request_id(context: Any) -> str:
    return getattr(context, "aws_request_id", None) or f"local-{uuid.uuid4()}"


def _validation_payload(exc: ValidationError) -> dict[str, Any]:
    error: dict[str, Any] = {
        "code": VALIDATION_ERROR,
        "message": exc.message,
        "details": exc.details,
    }
    if exc.total > len(exc.details):
        error["omitted"] = exc.total - len(exc.details)
    return {"error": error, "model": _identity()}


def _validation_error(kind: Kind, exc: ValidationError, event: Any, context: Any) -> dict[str, Any]:
    """A 400 in the event's own shape. Direct and batch answer it too (not raised): an invalid
    async event is not retried, because retrying cannot make it valid."""
    count_error(INVALID_METRIC)
    if kind is Kind.SQS:
        # Per-message problems are item failures and never get here; only a record that cannot
        # be named does. Failing the invocation keeps every message in the queue (retried, then
        # dead-lettered), where any answer returned would let SQS delete that record.
        request_id = _request_id(context)
        logger.error(
            "SQS batch failed whole: a record has no messageId to report it by",
            extra={"requestId": request_id, "details": exc.details},
        )
        raise InferenceError(request_id) from None
    if kind in HTTP_KINDS:
        request_id = _request_id(context)
        return events.http_response(kind, event, 400, _validation_payload(exc), request_id)
    return {"statusCode": 400, **_validation_payload(exc)}


def _fault(kind: Kind, event: Any, context: Any) -> dict[str, Any]:
    """Call from an ``except`` block. HTTP kinds answer 500 (503 when the model cannot load) in
    their proxy shape; every other kind raises InferenceError so the invocation fails."""
    request_id = _request_id(context)
    # The cause goes to the log under this request id; the caller learns nothing internal.
    logger.exception("inference failed", extra={"requestId": request_id, "kind": str(kind)})
    count_error(FAULT_METRIC)
    if kind not in HTTP_KINDS:
        raise InferenceError(request_id) from None
    unavailable = isinstance(sys.exc_info()[1], InitError)
    payload = {
        "error": {
            "code": INFERENCE_ERROR,
            "message": "model unavailable" if unavailable else "inference failed",
            "requestId": request_id,
        },
        "model": _identity(),
    }
    return events.http_response(kind, event, 503 if unavailable else 500, payload, request_id)
