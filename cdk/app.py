#!/usr/bin/env python3
"""CDK entry point: `cd cdk && npx aws-cdk@2 synth` (cdk.json runs this with the repo's venv)."""

from healthflow_infra.app_factory import build_app

app, _stack = build_app()
app.synth()
