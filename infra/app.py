#!/usr/bin/env python3
"""CDK entry point (`cdk synth` / `cdk deploy` run it from infra/; see waterml_infra.app)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from waterml_infra.app import build, make_app

app = make_app()
build(app)
app.synth()
