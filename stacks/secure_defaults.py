"""Secure defaults shared by the stacks, kept in one place (after aws-solutions-constructs)."""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.settings import LOG_RETENTION_DAYS

# RetentionDays lists the same periods in the same ascending order (a test checks the template).
RETENTION = dict(zip(LOG_RETENTION_DAYS, logs.RetentionDays, strict=False))

# Every bucket: encrypted, TLS only, never public, no ACLs, versioned.
SECURE_BUCKET: dict[str, Any] = {
    "encryption": s3.BucketEncryption.S3_MANAGED,
    "enforce_ssl": True,
    "block_public_access": s3.BlockPublicAccess.BLOCK_ALL,
    "object_ownership": s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
    "versioned": True,
}


def log_group(scope: Construct, construct_id: str, retention_days: int, name: str | None = None) -> logs.LogGroup:
    """A log group with a retention period, deleted with its stack so nothing keeps billing."""
    return logs.LogGroup(
        scope,
        construct_id,
        log_group_name=name,
        retention=RETENTION[retention_days],
        removal_policy=RemovalPolicy.DESTROY,
    )


def egress_only_security_group(
    scope: Construct, construct_id: str, vpc: ec2.IVpc, description: str
) -> ec2.SecurityGroup:
    """No inbound rule at all (no SSH: Session Manager reaches the instance); outbound for AWS APIs and pip."""
    return ec2.SecurityGroup(scope, construct_id, vpc=vpc, description=description, allow_all_outbound=True)


def encryption_key(scope: Construct, construct_id: str, description: str) -> kms.Key:
    """A rotated customer key, scheduled for deletion with its stack (a key pending deletion is not billed)."""
    return kms.Key(
        scope,
        construct_id,
        description=description,
        enable_key_rotation=True,
        removal_policy=RemovalPolicy.DESTROY,
        pending_window=Duration.days(7),
    )
