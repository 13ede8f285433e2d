"""Reads the Deep Learning AMI's public SSM parameter once per run and hands its image id to the
training instance(s).

A template parameter of type AWS::SSM::Parameter::Value would be re-read by CloudFormation on every
stack update, so a DLAMI release (every few weeks) would replace the GPU instance on an unrelated
deploy. This resource's properties never change within a run (its construct id carries the run's
instance settings, stacks/training_stack.py), so CloudFormation calls it on Create only and keeps the
image id it returned for as long as the run lives. Should an Update come all the same (a new app
version that moves the function, say), the image id stays the run's unless the parameter's name
changed: the physical id is the image id.
"""

from __future__ import annotations

import logging
from typing import Any

import boto3

from functions.cfn import respond

logging.getLogger().setLevel(logging.INFO)


def handler(event: dict[str, Any], context: object) -> None:
    respond(event, lambda properties: resolve(event, properties))


def resolve(event: dict[str, Any], properties: dict[str, Any]) -> tuple[str, dict[str, str]]:
    name = properties["ParameterName"]
    if event["RequestType"] == "Update" and event["OldResourceProperties"]["ParameterName"] == name:
        image_id = event["PhysicalResourceId"]
        logging.info("%s stays %s for this run", name, image_id)
    else:
        image_id = boto3.client("ssm").get_parameter(Name=name)["Parameter"]["Value"]
        logging.info("%s resolves to %s", name, image_id)
    return image_id, {"ImageId": image_id}
