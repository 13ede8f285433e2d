"""Assembles the three stacks from validated settings and attaches the security checks."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from stacks.foundation_stack import FoundationStack
from stacks.inference_stack import InferenceStack
from stacks.s3_object import S3Object
from stacks.security_acknowledgements import acknowledge_findings
from stacks.settings import Settings, reject_unknown_context
from stacks.training_stack import TrainingStack

# Behaviour the stacks rely on; set here, not in cdk.json, so tests and `python app.py` get it too.
FEATURE_FLAGS = {
    "@aws-cdk/core:defaultCrossStackReferences": "strong",
    "@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy": True,
    "@aws-cdk/aws-ec2:uniqueImdsv2TemplateName": True,
    "@aws-cdk/aws-iam:minimizePolicies": True,
    "@aws-cdk/core:enablePartitionLiterals": True,
}


class Application:
    """The app and its stacks; `training` is None when the endpoint serves an existing model."""

    def __init__(self, context: dict[str, Any] | None = None, outdir: str | None = None) -> None:
        self.app = cdk.App(context={**FEATURE_FLAGS, **(context or {})}, outdir=outdir)
        reject_unknown_context(self.app.node.get_all_context())
        self.settings = Settings.from_context(self.app.node.try_get_context)
        env = cdk.Environment(region=self.settings.region)
        prefix = self.settings.prefix
        self.foundation = FoundationStack(
            self.app,
            f"{prefix}-foundation",
            settings=self.settings,
            env=env,
            description="PyTorch 2 on AWS: VPC, artifact bucket, instance and endpoint roles",
        )
        self.training: TrainingStack | None = None
        if self.settings.trains:
            self.training = TrainingStack(
                self.app,
                f"{prefix}-training",
                settings=self.settings,
                foundation=self.foundation,
                env=env,
                description="PyTorch 2 on AWS: GPU instance that fine-tunes RoBERTa and uploads model.tar.gz",
            )
            source_archive = S3Object(self.foundation.artifact_bucket.bucket_name, self.training.model_key)
        else:
            source_archive = S3Object.from_url(self.settings.model_data_url)
        self.inference = InferenceStack(
            self.app,
            f"{prefix}-inference",
            settings=self.settings,
            foundation=self.foundation,
            source_archive=source_archive,
            env=env,
            description="PyTorch 2 on AWS: SageMaker endpoint on Graviton serving the model",
        )
        if self.training is not None:
            self.inference.add_stack_dependency(self.training, "the endpoint is created once the model exists")
        self._warn_about_image_pair()
        self._warn_about_kept_instances()
        acknowledge_findings(self)
        cdk.Validations.of(self.app).add_plugins(AwsSolutionsChecks(self.app))

    @property
    def stacks(self) -> list[cdk.Stack]:
        return [stack for stack in (self.foundation, self.training, self.inference) if stack is not None]

    def _warn_about_image_pair(self) -> None:
        if self.settings.image_pair != "current":
            cdk.Annotations.of(self.inference).add_warning_v2("pt2:image-pair", self.settings.images.note)

    def _warn_about_kept_instances(self) -> None:
        """A rollback terminates the instance that keepInstanceOnFailure keeps; only the CLI can skip it."""
        if self.training is not None and self.settings.keep_instance_on_failure:
            cdk.Annotations.of(self.training).add_warning_v2(
                "pt2:keep-instance",
                "keepInstanceOnFailure=true keeps a failed instance only if the deploy does not roll back: "
                "make deploy passes --no-rollback; with npx cdk deploy, pass --no-rollback yourself",
            )
