"""Classifies one text with the deployed endpoint (or the local server) and prints the JSON reply.

    python -m inference.predict "Covid cases are increasing fast!"
    python -m inference.predict --local "Covid cases are increasing fast!"

The endpoint's name comes from `--endpoint-name` or from the `EndpointName` output of the
inference stack. Failures print one line saying what to do, not a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from inference.serve import DEFAULT_PORT, post_invocation

DEFAULT_STACK = "pt2-inference"
DEFAULT_REGION = "us-west-2"
ENDPOINT_OUTPUT = "EndpointName"


class PredictError(Exception):
    """A failure the user can act on; main prints it as one line."""


def resolve_endpoint_name(cloudformation: Any, stack_name: str) -> str:
    """The endpoint is named by CloudFormation, so ask the stack rather than guess."""
    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as error:
        if "does not exist" in _message(error):
            raise PredictError(
                f"stack {stack_name} not found in {_region(cloudformation)}: deploy it "
                "(make deploy), pass --stack-name/--region, or --endpoint-name"
            ) from None
        raise
    for output in stacks[0].get("Outputs", []):
        if output["OutputKey"] == ENDPOINT_OUTPUT:
            return str(output["OutputValue"])
    raise PredictError(f"stack {stack_name} has no {ENDPOINT_OUTPUT} output; pass --endpoint-name")


def invoke_endpoint(runtime: Any, endpoint_name: str, text: str, content_type: str, accept: str) -> str:
    """One InvokeEndpoint call; the container's own 4xx come back as ModelError."""
    try:
        response = runtime.invoke_endpoint(
            EndpointName=endpoint_name, ContentType=content_type, Accept=accept, Body=text.encode()
        )
    except ClientError as error:
        if _is_missing_endpoint(error):
            raise PredictError(
                f"no endpoint {endpoint_name} in {_region(runtime)}: deploy it (make deploy) or check --region"
            ) from None
        if error.response["Error"]["Code"] == "ModelError":
            status = error.response.get("OriginalStatusCode", "?")
            detail = _first_line(error.response.get("OriginalMessage") or _message(error))
            raise PredictError(f"the endpoint refused the request ({status}): {detail}") from None
        raise
    return str(response["Body"].read().decode())


def invoke_local(url: str, text: str, content_type: str, accept: str) -> str:
    """The same request against `make serve`, over loopback HTTP."""
    try:
        status, body = post_invocation(url, text.encode(), content_type, accept)
    except OSError as error:
        raise PredictError(f"no server at {url} ({error}): start one with `make serve MODEL=model.tar.gz`") from None
    if status != 200:
        raise PredictError(f"the local server refused the request ({status}): {_first_line(body.decode())}")
    return body.decode()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        print(_predict(args))
    except PredictError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def _predict(args: argparse.Namespace) -> str:
    if args.local:
        return invoke_local(args.url, args.text, args.content_type, args.accept)
    session = boto3.session.Session(region_name=args.region)
    try:
        name = args.endpoint_name or resolve_endpoint_name(session.client("cloudformation"), args.stack_name)
        return invoke_endpoint(session.client("sagemaker-runtime"), name, args.text, args.content_type, args.accept)
    except NoCredentialsError:
        raise PredictError(
            "no AWS credentials found: set AWS_PROFILE or run `aws configure` (or use --local)"
        ) from None
    except (ClientError, BotoCoreError) as error:
        raise PredictError(_first_line(str(error))) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("text", help="the text to classify")
    parser.add_argument("--endpoint-name", help="skip the stack lookup")
    parser.add_argument("--stack-name", default=DEFAULT_STACK, help="stack with the EndpointName output")
    parser.add_argument(
        "--region",
        default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION,
    )
    parser.add_argument("--local", action="store_true", help="ask the local server (make serve) instead")
    parser.add_argument("--url", default=f"http://127.0.0.1:{DEFAULT_PORT}", help="local server for --local")
    parser.add_argument("--content-type", default="application/x-text")
    parser.add_argument("--accept", default="application/json")
    return parser


def _is_missing_endpoint(error: ClientError) -> bool:
    """InvokeEndpoint says "Endpoint X of account N not found."; the control plane says
    "Could not find endpoint X"."""
    message = _message(error).lower()
    return "could not find endpoint" in message or ("endpoint" in message and "not found" in message)


def _message(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Message", ""))


def _region(client: Any) -> str:
    return str(client.meta.region_name)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "(no message)"


if __name__ == "__main__":
    sys.exit(main())
