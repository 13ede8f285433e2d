"""The app's own Python Lambda functions (functions/): their code asset, role and log group.

Each function's role holds exactly the statements its caller passes, plus writing its own log group
(no AWSLambdaBasicExecutionRole, which would allow every log group). The code asset is the
`functions` package as it is in the repository, with the torch-free training modules the handlers
import (SHARED), staged under build/ into a folder named by its content, so the zip keeps the
package names that the handlers import from and unchanged code keeps its asset hash.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from aws_cdk import Duration, Size
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from stacks.secure_defaults import log_group

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "functions"
# Standard-library modules of the app that functions import; the zip carries no torch.
SHARED = ("training/__init__.py", "training/archive_format.py")
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
    memory_size: int | None = None,
    ephemeral_storage_gib: int | None = None,
) -> lambda_.Function:
    """memory_size (MiB) and ephemeral_storage_gib (/tmp): Lambda's defaults (128 MiB, 0.5 GiB) unless given."""
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
        memory_size=memory_size,
        ephemeral_storage_size=Size.gibibytes(ephemeral_storage_gib) if ephemeral_storage_gib is not None else None,
        description=description,
    )


def staged_code() -> Path:
    """build/function-code/<hash>/ with functions/*.py and SHARED; written once per content, atomically
    (parallel synths)."""
    sources = sorted(path.relative_to(ROOT).as_posix() for path in (ROOT / PACKAGE).glob("*.py")) + list(SHARED)
    digest = hashlib.sha256()
    for source in sources:
        digest.update(source.encode() + b"\0" + (ROOT / source).read_bytes() + b"\0")
    target = STAGING / digest.hexdigest()[:16]
    if not target.exists():
        STAGING.mkdir(parents=True, exist_ok=True)
        draft = Path(tempfile.mkdtemp(dir=STAGING))
        for source in sources:
            (draft / source).parent.mkdir(exist_ok=True)
            shutil.copyfile(ROOT / source, draft / source)
        try:
            os.rename(draft, target)
        except OSError:  # another synth staged the same content first
            shutil.rmtree(draft)
    return target
