"""The predict client against botocore's Stubber: request shape, stack lookup and its error lines."""

from __future__ import annotations

import io

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from inference import predict
from inference.serve import free_port

SENTENCE = "Covid cases are increasing fast!"
REPLY = b'{"sentiment": "negative", "score": 0.854}'


@pytest.fixture
def session(monkeypatch):
    """A session with fake credentials whose clients main() gets; Stubber answers every call."""
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    fake = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-west-2")
    clients = {name: fake.client(name) for name in ("cloudformation", "sagemaker-runtime")}
    monkeypatch.setattr(fake, "client", clients.__getitem__)
    monkeypatch.setattr(predict.boto3.session, "Session", lambda **_kwargs: fake)
    return clients


@pytest.fixture
def runtime(session):
    with Stubber(session["sagemaker-runtime"]) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


@pytest.fixture
def cloudformation(session):
    with Stubber(session["cloudformation"]) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def expect_invoke(runtime: Stubber, endpoint: str = "pt2-endpoint") -> None:
    runtime.add_response(
        "invoke_endpoint",
        {"Body": StreamingBody(io.BytesIO(REPLY), len(REPLY)), "ContentType": "application/json"},
        expected_params={
            "EndpointName": endpoint,
            "ContentType": "application/x-text",
            "Accept": "application/json",
            "Body": SENTENCE.encode(),
        },
    )


def stack_with_outputs(outputs: dict[str, str]) -> dict:
    return {
        "Stacks": [
            {
                "StackName": "pt2-inference",
                "CreationTime": "2026-11-27T00:00:00Z",
                "StackStatus": "CREATE_COMPLETE",
                "Outputs": [{"OutputKey": key, "OutputValue": value} for key, value in outputs.items()],
            }
        ]
    }


def test_endpoint_name_flag_invokes_directly(runtime, capsys):
    expect_invoke(runtime, "my-endpoint")
    assert predict.main([SENTENCE, "--endpoint-name", "my-endpoint"]) == 0
    assert capsys.readouterr().out.strip() == REPLY.decode()


def test_endpoint_name_comes_from_the_stack_output(cloudformation, runtime, capsys):
    cloudformation.add_response(
        "describe_stacks",
        stack_with_outputs({"ModelName": "m", "EndpointName": "pt2-endpoint"}),
        expected_params={"StackName": "pt2-inference"},
    )
    expect_invoke(runtime)
    assert predict.main([SENTENCE]) == 0
    assert capsys.readouterr().out.strip() == REPLY.decode()


def test_missing_stack(cloudformation, capsys):
    cloudformation.add_client_error("describe_stacks", "ValidationError", "Stack with id pt2-inference does not exist")
    assert predict.main([SENTENCE]) == 1
    assert_one_line(capsys, "stack pt2-inference not found in us-west-2")


def test_stack_without_endpoint_output(cloudformation, capsys):
    cloudformation.add_response("describe_stacks", stack_with_outputs({"ModelName": "m"}))
    assert predict.main([SENTENCE]) == 1
    assert_one_line(capsys, "has no EndpointName output")


@pytest.mark.parametrize(
    "message",
    [
        "Endpoint pt2-endpoint of account 123456789012 not found.",  # InvokeEndpoint
        'Could not find endpoint "pt2-endpoint".',  # the SageMaker control plane
    ],
)
def test_missing_endpoint(runtime, capsys, message):
    runtime.add_client_error("invoke_endpoint", "ValidationError", message)
    assert predict.main([SENTENCE, "--endpoint-name", "pt2-endpoint"]) == 1
    assert_one_line(capsys, "no endpoint pt2-endpoint in us-west-2")


def test_container_refusal_shows_its_status_and_first_line(runtime, capsys):
    runtime.add_client_error(
        "invoke_endpoint",
        "ModelError",
        "Received client error (400) from primary with message ...",
        http_status_code=424,
        modeled_fields={
            "OriginalStatusCode": 400,
            "OriginalMessage": "the request body is empty; send the text to classify\nTraceback ...",
        },
    )
    assert predict.main([SENTENCE, "--endpoint-name", "pt2-endpoint"]) == 1
    assert_one_line(capsys, "refused the request (400): the request body is empty")


def test_no_credentials(monkeypatch, tmp_path, capsys):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    assert predict.main([SENTENCE, "--endpoint-name", "pt2-endpoint"]) == 1
    assert_one_line(capsys, "no AWS credentials found")


def test_region_defaults_to_the_environment_then_us_west_2(monkeypatch):
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    assert predict._parser().parse_args([SENTENCE]).region == "us-west-2"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert predict._parser().parse_args([SENTENCE]).region == "eu-west-1"


def test_local_without_a_server(capsys):
    url = f"http://127.0.0.1:{free_port()}"
    assert predict.main([SENTENCE, "--local", "--url", url]) == 1
    assert_one_line(capsys, f"no server at {url}")


def assert_one_line(capsys, expected: str) -> None:
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ")
    assert expected in captured.err
    assert captured.err.count("\n") == 1
