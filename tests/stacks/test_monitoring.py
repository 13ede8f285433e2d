"""Alarms reach the encrypted topic, the topic takes only TLS and this app's alarms, the dashboard has its metrics."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stacks.settings import Settings, SettingsError
from tests.stacks.synthesis import CUSTOM_CONTEXT, Synthesized
from training import emf

ALARMS = {"5xx", "model-errors", "model-latency", "cpu", "memory"}
SERVING_METRICS = {
    ("AWS/SageMaker", name)
    for name in (
        "Invocations",
        "InvocationsPerInstance",
        "ModelLatency",
        "OverheadLatency",
        "Invocation4XXErrors",
        "Invocation5XXErrors",
        "InvocationModelErrors",
    )
} | {("/aws/sagemaker/Endpoints", "CPUUtilization"), ("/aws/sagemaker/Endpoints", "MemoryUtilization")}


def resources(app: Synthesized, resource_type: str) -> dict[str, Any]:
    return dict(app.template("inference").find_resources(resource_type))


def alarms(app: Synthesized) -> list[dict[str, Any]]:
    return [alarm["Properties"] for alarm in resources(app, "AWS::CloudWatch::Alarm").values()]


def topic_id(app: Synthesized) -> str:
    (name,) = resources(app, "AWS::SNS::Topic")
    return name


def dashboard(app: Synthesized) -> dict[str, Any]:
    """The dashboard body, with every CDK token (the endpoint name) as a placeholder."""
    (resource,) = resources(app, "AWS::CloudWatch::Dashboard").values()
    parts = resource["Properties"]["DashboardBody"]["Fn::Join"][1]
    body = json.loads("".join(part if isinstance(part, str) else "<token>" for part in parts))
    return {"name": resource["Properties"]["DashboardName"], "widgets": body["widgets"]}


def graphed(app: Synthesized) -> list[list[Any]]:
    """Every metric line of every graph: [namespace, name, dimension, value, ..., {options}]."""
    return [line for widget in dashboard(app)["widgets"] for line in widget["properties"].get("metrics", [])]


def test_every_alarm_notifies_the_topic_when_it_fires_and_when_it_recovers(default_app: Synthesized) -> None:
    found = alarms(default_app)
    assert {alarm["AlarmName"].removeprefix("pt2-endpoint-") for alarm in found} == ALARMS
    topic = {"Ref": topic_id(default_app)}
    for alarm in found:
        assert alarm["AlarmActions"] == [topic] == alarm["OKActions"], alarm["AlarmName"]
        assert len(alarm["AlarmDescription"]) > 60, alarm["AlarmName"]


def test_no_alarm_fires_on_client_errors_alone(default_app: Synthesized) -> None:
    (model_errors,) = [alarm for alarm in alarms(default_app) if alarm["AlarmName"] == "pt2-endpoint-model-errors"]
    expression, *inputs = model_errors["Metrics"]
    assert expression["Expression"] == "FILL(failed, 0) - FILL(client, 0)"
    by_id = {line["Id"]: line["MetricStat"]["Metric"]["MetricName"] for line in inputs}
    assert by_id == {"failed": "InvocationModelErrors", "client": "Invocation4XXErrors"}
    assert all(alarm.get("MetricName") != "Invocation4XXErrors" for alarm in alarms(default_app))


def test_cpu_alarm_scales_with_the_instance_vcpus(default_app: Synthesized, custom_app: Synthesized) -> None:
    for app, vcpus in ((default_app, 16), (custom_app, 8)):  # ml.c7g.4xlarge, ml.c7g.2xlarge
        (cpu,) = [alarm for alarm in alarms(app) if alarm["AlarmName"].endswith("-cpu")]
        assert cpu["Threshold"] == 0.8 * 100 * vcpus


def test_topic_is_kms_encrypted_tls_only_and_open_to_this_apps_alarms_only(default_app: Synthesized) -> None:
    (topic,) = resources(default_app, "AWS::SNS::Topic").values()
    key_id = topic["Properties"]["KmsMasterKeyId"]["Fn::GetAtt"][0]
    key = resources(default_app, "AWS::KMS::Key")[key_id]["Properties"]
    assert key["EnableKeyRotation"] is True
    (policy,) = resources(default_app, "AWS::SNS::TopicPolicy").values()
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    assert {
        "Action": "sns:Publish",
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        "Effect": "Deny",
        "Principal": "*",
        "Resource": {"Ref": topic_id(default_app)},
        "Sid": "AllowPublishThroughSSLOnly",
    } in statements
    (publish,) = [statement for statement in statements if statement["Effect"] == "Allow"]
    (encrypt,) = [s for s in key["KeyPolicy"]["Statement"] if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}]
    for statement in (publish, encrypt):
        assert statement["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
        alarm_arns = json.dumps(statement["Condition"]["ArnLike"]["aws:SourceArn"])
        assert ":alarm:pt2-*" in alarm_arns
        assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert publish["Action"] == "sns:Publish"
    assert encrypt["Action"] == ["kms:Decrypt", "kms:GenerateDataKey*"]


def test_alarm_email_subscribes_and_is_optional(default_app: Synthesized, custom_app: Synthesized) -> None:
    assert not resources(default_app, "AWS::SNS::Subscription")
    (subscription,) = resources(custom_app, "AWS::SNS::Subscription").values()
    assert subscription["Properties"]["Protocol"] == "email"
    assert subscription["Properties"]["Endpoint"] == CUSTOM_CONTEXT["alarmEmail"]


@pytest.mark.parametrize("address", ["ops", "ops@", "ops@example", "a b@example.com", "ops@example.com'"])
def test_a_bad_alarm_email_is_one_error_line(address: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_mapping({"alarmEmail": address})
    assert str(caught.value) == (
        f"context 'alarmEmail' = {address!r} is invalid: allowed is empty (no subscription) or an e-mail "
        "address such as ops@example.com"
    )


def test_dashboard_shows_serving_and_this_runs_training(custom_app: Synthesized) -> None:
    assert dashboard(custom_app)["name"] == "team2-overview"
    lines = graphed(custom_app)
    assert {(line[0], line[1]) for line in lines if line[0] != "."} >= SERVING_METRICS
    training = [line for line in lines if line[0] == "team2/training"]
    assert {line[1] for line in training} == {
        emf.TRAIN_LOSS,
        emf.EVAL_LOSS,
        emf.EVAL_RECALL,
        emf.SAMPLES_PER_SECOND,
        emf.STEP_SECONDS,
    }
    assert all(line[2:4] == [emf.RUN_DIMENSION, "exp-42"] for line in training)
    steps = [line[5] for line in training if line[1] == emf.STEP_SECONDS]
    assert steps == list(emf.TIMED_STEPS)


def test_dashboard_of_an_existing_model_shows_serving_only(existing_model_app: Synthesized) -> None:
    namespaces = {line[0] for line in graphed(existing_model_app)}
    assert namespaces <= {"AWS/SageMaker", "/aws/sagemaker/Endpoints", "."}
