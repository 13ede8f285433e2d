"""Reads the Deep Learning AMI's public SSM parameter once per run and hands its image id to the
training instance(s).

A template parameter of type AWS::SSM::Parameter::Value would be re-read by CloudFormation on every
stack update, so a DLAMI release (every few weeks) would replace the GPU instance on an unrelated
deploy. This resource is created with the run's instances (its construct id carries the run's
instance settings, stacks/training_stack.py) and reads the parameter then; CloudFormation keeps the
image id it returned for as long as they live. An Update (a new parameter name, say from a later
version of this app, or a function that moved) keeps that image id, its physical id: the AMI is
fixed per run, and a new AMI would only replace instances that have done their work.
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
    if event["RequestType"] == "Update":
        image_id = event["PhysicalResourceId"]
        logging.info("the run keeps %s; %s is read again with new instances only", image_id, name)
    else:
        image_id = boto3.client("ssm").get_parameter(Name=name)["Parameter"]["Value"]
        logging.info("%s resolves to %s", name, image_id)
    return image_id, {"ImageId": image_id}
