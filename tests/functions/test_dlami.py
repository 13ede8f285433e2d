"""The run's AMI read, against moto's SSM in-process (`fake_aws`, conftest.py; a parameter of our own: moto
refuses /aws/ names)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from functions.dlami import resolve

PARAMETER = "/test/dlami/latest/ami-id"


@pytest.fixture
def ssm(fake_aws: None) -> Any:
    client = boto3.client("ssm")
    client.put_parameter(Name=PARAMETER, Value="ami-11111111", Type="String", DataType="aws:ec2:image")
    return client


def release(ssm: Any, image_id: str) -> None:
    ssm.put_parameter(Name=PARAMETER, Value=image_id, Type="String", DataType="aws:ec2:image", Overwrite=True)


def test_create_reads_the_parameter(ssm: Any) -> None:
    event = {"RequestType": "Create"}
    assert resolve(event, {"ParameterName": PARAMETER}) == ("ami-11111111", {"ImageId": "ami-11111111"})


def update(old_parameter: str) -> dict[str, Any]:
    """An Update of the resource that read ami-11111111 from `old_parameter`, after a release."""
    old = {"ParameterName": old_parameter, "ServiceToken": "old-function"}
    return {"RequestType": "Update", "PhysicalResourceId": "ami-11111111", "OldResourceProperties": old}


def test_an_update_with_the_same_parameter_keeps_the_runs_image_after_a_release(ssm: Any) -> None:
    release(ssm, "ami-22222222")
    assert resolve(update(PARAMETER), {"ParameterName": PARAMETER}) == ("ami-11111111", {"ImageId": "ami-11111111"})


def test_an_update_naming_another_parameter_keeps_the_runs_image(ssm: Any) -> None:
    release(ssm, "ami-22222222")
    assert resolve(update("/test/other/ami-id"), {"ParameterName": PARAMETER}) == (
        "ami-11111111",
        {"ImageId": "ami-11111111"},
    )


def test_a_missing_parameter_raises_for_the_failed_answer(ssm: Any) -> None:
    with pytest.raises(ssm.exceptions.ParameterNotFound):
        resolve({"RequestType": "Create"}, {"ParameterName": "/test/none"})
