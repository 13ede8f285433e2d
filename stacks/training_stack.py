"""The GPU instance(s) that train one run, and the WaitCondition that deploy blocks on until the model exists.

Everything that belongs to a run lives under a construct named after its run id, so a new run id
replaces the instances and the WaitCondition (a fresh handle, a fresh wait) while the foundation stays.
With trainingInstanceCount above 1 the run is a cluster of instances (stacks/training_cluster.py).

The instances, and the AMI id they boot, live one level further down, under a construct named after
the run's instance settings (`instance_settings_id`). The AMI id is read once, when that construct is
created (functions/dlami.py), so a later deploy of the same run and settings changes nothing, whatever
DLAMI AWS has released since; a change of those settings creates new instances instead of updating
(or failing to update) ones that have already terminated themselves.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from aws_cdk import CfnOutput, CfnWaitCondition, CfnWaitConditionHandle, CustomResource, Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from stacks.foundation_stack import FoundationStack
from stacks.functions import python_function
from stacks.instance_types import GPU_INSTANCE_TYPES
from stacks.s3_object import S3Object
from stacks.secure_defaults import egress_only_security_group
from stacks.settings import Settings
from stacks.training_cluster import NodePlacement, TrainingCluster
from stacks.user_data import render_user_data

# Folders shipped to the instance as zip assets; the docker build context holds all three.
ASSET_FOLDERS = ("training", "inference", "docker")
ASSET_EXCLUDES = ["__pycache__", "*.pyc", ".mypy_cache", ".ruff_cache"]
# Of inference/, the instance gets only the endpoint's pins, whose wheels it packages: the handler reaches the
# endpoint through the inference stack, so that editing it changes neither the user data nor the instance.
INSTANCE_FILES = {"inference": ("requirements.txt", "requirements.lock")}
ROOT_DEVICE = "/dev/sda1"  # Ubuntu DLAMI root device
RESOLVER_TIMEOUT = Duration.minutes(2)  # how long a deploy waits for the AMI read (one SSM call) to answer


def instance_settings_id(settings: Settings) -> str:
    """Short and stable, and different for any change of the settings that an existing instance cannot
    take on: type, count and root volume. Not the DLAMI parameter: the AMI is fixed per run."""
    fields = (settings.training_instance_type, str(settings.training_instance_count), str(settings.root_volume_size))
    return hashlib.sha256("\0".join(fields).encode()).hexdigest()[:8]


class TrainingStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        foundation: FoundationStack,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.settings = settings
        self.foundation = foundation
        bucket = foundation.artifact_bucket.bucket_name
        self.model_key = f"{settings.run_prefix}/model.tar.gz"
        self.model_data_url = f"s3://{bucket}/{self.model_key}"
        self.log_group = foundation.training_log_group
        run = Construct(self, f"Run-{settings.run_id}")
        self.assets = {name: self._asset(run, name) for name in ASSET_FOLDERS}
        self.run_policy = self._run_policy(run, self.assets)
        self.wait_handle = CfnWaitConditionHandle(run, "ModelReadyHandle")
        instances = Construct(run, f"Instances-{instance_settings_id(settings)}")
        self.image_resolver = self._image_resolver()
        self.image_id = self._run_image(instances)
        self.cluster: TrainingCluster | None = None
        if settings.training_instance_count == 1:
            self.instances = [self._instance(instances, "TrainingInstance", self._single_placement())]
        else:
            self.cluster = TrainingCluster(
                instances,
                "Cluster",
                vpc=foundation.vpc,
                nodes=settings.training_instance_count,
                efa_interfaces=GPU_INSTANCE_TYPES[settings.training_instance_type].efa_interfaces,
                node=self._instance,
            )
            self.instances = self.cluster.nodes
        self.wait_condition = CfnWaitCondition(
            run,
            "ModelReady",
            count=1,
            handle=self.wait_handle.ref,
            timeout=str(settings.wait_timeout_minutes * 60),
        )
        self.wait_condition.node.add_dependency(*self.instances)
        CfnOutput(self, "ModelDataUrl", value=self.model_data_url)
        CfnOutput(self, "TrainingInstanceId", value=self.instances[0].instance_id)

    def _image_resolver(self) -> lambda_.Function:
        """One function for the stack; it may read the configured DLAMI parameter only."""
        parameter = self.settings.dlami_ssm_parameter
        return python_function(
            self,
            "DlamiResolver",
            handler="dlami.handler",
            description="Reads the DLAMI's public SSM parameter once per training run",
            statements=[
                iam.PolicyStatement(
                    actions=["ssm:GetParameter"],
                    resources=[f"arn:{self.partition}:ssm:{self.region}::parameter{parameter}"],
                )
            ],
            retention_days=self.settings.log_retention_days,
            timeout=Duration.minutes(1),
        )

    def _run_image(self, scope: Construct) -> str:
        """The DLAMI's image id as the run's instances first saw it (functions/dlami.py says why)."""
        image = CustomResource(
            scope,
            "Dlami",
            service_token=self.image_resolver.function_arn,
            resource_type="Custom::RunDlami",
            properties={"ParameterName": self.settings.dlami_ssm_parameter},
            service_timeout=RESOLVER_TIMEOUT,  # not CloudFormation's hour, should the function never answer
        )
        return image.get_att_string("ImageId")

    def _asset(self, scope: Construct, folder: str) -> s3_assets.Asset:
        only = INSTANCE_FILES.get(folder)
        exclude = ["*", *(f"!{name}" for name in only)] if only else ASSET_EXCLUDES
        # Resolved here, in the app's working directory: CDK's node process resolves a relative path in its own.
        path = str(Path(folder).resolve())
        return s3_assets.Asset(scope, f"{folder.capitalize()}Asset", path=path, exclude=exclude)

    def _run_policy(self, scope: Construct, assets: dict[str, s3_assets.Asset]) -> iam.Policy:
        """The instance may read its code assets and the user's data files, write its log group and
        read/write only this run's prefix."""
        bucket = self.foundation.artifact_bucket
        run_prefix = self.settings.run_prefix
        asset_arns = [S3Object(asset.s3_bucket_name, asset.s3_object_key).arn(self) for asset in assets.values()]
        return iam.Policy(
            scope,
            "RunAccess",
            roles=[self.foundation.instance_role],
            statements=[
                iam.PolicyStatement(actions=["s3:GetObject"], resources=asset_arns),
                iam.PolicyStatement(
                    actions=["s3:GetObject", "s3:PutObject"],
                    resources=[bucket.arn_for_objects(f"{run_prefix}/*")],
                ),
                iam.PolicyStatement(
                    actions=["s3:ListBucket"],
                    resources=[bucket.bucket_arn],
                    conditions={"StringLike": {"s3:prefix": [f"{run_prefix}/*", run_prefix]}},
                ),
                iam.PolicyStatement(
                    actions=["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                    resources=[self.log_group.log_group_arn],
                ),
                *self._data_access(),
            ],
        )

    def _single_placement(self) -> NodePlacement:
        """One instance in any private subnet, in a security group of the stack with no inbound rule."""
        security_group = egress_only_security_group(
            self,
            "InstanceSecurityGroup",
            self.foundation.vpc,
            "Training instance: no inbound rules (Session Manager only), outbound for S3/ECR/hub",
        )
        return NodePlacement(
            subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            security_group=security_group,
            variables={},
        )

    def _data_access(self) -> list[iam.PolicyStatement]:
        """Exactly the user's data objects (no listing: a missing key then reads as 403, not 404), and
        their KMS key only when named, only through S3 in the key's region."""
        objects = [S3Object.from_url(url).arn(self) for url in self.settings.data_urls.values()]
        if not objects:
            return []
        statements = [iam.PolicyStatement(actions=["s3:GetObject"], resources=objects)]
        key_arn = self.settings.data_kms_key_arn
        if key_arn:
            partition, region = key_arn.split(":")[1], key_arn.split(":")[3]
            domain = "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com"
            statements.append(
                iam.PolicyStatement(
                    actions=["kms:Decrypt"],
                    resources=[key_arn],
                    conditions={"StringEquals": {"kms:ViaService": f"s3.{region}.{domain}"}},
                )
            )
        return statements

    def _instance(self, scope: Construct, construct_id: str, placement: NodePlacement) -> ec2.Instance:
        settings = self.settings
        instance = ec2.Instance(
            scope,
            construct_id,
            vpc=self.foundation.vpc,
            vpc_subnets=placement.subnets,
            instance_type=ec2.InstanceType(settings.training_instance_type),
            machine_image=ec2.MachineImage.generic_linux({self.region: self.image_id}),
            role=self.foundation.instance_role,
            security_group=placement.security_group,
            placement_group=placement.placement_group,
            require_imdsv2=not placement.own_launch_template,
            detailed_monitoring=True,
            instance_initiated_shutdown_behavior=ec2.InstanceInitiatedShutdownBehavior.TERMINATE,
            block_devices=[
                ec2.BlockDevice(
                    device_name=ROOT_DEVICE,
                    volume=ec2.BlockDeviceVolume.ebs(
                        settings.root_volume_size,
                        volume_type=ec2.EbsDeviceVolumeType.GP3,
                        encrypted=True,
                        delete_on_termination=True,
                    ),
                )
            ],
            user_data=ec2.UserData.custom(render_user_data({**self._bootstrap_variables(), **placement.variables})),
            user_data_causes_replacement=True,
        )
        # The policy must exist before the instance boots and starts reading its assets.
        instance.node.add_dependency(self.run_policy)
        return instance

    def _bootstrap_variables(self) -> dict[str, str]:
        settings = self.settings
        run_url = f"s3://{self.foundation.artifact_bucket.bucket_name}/{settings.run_prefix}"
        return {
            "AWS_REGION": self.region,
            "RUN_ID": settings.run_id,
            "ARTIFACT_BUCKET": self.foundation.artifact_bucket.bucket_name,
            "MODEL_S3_URI": self.model_data_url,
            "METRICS_S3_URI": f"{run_url}/metrics.json",
            "CHECKPOINT_S3_URI": f"{run_url}/checkpoints",
            **{f"{name.upper()}_ASSET_S3_URI": asset.s3_object_url for name, asset in self.assets.items()},
            "TRAINING_IMAGE_URI": settings.training_image,
            "WAIT_HANDLE_URL": self.wait_handle.ref,
            "LOG_GROUP_NAME": self.log_group.log_group_name,
            "METRICS_NAMESPACE": settings.metrics_namespace,
            "TRAIN_ARGS": settings.train_args,
            **{f"{split.upper()}_DATA_S3_URI": url for split, url in settings.data_urls.items()},
            "LABELS": settings.labels,
            "KEEP_INSTANCE_ON_FAILURE": str(settings.keep_instance_on_failure).lower(),
            "MAX_RUNTIME_MINUTES": str(settings.wait_timeout_minutes),
        }
