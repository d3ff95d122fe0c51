"""Where a spec's data is loaded, validated and trained on (``[train] engine``).

``pandas`` (the default) runs in this process (training/engines/pandas.py); ``spark`` on a
Spark cluster (training/engines/spark.py). Both build on training/engines/base.py and hand the
same ``base.Trained`` to the evaluate, bundle and register stages (training/pipeline.py), so
promotion and serving do not change.
"""

from __future__ import annotations

from training.engines.base import Trained
from training.spec import ModelSpec


def train(spec: ModelSpec) -> Trained:
    """The load, validate and train stages of the spec's engine.

    Raises:
        DataError: the data cannot be read, or its bytes are not the ones the spec pins.
        ValidationFailed: the data does not meet its suite.
        SpecError: the spec cannot run on its engine (Spark: no pyspark, no Java).
    """
    if spec.engine == "spark":  # imported only here: the spark dependency group is optional
        from training.engines import spark

        return spark.train(spec)
    from training.engines import pandas

    return pandas.train(spec)
