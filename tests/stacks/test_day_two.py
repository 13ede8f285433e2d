"""What later deploys and destroy rely on (README, "What happens on later deploys"): a failed deploy keeps its
evidence, the modes switch both ways, the endpoint follows a new run or instance type, destroy keeps what it keeps."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Annotations, Match

from tests.stacks.synthesis import Synthesized, synthesize


def resources(app: Synthesized, stack: str, resource_type: str) -> dict[str, Any]:
    return {
        name: resource
        for name, resource in app.template_json(stack)["Resources"].items()
        if resource["Type"] == resource_type
    }


def exports(app: Synthesized) -> dict[str, Any]:
    return {name: output for name, output in app.template_json("foundation")["Outputs"].items() if "Export" in output}


def log_groups(app: Synthesized) -> list[dict[str, Any]]:
    stacks = ("foundation", "training", "inference") if app.application.training else ("foundation", "inference")
    return [group for stack in stacks for group in resources(app, stack, "AWS::Logs::LogGroup").values()]


def imports(app: Synthesized, stack: str) -> set[str]:
    """The export names a stack's template imports (CDK writes each as a literal string)."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("Fn::ImportValue"), str):
                found.add(node["Fn::ImportValue"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(app.template_json(stack))
    return found


# ---- a failed deploy ------------------------------------------------------------------------------------


def test_the_logs_of_a_run_and_of_the_endpoint_outlive_a_rollback_of_their_stacks(
    default_app: Synthesized, existing_model_app: Synthesized
) -> None:
    """A failed first create rolls back everything its stack made; the foundation's log groups stay (in both
    modes), and go with the foundation on destroy."""
    for app in (default_app, existing_model_app):
        stacks = ("training", "inference") if app.application.training else ("inference",)
        for stack in stacks:
            groups_of_stack = resources(app, stack, "AWS::Logs::LogGroup")
            # The app's own functions' logs may go with a rollback: a failed function's error is its
            # FAILED answer, which CloudFormation keeps in the stack's events and `cdk deploy` prints.
            functions = ("DlamiResolver", "ServingArchiveBuilder")
            assert [name for name in groups_of_stack if not name.startswith(functions)] == [], stack
        groups = resources(app, "foundation", "AWS::Logs::LogGroup")
        assert {group.get("DeletionPolicy") for group in groups.values()} == {"Delete"}
        assert "/aws/sagemaker/Endpoints/pt2-endpoint-c7g-4xlarge" in [
            group["Properties"].get("LogGroupName") for group in groups.values()
        ]
    (training_group,) = [
        name
        for name, group in resources(default_app, "foundation", "AWS::Logs::LogGroup").items()
        if name.startswith("TrainingLogs")
    ]
    training = json.dumps(default_app.template_json("training"))
    for export in ("Ref" + training_group, "FnGetAtt" + training_group + "Arn"):  # the user data's, the policy's
        assert f"pt2-foundation:ExportsOutput{export}" in training


def test_keep_instance_on_failure_warns_at_synth_that_the_deploy_must_not_roll_back(
    default_app: Synthesized, custom_app: Synthesized
) -> None:
    def warnings(app: Synthesized) -> list[str]:
        training = app.application.training
        assert training is not None
        found = Annotations.from_stack(training).find_warning("*", Match.string_like_regexp("keepInstanceOnFailure"))
        return [str(message.entry.data) for message in found]

    assert warnings(default_app) == []
    (warning,) = warnings(custom_app)
    assert "--no-rollback" in warning


# ---- modes -----------------------------------------------------------------------------------------------


def test_the_foundation_exports_the_same_values_in_both_modes(
    default_app: Synthesized, existing_model_app: Synthesized, cluster_app: Synthesized
) -> None:
    """A deployed stack of one mode still imports what the foundation of the other mode exports."""
    assert exports(default_app) == exports(existing_model_app) == exports(cluster_app)
    for app in (default_app, existing_model_app, cluster_app):
        names = {output["Export"]["Name"] for output in exports(app).values()}
        stacks = ("training", "inference") if app.application.training else ("inference",)
        for stack in stacks:
            assert imports(app, stack) <= names, stack
    imported_in_either = imports(default_app, "training") | imports(existing_model_app, "inference")
    assert imported_in_either - imports(default_app, "inference")  # each mode imports something of its own


# ---- destroy -------------------------------------------------------------------------------------------


def test_kept_buckets_keep_their_policies(default_app: Synthesized) -> None:
    buckets = resources(default_app, "foundation", "AWS::S3::Bucket")
    policies = resources(default_app, "foundation", "AWS::S3::BucketPolicy")
    assert {bucket["DeletionPolicy"] for bucket in buckets.values()} == {"Retain"}
    assert {policy["Properties"]["Bucket"]["Ref"] for policy in policies.values()} == set(buckets)
    for policy in policies.values():
        assert (policy.get("DeletionPolicy"), policy.get("UpdateReplacePolicy")) == ("Retain", "Retain")


def test_deleted_buckets_go_with_their_policies_and_the_log_bucket_is_emptied_last(
    custom_app: Synthesized,
) -> None:
    """CloudFormation deletes in reverse dependency order: the artifact bucket (whose requests S3 logs) is
    emptied and deleted before the access-log bucket is emptied, so no log record of it can arrive later."""
    buckets = resources(custom_app, "foundation", "AWS::S3::Bucket")
    assert {bucket["DeletionPolicy"] for bucket in buckets.values()} == {"Delete"}
    for policy in resources(custom_app, "foundation", "AWS::S3::BucketPolicy").values():
        assert policy.get("DeletionPolicy", "Delete") == "Delete"
    (artifact,) = [name for name, bucket in buckets.items() if "LoggingConfiguration" in bucket["Properties"]]
    log_bucket = buckets[artifact]["Properties"]["LoggingConfiguration"]["DestinationBucketName"]["Ref"]
    emptying = resources(custom_app, "foundation", "Custom::S3AutoDeleteObjects")
    (log_emptying,) = [r for r in emptying.values() if r["Properties"]["BucketName"] == {"Ref": log_bucket}]
    assert artifact in log_emptying["DependsOn"]


# ---- the endpoint --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def next_run_app(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(tmp_path_factory, {"runId": "run-2"})


def endpoint(app: Synthesized) -> dict[str, Any]:
    (found,) = resources(app, "inference", "AWS::SageMaker::Endpoint").values()
    return dict(found["Properties"])


def test_a_new_run_updates_the_endpoint_and_keeps_the_instance_count_autoscaling_set(
    default_app: Synthesized, next_run_app: Synthesized
) -> None:
    """Same name: CloudFormation updates the endpoint in place (a new model is an update SageMaker allows
    under autoscaling), and RetainAllVariantProperties keeps the current instance count."""
    assert endpoint(next_run_app)["EndpointName"] == endpoint(default_app)["EndpointName"]
    assert endpoint(next_run_app)["RetainAllVariantProperties"] is True
    (archive,) = resources(next_run_app, "inference", "Custom::ServingArchive").values()
    assert "/runs/run-2/" in json.dumps(archive["Properties"]["SourceArchive"])


def test_a_new_endpoint_instance_type_replaces_the_endpoint_its_scaling_target_and_its_log_group(
    default_app: Synthesized, custom_app: Synthesized
) -> None:
    """SageMaker refuses to change the instance type of a variant under autoscaling; a new EndpointName makes
    CloudFormation create a new endpoint instead, and everything named after it follows."""
    for app, name in ((default_app, "pt2-endpoint-c7g-4xlarge"), (custom_app, "team2-endpoint-c7g-2xlarge")):
        assert endpoint(app)["EndpointName"] == name
        (logical_id,) = resources(app, "inference", "AWS::SageMaker::Endpoint")
        (target,) = resources(app, "inference", "AWS::ApplicationAutoScaling::ScalableTarget").values()
        resource_id = json.dumps(target["Properties"]["ResourceId"])
        assert json.dumps({"Fn::GetAtt": [logical_id, "EndpointName"]}) in resource_id
        groups = [group["Properties"].get("LogGroupName") for group in log_groups(app)]
        assert f"/aws/sagemaker/Endpoints/{name}" in groups
