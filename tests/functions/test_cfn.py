"""The custom resource protocol against a real HTTP server on loopback standing in for the ResponseURL
(the `answers` fixture, conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest

from functions.cfn import respond


def event(url: str, request_type: str, **extra: Any) -> dict[str, Any]:
    return {
        "RequestType": request_type,
        "ResponseURL": url,
        "StackId": "arn:aws:cloudformation:us-west-2:123456789012:stack/s/1",
        "RequestId": "r-1",
        "LogicalResourceId": "Thing",
        "ResourceProperties": {"ServiceToken": "arn", "Name": "x"},
        **extra,
    }


def test_create_answers_success_with_the_works_id_and_data(answers: tuple[str, list[dict[str, Any]]]) -> None:
    url, received = answers
    respond(event(url, "Create"), lambda properties: (f"id-{properties['Name']}", {"Value": "v"}))
    (answer,) = received
    assert answer["Status"] == "SUCCESS"
    assert (answer["PhysicalResourceId"], answer["Data"]) == ("id-x", {"Value": "v"})
    assert (answer["RequestId"], answer["LogicalResourceId"]) == ("r-1", "Thing")


def test_a_failing_work_still_answers_failed_with_the_error(answers: tuple[str, list[dict[str, Any]]]) -> None:
    url, received = answers

    def fails(properties: dict[str, Any]) -> tuple[str, dict[str, str]]:
        raise KeyError("ParameterNotFound")

    respond(event(url, "Update", PhysicalResourceId="old-id"), fails)
    (answer,) = received
    assert answer["Status"] == "FAILED"
    assert answer["Reason"] == "KeyError: 'ParameterNotFound'"
    assert answer["PhysicalResourceId"] == "old-id"  # unchanged: CloudFormation must not delete the old one


def test_delete_does_no_work_and_keeps_the_physical_id(answers: tuple[str, list[dict[str, Any]]]) -> None:
    url, received = answers
    respond(event(url, "Delete", PhysicalResourceId="id-x"), lambda properties: pytest.fail("no work on delete"))
    (answer,) = received
    assert (answer["Status"], answer["PhysicalResourceId"]) == ("SUCCESS", "id-x")
