"""The run policy's grants on the user's data: s3:GetObject on exactly the named objects, kms:Decrypt on exactly
the named key and only through S3; nothing of either without the settings."""

from __future__ import annotations

from typing import Any

from stacks.settings import MAX_DATA_URL, MAX_LABELS_SETTING
from tests.stacks.synthesis import CUSTOM_CONTEXT, Synthesized
from tests.stacks.test_templates import only, resolved_user_data_size, resources_of, user_data

DATA_OBJECTS = {
    f"arn:aws:s3:::{CUSTOM_CONTEXT[key].removeprefix('s3://')}"
    for key in ("trainDataUrl", "validationDataUrl", "testDataUrl")
}


def run_statements(app: Synthesized) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = only(resources_of(app, "training", "AWS::IAM::Policy"))["Properties"][
        "PolicyDocument"
    ]["Statement"]
    return statements


def listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def readable(resource: Any) -> str:
    """An ARN as text, each CloudFormation token shown as <token>."""
    if isinstance(resource, str):
        return resource
    if "Fn::Join" in resource:
        return "".join(readable(part) for part in resource["Fn::Join"][1])
    return "<token>"


def granted(app: Synthesized, action: str) -> set[str]:
    """Every resource an Allow statement of the run policy grants `action` on."""
    return {
        readable(resource)
        for statement in run_statements(app)
        if statement["Effect"] == "Allow" and action in listed(statement["Action"])
        for resource in listed(statement["Resource"])
    }


def test_the_instance_may_read_exactly_the_named_objects(custom_app: Synthesized) -> None:
    readable_objects = granted(custom_app, "s3:GetObject")
    assert readable_objects >= DATA_OBJECTS
    others = readable_objects - DATA_OBJECTS  # the three code assets and the run's own prefix
    assert len(others) == 4
    assert all(arn.endswith(".zip") or arn.endswith("/runs/exp-42/*") for arn in others)
    assert granted(custom_app, "s3:ListBucket") == {"<token>"}  # the artifact bucket only, never a data bucket


def test_the_named_key_may_decrypt_only_through_s3_in_its_region(custom_app: Synthesized) -> None:
    (statement,) = [s for s in run_statements(custom_app) if any(a.startswith("kms:") for a in listed(s["Action"]))]
    assert statement == {
        "Action": "kms:Decrypt",
        "Effect": "Allow",
        "Resource": CUSTOM_CONTEXT["dataKmsKeyArn"],
        "Condition": {"StringEquals": {"kms:ViaService": "s3.eu-west-1.amazonaws.com"}},
    }


def test_without_the_settings_no_data_object_and_no_key_is_granted(default_app: Synthesized) -> None:
    assert not [s for s in run_statements(default_app) if any(a.startswith("kms:") for a in listed(s["Action"]))]
    readable_objects = granted(default_app, "s3:GetObject")
    assert len(readable_objects) == 4
    assert all(arn.endswith(".zip") or arn.endswith("/runs/run-1/*") for arn in readable_objects)


def test_the_user_data_names_the_files_and_the_labels(default_app: Synthesized, custom_app: Synthesized) -> None:
    script = user_data(custom_app)
    for split, key in (("TRAIN", "trainDataUrl"), ("VALIDATION", "validationDataUrl"), ("TEST", "testDataUrl")):
        assert f"export {split}_DATA_S3_URI='{CUSTOM_CONTEXT[key]}'\n" in script
    assert f"export LABELS='{CUSTOM_CONTEXT['labels']}'\n" in script
    default = user_data(default_app)
    assert "export LABELS='negative,neutral,positive'\n" in default
    assert "_DATA_S3_URI=" not in default


def test_the_longest_files_and_labels_the_settings_allow_still_fit_the_16_kib_user_data(
    custom_app: Synthesized,
) -> None:
    urls = [CUSTOM_CONTEXT[key] for key in ("trainDataUrl", "validationDataUrl", "testDataUrl")]
    growth = MAX_LABELS_SETTING - len(CUSTOM_CONTEXT["labels"]) + sum(MAX_DATA_URL - len(url) for url in urls)
    assert resolved_user_data_size(custom_app) + growth < 16 * 1024
