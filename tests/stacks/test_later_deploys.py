"""What a later `cdk deploy` of the same run may and may not change (README, "What happens on later deploys"):
each invariant synthesizes twice and compares what must not move."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from stacks.inference_stack import HANDLER
from stacks.settings import Settings
from stacks.training_stack import instance_settings_id
from tests.project_copy import project_copy
from tests.stacks.synthesis import Synthesized, synthesize

INSTANCE_SETTINGS = {"trainingInstanceType": "p5.48xlarge", "trainingInstanceCount": "2", "rootVolumeSize": "300"}
OTHER_DLAMI = "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-amazon-linux-2023/latest/ami-id"


@pytest.fixture(scope="module")
def bigger_volume_app(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(tmp_path_factory, {"rootVolumeSize": "300"})


@pytest.fixture(scope="module")
def other_dlami_app(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(tmp_path_factory, {"dlamiSsmParameter": OTHER_DLAMI})


@pytest.fixture(scope="module")
def other_endpoint_app(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(tmp_path_factory, {"endpointInstanceType": "ml.c7g.2xlarge", "endpointInstanceCount": "2"})


def resources(app: Synthesized, *types: str) -> dict[str, Any]:
    return {
        name: resource
        for name, resource in app.template_json("training")["Resources"].items()
        if resource["Type"] in types
    }


def test_no_template_value_is_read_again_on_each_deploy(default_app: Synthesized) -> None:
    """An SSM-typed template parameter or an ssm dynamic reference is resolved again on every update
    (and the CDK CLI never skips a stack that has one): the training stack has neither."""
    template = default_app.template_json("training")
    # CDK's own version check, which the CLI leaves out of that rule ("[cdk:skip]").
    (name, parameter), *others = template["Parameters"].items()
    assert (name, others) == ("BootstrapVersion", [])
    assert "[cdk:skip]" in parameter["Description"]
    assert "{{resolve:" not in json.dumps(template)


def test_the_ami_comes_from_a_resource_under_the_instances_own_construct(default_app: Synthesized) -> None:
    """Created with the instances and never updated: its only properties are fixed for the run."""
    (resolver,) = resources(default_app, "Custom::RunDlami").items()
    (instance,) = resources(default_app, "AWS::EC2::Instance").items()
    assert instance[1]["Properties"]["ImageId"] == {"Fn::GetAtt": [resolver[0], "ImageId"]}
    assert set(resolver[1]["Properties"]) == {"ServiceToken", "ServiceTimeout", "ParameterName"}
    settings_id = instance_settings_id(default_app.application.settings)
    assert resolver[0].startswith(f"Runrun1Instances{settings_id}")
    assert instance[0].startswith(f"Runrun1Instances{settings_id}")


@pytest.mark.parametrize("key", INSTANCE_SETTINGS)
def test_every_instance_setting_names_new_instances(key: str) -> None:
    default = instance_settings_id(Settings.from_mapping({}))
    assert instance_settings_id(Settings.from_mapping({key: INSTANCE_SETTINGS[key]})) != default


@pytest.mark.parametrize("key", ["dlamiSsmParameter", "endpointInstanceType", "logRetentionDays", "runId"])
def test_other_settings_leave_the_instance_settings_id_alone(key: str) -> None:
    values = {
        "dlamiSsmParameter": OTHER_DLAMI,
        "endpointInstanceType": "ml.c7g.2xlarge",
        "logRetentionDays": "7",
        "runId": "run-9",
    }
    default = instance_settings_id(Settings.from_mapping({}))
    assert instance_settings_id(Settings.from_mapping({key: values[key]})) == default


def test_an_instance_setting_change_creates_new_instances_and_keeps_the_runs_wait(
    default_app: Synthesized, bigger_volume_app: Synthesized
) -> None:
    """CloudFormation creates what has a new logical id: a new AMI read and a new instance (which finds
    the run's model and signals at once), instead of updating one that has terminated itself."""
    instance_types = ("AWS::EC2::Instance", "Custom::RunDlami", "AWS::EC2::LaunchTemplate")
    before, after = resources(default_app, *instance_types), resources(bigger_volume_app, *instance_types)
    assert len(before) == len(after) == 3
    assert not set(before) & set(after)
    run_types = ("AWS::CloudFormation::WaitCondition", "AWS::CloudFormation::WaitConditionHandle")
    assert set(resources(default_app, *run_types)) == set(resources(bigger_volume_app, *run_types))


def test_another_dlami_parameter_moves_no_instance(default_app: Synthesized, other_dlami_app: Synthesized) -> None:
    """A new default in a later app version, or the user's own: the run keeps the AMI it read (the
    resolver answers an Update with the image it has, functions/dlami.py); the next run reads the new one."""
    before, after = default_app.template_json("training"), other_dlami_app.template_json("training")
    assert set(before["Resources"]) == set(after["Resources"])
    changed = {name for name in before["Resources"] if before["Resources"][name] != after["Resources"][name]}
    (resolver,) = resources(default_app, "Custom::RunDlami")
    (role,) = resources(default_app, "AWS::IAM::Role")
    assert changed == {resolver, role}  # the parameter it names, and the one its function may read
    assert after["Resources"][resolver]["Properties"]["ParameterName"] == OTHER_DLAMI


def test_an_endpoint_change_leaves_the_training_stack_as_it_is(
    default_app: Synthesized, other_endpoint_app: Synthesized
) -> None:
    assert default_app.template_json("training") == other_endpoint_app.template_json("training")
    assert default_app.template_json("inference") != other_endpoint_app.template_json("inference")


@pytest.fixture(scope="module")
def edited_handler_app(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The same deployment from a checkout whose inference/inference.py the user edited (the app reads its
    folders from the directory it runs in, as `cdk synth` runs it from the project's)."""
    checkout = project_copy(tmp_path_factory.mktemp("checkout"))
    handler = checkout / HANDLER
    handler.write_bytes(handler.read_bytes() + b"\n# edited\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(checkout)
        return synthesize(tmp_path_factory)


def test_a_handler_edit_changes_only_the_serving_archive_and_its_writers_grant(
    default_app: Synthesized, edited_handler_app: Synthesized
) -> None:
    """No training resource moves; CloudFormation replaces the Model when the archive's attribute changes."""
    for stack in ("foundation", "training"):
        assert default_app.template_json(stack) == edited_handler_app.template_json(stack)
    before, after = default_app.template_json("inference"), edited_handler_app.template_json("inference")
    assert set(before["Resources"]) == set(after["Resources"])
    changed = {name for name in before["Resources"] if before["Resources"][name] != after["Resources"][name]}
    (archive,) = [name for name, r in before["Resources"].items() if r["Type"] == "Custom::ServingArchive"]
    (role,) = [name for name in before["Resources"] if name.startswith("ServingArchiveBuilderRole")]
    assert changed == {archive, role}
    old, new = before["Resources"][archive]["Properties"], after["Resources"][archive]["Properties"]
    assert old["SourceArchive"] == new["SourceArchive"]
    assert old["TargetArchive"] != new["TargetArchive"]  # a new key: the archive being served stays as it is
    model = next(r for r in after["Resources"].values() if r["Type"] == "AWS::SageMaker::Model")
    assert model["Properties"]["PrimaryContainer"]["ModelDataUrl"] == {"Fn::GetAtt": [archive, "ModelDataUrl"]}


def test_the_instance_gets_the_endpoints_pins_but_not_its_handler(default_app: Synthesized) -> None:
    assert default_app.application.training is not None
    shipped = Path(default_app.application.training.assets["inference"].asset_path)
    folder = shipped if shipped.is_absolute() else default_app.outdir / shipped
    assert sorted(path.name for path in folder.iterdir()) == ["requirements.lock", "requirements.txt"]
