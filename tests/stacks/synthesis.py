"""Synthesizes the app for a context and hands tests its templates."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Template

from stacks.app_builder import Application

# A non-default deployment: every value differs from cdk.json, so tests can tell settings are applied.
CUSTOM_CONTEXT = {
    "prefix": "team2",
    "region": "eu-west-1",
    "trainingInstanceType": "g5.12xlarge",
    "rootVolumeSize": "300",
    "waitTimeoutMinutes": "60",
    "endpointInstanceType": "ml.c7g.2xlarge",
    "endpointInstanceCount": "2",
    "inferenceMode": "bf16",
    "autoscalingMinCapacity": "2",
    "autoscalingMaxCapacity": "4",
    "runId": "exp-42",
    "logRetentionDays": "7",
    "imagePair": "recipe",
    "deleteBucketOnDestroy": "true",
    "keepInstanceOnFailure": "true",
    "alarmEmail": "ml-oncall@example.com",
    "trainDataUrl": "s3://team2-texts/sentiment/train.csv",
    "validationDataUrl": "s3://team2-texts/sentiment/validation.jsonl",
    "testDataUrl": "s3://team2-held-out/sentiment/test.parquet",
    "labels": "complaint,question,praise,other,urgent",
    "dataKmsKeyArn": "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
}
EXISTING_MODEL = "s3://someone-elses-models/roberta/model.tar.gz"
# Training clusters: two of the default p4d.24xlarge (4 EFA each), four p5.48xlarge (32 EFA each).
CLUSTER_CONTEXT = {"trainingInstanceCount": "2"}
P5_CLUSTER_CONTEXT = {"trainingInstanceCount": "4", "trainingInstanceType": "p5.48xlarge", "runId": "big-1"}


@dataclass
class Synthesized:
    application: Application
    outdir: Path

    def template(self, stack_suffix: str) -> Template:
        return Template.from_json(self.template_json(stack_suffix))

    def template_json(self, stack_suffix: str) -> dict[str, Any]:
        name = f"{self.application.settings.prefix}-{stack_suffix}"
        return json.loads((self.outdir / f"{name}.template.json").read_text())

    @property
    def manifest(self) -> dict[str, Any]:
        return json.loads((self.outdir / "manifest.json").read_text())


def synthesize(tmp_path_factory: pytest.TempPathFactory, context: dict[str, Any] | None = None) -> Synthesized:
    outdir = tmp_path_factory.mktemp("cdk.out")
    application = Application(context=context, outdir=str(outdir))
    application.app.synth()
    return Synthesized(application, outdir)
