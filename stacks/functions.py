"""The app's own Python Lambda functions (functions/): their code asset, role and log group.

Each function's role holds exactly the statements its caller passes, plus writing its own log group
(no AWSLambdaBasicExecutionRole, which would allow every log group). The code asset is the
`functions` package as it is in the repository, staged under build/ into a folder named by its
content, so the zip keeps the package name that the handlers import from and an unchanged package
keeps its asset hash.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from stacks.secure_defaults import log_group

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "functions"
STAGING = ROOT / "build" / "function-code"
RUNTIME = lambda_.Runtime.PYTHON_3_14  # the newest Python runtime CDK offers (cdk-nag L1)


def python_function(
    scope: Construct,
    construct_id: str,
    *,
    handler: str,
    description: str,
    statements: Sequence[iam.PolicyStatement],
    retention_days: int,
    timeout: Duration,
) -> lambda_.Function:
    logs = log_group(scope, f"{construct_id}Logs", retention_days)
    role = iam.Role(
        scope,
        f"{construct_id}Role",
        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        description=description,
        inline_policies={
            "Access": iam.PolicyDocument(
                statements=[
                    *statements,
                    iam.PolicyStatement(
                        actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[logs.log_group_arn]
                    ),
                ]
            )
        },
    )
    return lambda_.Function(
        scope,
        construct_id,
        runtime=RUNTIME,
        handler=f"{PACKAGE}.{handler}",
        code=lambda_.Code.from_asset(str(staged_code())),
        role=role,
        log_group=logs,
        timeout=timeout,
        description=description,
    )


def staged_code() -> Path:
    """build/function-code/<hash>/functions/*.py; written once per content, atomically (parallel synths)."""
    sources = sorted((ROOT / PACKAGE).glob("*.py"))
    digest = hashlib.sha256()
    for source in sources:
        digest.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
    target = STAGING / digest.hexdigest()[:16]
    if not target.exists():
        STAGING.mkdir(parents=True, exist_ok=True)
        draft = Path(tempfile.mkdtemp(dir=STAGING))
        (draft / PACKAGE).mkdir()
        for source in sources:
            shutil.copyfile(source, draft / PACKAGE / source.name)
        try:
            os.rename(draft, target)
        except OSError:  # another synth staged the same content first
            shutil.rmtree(draft)
    return target
