"""Reads the Deep Learning AMI's public SSM parameter once per run and hands its image id to the
training instance(s).

A template parameter of type AWS::SSM::Parameter::Value would be re-read by CloudFormation on every
stack update, so a DLAMI release (every few weeks) would replace the GPU instance on an unrelated
deploy. This resource's properties never change within a run (its construct id carries the run's
instance settings, stacks/training_stack.py), so CloudFormation calls it on Create only and keeps the
image id it returned for as long as the run lives.
"""

from __future__ import annotations

import logging
from typing import Any

import boto3

from functions.cfn import respond

logging.getLogger().setLevel(logging.INFO)


def handler(event: dict[str, Any], context: object) -> None:
    respond(event, resolve)


def resolve(properties: dict[str, Any]) -> tuple[str, dict[str, str]]:
    image_id: str = boto3.client("ssm").get_parameter(Name=properties["ParameterName"])["Parameter"]["Value"]
    logging.info("%s resolves to %s", properties["ParameterName"], image_id)
    return image_id, {"ImageId": image_id}
