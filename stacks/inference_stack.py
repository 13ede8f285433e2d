"""The SageMaker endpoint on Graviton that serves the trained model.tar.gz, with autoscaling, alarms and a dashboard.

The endpoint serves the *serving archive*: the run's archive (or the user's `modelDataUrl`) with this
checkout's handler, inference/inference.py, put in by the serving-archive function
(functions/serving_archive.py) under a key named by the handler's hash. A handler edit is therefore a
change of this stack alone: a new serving archive, Model and endpoint config, and no training instance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import CfnOutput, CustomResource, Duration, Stack
from aws_cdk import aws_applicationautoscaling as autoscaling
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from stacks.foundation_stack import SERVING_ARCHIVES, FoundationStack
from stacks.functions import python_function
from stacks.monitoring import Monitoring
from stacks.s3_object import S3Object
from stacks.secure_defaults import encryption_key
from stacks.settings import Settings

VARIANT = "AllTraffic"
# vCPUs per size suffix of the ml.* instance types the endpoint may use.
VCPUS_BY_SIZE = {"medium": 1, "large": 2, "xlarge": 4}
THREADS_PER_WORKER = 4
# A container that has not answered /ping with 200 by then fails the deployment (and CloudFormation
# rolls back). A cold start here is under a minute: the wheels install offline, the model loads once
# per worker, and a model that cannot load is not retried (training/package.py).
STARTUP_HEALTH_CHECK_SECONDS = 600
INVOCATIONS_PER_INSTANCE_TARGET = 600.0  # per minute; ~10 rps per instance, well under its capacity
HANDLER = Path("inference") / "inference.py"  # from the project root, as the training stack's assets
# Rewriting a roberta-base archive (~0.7 GB: weights, the int8 graph, the wheels) is gzip at level 9, on one
# core: ~30 s on the full vCPU that 2 GB of memory buys (256 MiB took 8 s here). /tmp holds the unpacked
# source and the result, ~2.1 times the archive at the peak.
ARCHIVE_BUILD_MINUTES = 15  # Lambda's limit; ample
ARCHIVE_BUILD_MEMORY_MB = 2048
ARCHIVE_BUILD_STORAGE_GIB = 4


def vcpus(instance_type: str) -> int:
    size = instance_type.rsplit(".", 1)[1]
    if size in VCPUS_BY_SIZE:
        return VCPUS_BY_SIZE[size]
    return int(size.removesuffix("xlarge")) * VCPUS_BY_SIZE["xlarge"]


def graviton_environment(instance_type: str) -> dict[str, str]:
    """AWS's PyTorch tuning for Graviton: bf16 fast math in oneDNN, cached primitives, huge pages.

    TorchServe starts one worker per vCPU unless told otherwise; each worker then runs its own
    OMP_NUM_THREADS threads. The vCPUs are split into workers of THREADS_PER_WORKER threads instead,
    so the instance is neither oversubscribed nor left with one worker for every request.

    The worker count reaches TorchServe through the toolkit's SAGEMAKER_TS_MIN/MAX_WORKERS: they become
    the model's own minWorkers/maxWorkers, which outrank default_workers_per_model. That one comes from
    SAGEMAKER_MODEL_SERVER_WORKERS, which a version of the DLC entrypoint overwrites with the CPU count
    (aws/deep-learning-containers 22714d405e); it is set too, for toolkits without the TS variables.
    """
    threads = min(THREADS_PER_WORKER, vcpus(instance_type))
    workers = str(vcpus(instance_type) // threads)
    return {
        "DNNL_DEFAULT_FPMATH_MODE": "BF16",
        "LRU_CACHE_CAPACITY": "1024",
        "THP_MEM_ALLOC_ENABLE": "1",
        "OMP_NUM_THREADS": str(threads),
        "SAGEMAKER_TS_MIN_WORKERS": workers,
        "SAGEMAKER_TS_MAX_WORKERS": workers,
        "SAGEMAKER_MODEL_SERVER_WORKERS": workers,
    }


class InferenceStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        foundation: FoundationStack,
        source_archive: S3Object,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.settings = settings
        self.foundation = foundation
        self.handler_asset = s3_assets.Asset(self, "HandlerAsset", path=str(HANDLER.resolve()))
        serving_key = f"{SERVING_ARCHIVES}/{self.handler_asset.asset_hash}/{source_archive.bucket}/{source_archive.key}"
        self.serving_archive = S3Object(foundation.artifact_bucket.bucket_name, serving_key)
        self.archive_builder = self._archive_builder(source_archive)
        self.model_data_url = self._serving_archive(source_archive)
        self.volume_key = encryption_key(self, "EndpointVolumeKey", "Encrypts the endpoint instances' storage volumes")
        self.model = self._model()
        self.endpoint_config = self._endpoint_config()
        self.endpoint = sagemaker.CfnEndpoint(
            self,
            "Endpoint",
            endpoint_name=settings.endpoint_name,
            endpoint_config_name=self.endpoint_config.attr_endpoint_config_name,
            # A new run's endpoint config keeps the instance count autoscaling has set, not the initial one.
            retain_all_variant_properties=True,
        )
        self._autoscaling()
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            settings=settings,
            endpoint_name=self.endpoint.attr_endpoint_name,
            variant=VARIANT,
            vcpus=vcpus(settings.endpoint_instance_type),
        )
        CfnOutput(self, "EndpointName", value=self.endpoint.attr_endpoint_name)

    def _archive_builder(self, source: S3Object) -> lambda_.Function:
        """Reads exactly the source archive and the handler, writes exactly the serving archive."""
        handler = self.handler_asset
        return python_function(
            self,
            "ServingArchiveBuilder",
            handler="serving_archive.handler",
            description="Puts this deploy's inference handler into the model archive the endpoint serves",
            statements=[
                iam.PolicyStatement(
                    actions=["s3:GetObject"],
                    resources=[source.arn(self), S3Object(handler.s3_bucket_name, handler.s3_object_key).arn(self)],
                ),
                iam.PolicyStatement(actions=["s3:PutObject"], resources=[self.serving_archive.arn(self)]),
            ],
            retention_days=self.settings.log_retention_days,
            timeout=Duration.minutes(ARCHIVE_BUILD_MINUTES),
            memory_size=ARCHIVE_BUILD_MEMORY_MB,
            ephemeral_storage_gib=ARCHIVE_BUILD_STORAGE_GIB,
        )

    def _serving_archive(self, source: S3Object) -> str:
        """Built on create and whenever the handler or the source changes (a new key: the old archive stays
        for a rollback); a deploy that changes neither leaves it alone."""
        archive = CustomResource(
            self,
            "ServingArchive",
            service_token=self.archive_builder.function_arn,
            resource_type="Custom::ServingArchive",
            properties={
                "SourceArchive": source.url,
                "Handler": self.handler_asset.s3_object_url,
                "TargetArchive": self.serving_archive.url,
            },
            service_timeout=Duration.minutes(ARCHIVE_BUILD_MINUTES + 1),  # not CloudFormation's hour
        )
        return archive.get_att_string("ModelDataUrl")

    def _model(self) -> sagemaker.CfnModel:
        """Network isolation: the container can open no connection at all. It needs none: the archive
        carries its wheels (training/wheels.py), and SageMaker fetches the image and the archive and
        ships the logs outside the container. No VpcConfig either: it would only place the container's
        network interfaces, which isolation leaves nothing to carry (invocations reach the endpoint
        through the SageMaker API either way)."""
        model = sagemaker.CfnModel(
            self,
            "Model",
            execution_role_arn=self.foundation.endpoint_role.role_arn,
            primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(
                image=self.settings.inference_image,
                model_data_url=self.model_data_url,
                environment={
                    "SAGEMAKER_PROGRAM": "inference.py",
                    "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
                    "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
                    "SAGEMAKER_REGION": self.region,
                    "INFERENCE_MODE": self.settings.inference_mode,
                    **graviton_environment(self.settings.endpoint_instance_type),
                },
            ),
            enable_network_isolation=True,
        )
        # The role's policy must be in place before SageMaker validates the model against it.
        model.node.add_dependency(self.foundation.endpoint_role)
        return model

    def _endpoint_config(self) -> sagemaker.CfnEndpointConfig:
        return sagemaker.CfnEndpointConfig(
            self,
            "EndpointConfig",
            kms_key_id=self.volume_key.key_arn,
            production_variants=[
                sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                    variant_name=VARIANT,
                    model_name=self.model.attr_model_name,
                    instance_type=self.settings.endpoint_instance_type,
                    initial_instance_count=self.settings.endpoint_instance_count,
                    initial_variant_weight=1.0,
                    container_startup_health_check_timeout_in_seconds=STARTUP_HEALTH_CHECK_SECONDS,
                )
            ],
        )

    def _autoscaling(self) -> None:
        target = autoscaling.ScalableTarget(
            self,
            "ScalableTarget",
            service_namespace=autoscaling.ServiceNamespace.SAGEMAKER,
            resource_id=f"endpoint/{self.endpoint.attr_endpoint_name}/variant/{VARIANT}",
            scalable_dimension="sagemaker:variant:DesiredInstanceCount",
            min_capacity=self.settings.autoscaling_min_capacity,
            max_capacity=self.settings.autoscaling_max_capacity,
        )
        target.scale_to_track_metric(
            "InvocationsPerInstance",
            target_value=INVOCATIONS_PER_INSTANCE_TARGET,
            predefined_metric=autoscaling.PredefinedMetric.SAGEMAKER_VARIANT_INVOCATIONS_PER_INSTANCE,
            scale_in_cooldown=Duration.minutes(5),
            scale_out_cooldown=Duration.minutes(1),
        )
