"""What later deploys and destroy rely on (README, "What happens on later deploys"): a failed deploy keeps its
evidence, the modes switch both ways, the endpoint follows a new run or instance type, destroy keeps what it keeps."""

from __future__ import annotations

from typing import Any

from tests.stacks.synthesis import Synthesized


def resources(app: Synthesized, stack: str, resource_type: str) -> dict[str, Any]:
    return {
        name: resource
        for name, resource in app.template_json(stack)["Resources"].items()
        if resource["Type"] == resource_type
    }


def exports(app: Synthesized) -> dict[str, Any]:
    return {name: output for name, output in app.template_json("foundation")["Outputs"].items() if "Export" in output}


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
