#!/usr/bin/env python3
"""CDK entry point (`cdk synth` / `cdk deploy` run it from infra/; see waterml_infra.app)."""

from __future__ import annotations

import sys
from pathlib import Path

# The CDK CLI runs this from infra/ (cdk.json "app"); waterml_infra imports the release-manifest
# contract from registry/ (registry/manifest.py) at the repo root, which is not on sys.path then.
# Putting it there in this file, not via PYTHONPATH in cdk.json's "app" command, works however
# the app is started (`cdk synth`, `python infra/app.py`, an IDE), on any shell, and does not
# clobber a PYTHONPATH the caller set.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root: registry
sys.path.insert(0, str(Path(__file__).resolve().parent))  # infra/: waterml_infra, searched first

from waterml_infra.app import build, make_app

app = make_app()
build(app)
app.synth()
