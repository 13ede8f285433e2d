"""An object in S3 by bucket and key, either of which may be a CDK token (an imported bucket name)."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Stack


@dataclass(frozen=True)
class S3Object:
    bucket: str
    key: str

    @classmethod
    def from_url(cls, url: str) -> S3Object:
        bucket, key = url.removeprefix("s3://").split("/", 1)
        return cls(bucket, key)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def arn(self, stack: Stack) -> str:
        return stack.format_arn(service="s3", region="", account="", resource=self.bucket, resource_name=self.key)
