"""Where a spec's data is loaded, validated and trained on (``[train] engine``).

``pandas`` (the default) runs in this process: training/pipeline.py ``train``. ``spark`` runs
on a Spark cluster: training/engines/spark.py. Both hand the same ``pipeline.Trained`` to the
evaluate, bundle and register stages, so promotion and serving do not change.
"""
