"""Every security finding this app accepts, in one place, each with the reason for that resource.

cdk-nag findings are acknowledged through `Validations`; checkov skips are written into the resource's
template metadata, where checkov reads them; cfn-lint exceptions into the template's metadata.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import aws_cdk as cdk
from aws_cdk import aws_lambda as lambda_
from aws_cdk.region_info import RegionInfo
from constructs import IConstruct

if TYPE_CHECKING:
    from stacks.app_builder import Application
    from stacks.foundation_stack import FoundationStack
    from stacks.training_stack import TrainingStack


def acknowledge(construct: IConstruct, rule: str, reason: str) -> None:
    cdk.Validations.of(construct).acknowledge(cdk.Acknowledgment(id=f"AwsSolutions-{rule}", reason=reason))


def skip_checkov(construct: IConstruct, check: str, reason: str) -> None:
    resource = construct.node.default_child if isinstance(construct.node.default_child, cdk.CfnResource) else construct
    assert isinstance(resource, cdk.CfnResource), construct.node.path
    metadata = dict(resource.cfn_options.metadata or {})
    skips = metadata.setdefault("checkov", {}).setdefault("skip", [])
    skips.append({"id": check, "comment": reason})
    resource.cfn_options.metadata = metadata


def ignore_cfn_lint(stack: cdk.Stack, rule: str, reason: str) -> None:
    metadata = dict(stack.template_options.metadata or {})
    metadata.setdefault("cfn-lint", {"config": {"ignore_checks": []}})["config"]["ignore_checks"].append(rule)
    metadata.setdefault("cfn-lint-reasons", {})[rule] = reason
    stack.template_options.metadata = metadata


def acknowledge_findings(application: Application) -> None:
    _foundation(application.foundation)
    if application.training is not None:
        _training(application.training)
    _own_function(application.inference.archive_builder)


_LOGS_WITHOUT_CMK = (
    "CloudWatch Logs encrypts every log group at rest with service keys; these logs hold no model or "
    "user data, and a customer key would bill monthly while the app sits idle."
)


def _partition(stack: cdk.Stack) -> str:
    partition = RegionInfo.get(stack.region).partition
    assert partition is not None, stack.region
    return partition


def _foundation(stack: FoundationStack) -> None:
    instance_role, endpoint_role = stack.instance_role, stack.endpoint_role
    acknowledge(
        instance_role,
        "IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/AmazonSSMManagedInstanceCore]",
        "Session Manager is the only way into the training instance (no SSH, no key pair); AWS keeps this "
        "policy to the minimum the SSM agent needs.",
    )
    acknowledge(
        instance_role,
        "IAM5[Resource::*]",
        "ecr:GetAuthorizationToken has no resource-level permissions; image pulls themselves are limited to "
        "the training image's repository in the DLC registry account.",
    )
    acknowledge(
        endpoint_role,
        "IAM5[Resource::*]",
        "ecr:GetAuthorizationToken has no resource-level permissions; cloudwatch:PutMetricData is held to the "
        "/aws/sagemaker/Endpoints namespace by a condition.",
    )
    acknowledge(
        endpoint_role,
        "IAM5[Resource::<ArtifactBucket7410C9EF.Arn>/serving/*]",
        "The endpoint reads the serving archive of whichever run and handler it serves, and nothing else in the "
        "artifact bucket; both are chosen at deploy time, in another stack.",
    )
    acknowledge(
        endpoint_role,
        f"IAM5[Resource::arn:{_partition(stack)}:logs:{stack.region}:<AWS::AccountId>:log-group:"
        f"{stack.settings.endpoint_log_group_name}:*]",
        "The endpoint writes log streams that SageMaker names per instance; access is held to the streams "
        "of this app's own endpoint log group.",
    )
    skip_checkov(
        stack.access_logs_bucket,
        "CKV_AWS_18",
        "This is the access-log bucket itself; logging it into another bucket would only move the question.",
    )
    for group in (stack.flow_log_group, stack.training_log_group, stack.endpoint_log_group):
        skip_checkov(group, "CKV_AWS_158", _LOGS_WITHOUT_CMK)
    if stack.settings.delete_bucket_on_destroy:
        _auto_delete_provider(stack)


def _auto_delete_provider(stack: FoundationStack) -> None:
    """CDK's own Lambda that empties the buckets on destroy; it exists only with deleteBucketOnDestroy=true."""
    handler = stack.node.find_child("Custom::S3AutoDeleteObjectsCustomResourceProvider").node.find_child("Handler")
    reason = "CDK's auto-delete-objects handler runs only during cdk destroy to empty the buckets; "
    skip_checkov(handler, "CKV_AWS_115", reason + "it is never invoked concurrently.")
    skip_checkov(handler, "CKV_AWS_116", reason + "CloudFormation retries a failed run, a DLQ would hold nothing.")
    skip_checkov(handler, "CKV_AWS_117", reason + "it calls only the S3 API and needs no VPC.")
    ignore_cfn_lint(
        stack,
        "W3005",
        "CDK's auto-delete-objects provider declares DependsOn on the role its handler already references.",
    )


def _own_function(function: lambda_.Function) -> None:
    """A function of functions/ (stacks/functions.py), called by CloudFormation as a custom resource."""
    reason = "CloudFormation calls this function once per custom resource change and waits for its answer; "
    skip_checkov(
        function,
        "CKV_AWS_115",
        reason + "reserving concurrency would take from the account's unreserved pool, which new accounts "
        "(10 in all) cannot spare.",
    )
    skip_checkov(
        function,
        "CKV_AWS_116",
        reason + "a failure reaches the stack as a FAILED answer with its reason, a DLQ would hold nothing.",
    )
    skip_checkov(
        function,
        "CKV_AWS_117",
        reason + "it calls only AWS APIs and the response URL, so a VPC would add network interfaces, not isolation.",
    )
    assert function.log_group is not None
    skip_checkov(function.log_group, "CKV_AWS_158", _LOGS_WITHOUT_CMK)
    ignore_cfn_lint(
        cdk.Stack.of(function),
        "W3005",
        "CDK's Function declares DependsOn on the role it already references, so the role's inline policy "
        "exists before the function runs.",
    )


def _training(stack: TrainingStack) -> None:
    _own_function(stack.image_resolver)
    acknowledge(
        stack.run_policy,
        f"IAM5[Resource::{stack.foundation.stack_name}:ExportsOutputFnGetAttArtifactBucket7410C9EFArnA3946625"
        f"/{stack.settings.run_prefix}/*]",
        "The training instance writes checkpoints, metrics and model.tar.gz under its own run's prefix only.",
    )
    for instance in stack.instances:
        acknowledge(
            instance,
            "EC29",
            "A one-job instance that terminates itself when training ends; termination protection would keep a "
            "GPU billing and block cdk destroy.",
        )
    ignore_cfn_lint(
        stack,
        "W6001",
        "ModelDataUrl is printed by cdk deploy so users can find the trained model; it embeds the bucket name "
        "imported from the foundation stack.",
    )
