"""The names the scheduled drift job shares with the CDK app that runs and watches it
(infra/waterml_infra/constructs/drift_job.py): its entry point, its environment, its metrics.
Each side imports them from here. Import-light on purpose: the CDK app imports it."""

from __future__ import annotations

# ---- the image's CMD and the job's environment ----------------------------------------------
JOB_HANDLER = "monitoring.job.handler"
LOG_BUCKET = "LOG_BUCKET"  # the bucket of the sampled prediction log and the reports
LOG_PREFIX = "LOG_PREFIX"  # where Firehose delivers the log (it adds YYYY/MM/DD/HH/)
REPORT_PREFIX = "REPORT_PREFIX"  # where each run writes <time>/report.html and summary.json
WINDOW_DAYS = "WINDOW_DAYS"  # the days of log one report reads
DEFAULT_WINDOW_DAYS = 7
# The prediction records in the function's log group (monitoring.log.KIND).
PREDICTION_FILTER = '{ $.message.kind = "prediction" }'

# ---- metrics: one EMF document per run, dimension `model` --------------------------------------
NAMESPACE = "WaterML/Monitoring"
MODEL_DIMENSION = "model"
RECORDS = "DriftRecords"  # records in the window
DATA_DRIFT = "DataDrift"  # 1 when the data drift section alarmed
OUT_OF_DOMAIN = "OutOfDomainTraffic"  # 1 when more readings are outside than training explains
OUT_OF_DOMAIN_SHARE = "OutOfDomainShare"  # the share of readings not inside the domain
ESTIMATED_LOSS = "EstimatedPerformanceLoss"  # 1 when the estimate is worse than held-out
ESTIMATED_PREFIX = "Estimated."  # the estimated primary metric, e.g. Estimated.rmse
