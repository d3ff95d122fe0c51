"""The names the serving side shares with what deploys and watches it: one home for each.

The CDK app (infra/) sets these environment variables, points the image's CMD at these entry
points, names this alias, and reads these metrics in its alarms and dashboards; the handler
and the pre-traffic hook read and emit them. Each side imports the name from here (infra may
import ``inference``; ``inference`` imports nothing from infra), so neither can spell it
differently. tests/infra/test_metric_contract.py runs the real handler beside the synthesized
templates: every metric an alarm or a widget reads is one the handler emits.

Import-light on purpose (no Powertools, no numpy): the CDK app and the CI scripts import it.
"""

from __future__ import annotations

# ---- entry points (the image's CMD) -----------------------------------------------------------
HANDLER = "inference.handler.lambda_handler"
PRETRAFFIC_HANDLER = "inference.pretraffic.handler"

# ---- the alias CodeDeploy shifts, the hook checks and `status` reads --------------------------
LIVE_ALIAS = "live"

# ---- environment variables --------------------------------------------------------------------
# The function's (the MODEL_* pins are inference.release.PINS; optional tuning in config.py).
LOG_LEVEL = "POWERTOOLS_LOG_LEVEL"
SERVICE_NAME = "POWERTOOLS_SERVICE_NAME"  # the `service` dimension of the fault metric
PREDICTION_LOG_RATE = "PREDICTION_LOG_RATE"
# The pre-traffic hook's.
TARGET_FUNCTION = "TARGET_FUNCTION"
MODEL_NAME = "MODEL_NAME"
RELEASE_BUCKET = "RELEASE_BUCKET"
RELEASE_KEY = "RELEASE_KEY"
HOOK_SETTINGS = (TARGET_FUNCTION, MODEL_NAME, RELEASE_BUCKET, RELEASE_KEY)

# ---- metrics (CloudWatch embedded metric format) ----------------------------------------------
METRIC_NAMESPACE = "WaterML"
# Per invocation that answered readings (observability.AnswerMetrics): exactly these dimensions.
MODEL_DIMENSION = "model"
MODEL_VERSION_DIMENSION = "model_version"
# Per error (observability.count_error): the `service` dimension only, the function's name.
SERVICE_DIMENSION = "service"
FAULT_METRIC = "InferenceError"  # a request the handler could not answer (5xx, or raised)
INVALID_METRIC = "ValidationError"  # a request refused as invalid (4xx)


def log_group(function_name: str) -> str:
    """The log group a function writes to (Lambda's default name, which infra creates with a
    retention, and where the prediction log and the hook's verdict are read)."""
    return f"/aws/lambda/{function_name}"
