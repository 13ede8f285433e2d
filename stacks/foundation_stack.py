"""Network, artifact storage and the two roles: what both the training and the serving side stand on."""

from __future__ import annotations

from typing import Any

from aws_cdk import ArnFormat, CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.images import registry_account, repository_name
from stacks.secure_defaults import SECURE_BUCKET, log_group
from stacks.settings import Settings

# Where the inference stack puts the archives the endpoint serves (stacks/inference_stack.py): the only
# artifact objects the endpoint may read.
SERVING_ARCHIVES = "serving"
# ECR actions that pulling an image needs, granted on the DLC registry's repositories only.
ECR_PULL_ACTIONS = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]


class FoundationStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, settings: Settings, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.settings = settings
        self.vpc = self._vpc()
        self.access_logs_bucket, self.artifact_bucket = self._buckets()
        self.training_log_group, self.endpoint_log_group = self._run_log_groups()
        self.instance_role = self._instance_role()
        self.endpoint_role = self._endpoint_role()
        CfnOutput(self, "ArtifactBucketName", value=self.artifact_bucket.bucket_name)
        CfnOutput(self, "TrainingLogGroup", value=self.training_log_group.log_group_name)
        self._export_what_either_mode_imports()

    def _vpc(self) -> ec2.Vpc:
        """Two AZs; the instance sits in a private subnet and reaches S3 through a gateway endpoint."""
        vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            nat_gateways=1,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                ec2.SubnetConfiguration(name="private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=20),
            ],
            gateway_endpoints={"S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3)},
        )
        self.flow_log_group = log_group(self, "FlowLogGroup", self.settings.log_retention_days)
        flow_log = vpc.add_flow_log(
            "FlowLogs",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(self.flow_log_group),
            traffic_type=ec2.FlowLogTrafficType.ALL,
        )
        # The flow log only references its role: without this it can start delivering before the
        # role's policy on the log group exists, and report an access error.
        delivery_policy = flow_log.node.find_child("IAMRole").node.find_child("DefaultPolicy")
        flow_log.node.find_child("FlowLog").node.add_dependency(delivery_policy)
        return vpc

    def _buckets(self) -> tuple[s3.Bucket, s3.Bucket]:
        """Artifact bucket (models, checkpoints, metrics) and the bucket its access logs go to."""
        keep = not self.settings.delete_bucket_on_destroy
        lifecycle: dict[str, Any] = {
            "removal_policy": RemovalPolicy.RETAIN if keep else RemovalPolicy.DESTROY,
            "auto_delete_objects": not keep,
        }
        access_logs = s3.Bucket(
            self,
            "AccessLogsBucket",
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(365))],
            **SECURE_BUCKET,
            **lifecycle,
        )
        artifacts = s3.Bucket(
            self,
            "ArtifactBucket",
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix="artifact-bucket/",
            lifecycle_rules=[
                s3.LifecycleRule(noncurrent_version_expiration=Duration.days(30)),
                s3.LifecycleRule(abort_incomplete_multipart_upload_after=Duration.days(1)),
            ],
            **SECURE_BUCKET,
            **lifecycle,
        )
        if keep:
            # Without this the policies go with the stack: the kept artifact bucket would then accept
            # plain HTTP, and S3 could no longer deliver its access logs into the kept log bucket.
            for bucket in (access_logs, artifacts):
                assert bucket.policy is not None  # enforce_ssl made one
                bucket.policy.apply_removal_policy(RemovalPolicy.RETAIN)
        else:
            # Emptying the log bucket waits until the artifact bucket, whose requests it logs, is gone.
            access_logs.node.find_child("AutoDeleteObjectsCustomResource").node.add_dependency(artifacts)
        return access_logs, artifacts

    def _run_log_groups(self) -> tuple[logs.LogGroup, logs.LogGroup]:
        """The training instance's and the endpoint's logs live here, not in the stacks that write them: a
        failed first create of those stacks rolls back everything it made, and the logs of why it failed
        would go with it. This stack stays; `cdk destroy` still deletes both groups."""
        retention = self.settings.log_retention_days
        training = log_group(self, "TrainingLogs", retention)
        # SageMaker would create this group itself, without retention, and leave it after destroy.
        endpoint = log_group(self, "EndpointLogs", retention, name=self.settings.endpoint_log_group_name)
        return training, endpoint

    def _instance_role(self) -> iam.Role:
        """The recipe's `ec2_role`: Session Manager and the training image; S3 and logs come per run."""
        role = iam.Role(
            self,
            "InstanceRole",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description="Training instance (the recipe's ec2_role)",
            managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name("AmazonSSMManagedInstanceCore")],
        )
        self._allow_image_pull(role, self.settings.training_image)
        return role

    def _endpoint_role(self) -> iam.Role:
        """The recipe's `sagemakerrole`: the serving archives, the inference image, the endpoint's logs."""
        role = iam.Role(
            self,
            "EndpointRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="SageMaker endpoint (the recipe's sagemakerrole)",
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"], resources=[self.artifact_bucket.arn_for_objects(f"{SERVING_ARCHIVES}/*")]
            )
        )
        self._allow_image_pull(role, self.settings.inference_image)
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                resources=[
                    self.format_arn(
                        service="logs",
                        resource="log-group",
                        resource_name=f"{self.settings.endpoint_log_group_name}:*",
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                ],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": ["/aws/sagemaker/Endpoints"]}},
            )
        )
        return role

    def _export_what_either_mode_imports(self) -> None:
        """CDK exports only what this synth's other stacks import, and training mode imports other values
        than modelDataUrl mode; CloudFormation refuses to remove an export a deployed stack still imports
        ("Cannot delete export ... as it is in use"). So the union is exported in both modes, under the
        names CDK gives its own exports."""
        for value in (
            self.vpc.vpc_id,
            *(subnet.subnet_id for subnet in self.vpc.private_subnets),
            self.artifact_bucket.bucket_name,
            self.artifact_bucket.bucket_arn,
            self.instance_role.role_name,
            self.training_log_group.log_group_name,
            self.training_log_group.log_group_arn,
            self.endpoint_role.role_name,
            self.endpoint_role.role_arn,
        ):
            self.export_value(value)

    def _allow_image_pull(self, role: iam.Role, image_uri: str) -> None:
        role.add_to_policy(
            iam.PolicyStatement(
                actions=ECR_PULL_ACTIONS,
                resources=[
                    self.format_arn(
                        service="ecr",
                        account=registry_account(image_uri),
                        resource="repository",
                        resource_name=repository_name(image_uri),
                    )
                ],
            )
        )
        role.add_to_policy(iam.PolicyStatement(actions=["ecr:GetAuthorizationToken"], resources=["*"]))
