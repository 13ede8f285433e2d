"""Settings: defaults, parsing of CLI strings, and one-line errors that name the context key."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from stacks.instance_types import GPU_INSTANCE_TYPES
from stacks.settings import OPTIONS, Settings, SettingsError, reject_unknown_context
from training.arguments import check_user_flags

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_reproduce_the_recipe() -> None:
    settings = Settings.from_mapping({})
    assert settings.region == "us-west-2"
    assert settings.training_instance_type == "p4d.24xlarge"
    assert settings.root_volume_size == 200
    assert settings.endpoint_instance_type == "ml.c7g.4xlarge"
    assert settings.delete_bucket_on_destroy is False
    assert settings.trains


def test_cdk_json_context_equals_the_settings_defaults() -> None:
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    assert context == {option.key: option.default for option in OPTIONS}


def test_cli_strings_are_parsed_to_typed_values() -> None:
    settings = Settings.from_mapping(
        {"rootVolumeSize": "500", "deleteBucketOnDestroy": "TRUE", "logRetentionDays": "90", "prefix": "a1"}
    )
    assert settings.root_volume_size == 500
    assert settings.delete_bucket_on_destroy is True
    assert settings.log_retention_days == 90


def test_images_are_derived_per_region_and_overridable() -> None:
    cape_town = Settings.from_mapping({"region": "af-south-1"})
    assert cape_town.training_image.startswith("626614931356.dkr.ecr.af-south-1.amazonaws.com/pytorch-training:")
    assert ":2.9.0-gpu-py312-cu130-ubuntu22.04-ec2" in cape_town.training_image
    recipe = Settings.from_mapping({"imagePair": "recipe"})
    assert recipe.inference_image.endswith("/pytorch-inference-graviton:2.0.1-cpu-py310-ubuntu20.04-sagemaker")
    own = "123456789012.dkr.ecr.us-west-2.amazonaws.com/my-train:1"
    assert Settings.from_mapping({"trainingImageUri": own}).training_image == own


def test_an_existing_model_turns_training_off() -> None:
    settings = Settings.from_mapping({"modelDataUrl": "s3://bucket/path/model.tar.gz"})
    assert not settings.trains


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("region", "mars-1"),
        ("prefix", "Has_Upper"),
        ("trainingInstanceType", "m5.large"),
        ("rootVolumeSize", "20"),
        ("rootVolumeSize", "lots"),
        ("dlamiSsmParameter", "ami-0123456789abcdef0"),
        ("imagePair", "newest"),
        ("trainingImageUri", "pytorch-training:latest"),
        ("waitTimeoutMinutes", "1000"),
        ("endpointInstanceType", "c7g.4xlarge"),
        ("endpointInstanceCount", "0"),
        ("modelDataUrl", "https://bucket/model.tar.gz"),
        ("runId", "Run 1"),
        ("trainArgs", "--epochs 3; rm -rf /"),
        ("trainArgs", "--epochs 0"),
        ("trainArgs", "--learning-rat 1e-5"),
        ("trainArgs", "--optim adamw_bnb_8bit"),
        ("trainArgs", "--output-dir /elsewhere"),
        ("trainArgs", "--train-file /data/train.csv"),
        ("trainingInstanceType", "p4d.xlarge"),
        ("trainingInstanceCount", "0"),
        ("trainingInstanceCount", "17"),
        ("trainingInstanceCount", "two"),
        ("deleteBucketOnDestroy", "yes"),
        ("logRetentionDays", "10"),
    ],
)
def test_a_bad_value_names_the_key_the_value_and_what_is_allowed(key: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_mapping({key: value})
    message = str(caught.value)
    assert f"'{key}'" in message
    assert repr(value) in message
    assert "allowed is" in message
    assert "\n" not in message


def test_autoscaling_range_must_be_ordered_and_contain_the_instance_count() -> None:
    with pytest.raises(SettingsError, match="'autoscalingMinCapacity'"):
        Settings.from_mapping({"autoscalingMinCapacity": "3", "autoscalingMaxCapacity": "2"})
    with pytest.raises(SettingsError, match="'endpointInstanceCount'"):
        Settings.from_mapping({"endpointInstanceCount": "5", "autoscalingMaxCapacity": "2"})


@pytest.mark.parametrize(
    ("context", "reason"),
    [
        ({"trainArgs": "--epochs 0 --learning-rat 1e-5"}, "argument --epochs: 0 is not a positive integer"),
        ({"trainArgs": "--learning-rat 1e-5"}, "unrecognized argument --learning-rat (did you mean --learning-rate?)"),
        ({"trainArgs": "--epoch 3"}, "unrecognized argument --epoch (did you mean --epochs?)"),  # no abbreviations
        ({"trainArgs": "--output-dir /x"}, "--output-dir is set by the training instance"),
        ({"trainArgs": "--no-compile --compile-mode cudagraphs"}, "--compile-mode cudagraphs needs --compile"),
        ({"trainingInstanceType": "g5.xlarg"}, "did you mean g5.xlarge?"),
    ],
)
def test_a_value_that_would_only_fail_on_the_instance_fails_at_synth_saying_why(
    context: dict[str, str], reason: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_mapping(context)
    assert reason in str(caught.value)


def test_train_args_are_checked_by_the_training_scripts_own_parser() -> None:
    flags = "--epochs 3 --learning-rate 2e-5 --global-batch-size 64 --no-compile --optim adamw_torch"
    assert Settings.from_mapping({"trainArgs": flags}).train_args == flags
    assert check_user_flags(flags.split()).epochs == 3


def test_global_batch_must_split_over_the_instances_gpus() -> None:
    Settings.from_mapping({"trainingInstanceType": "g5.12xlarge", "trainArgs": "--global-batch-size 100"})  # 4 GPUs
    with pytest.raises(
        SettingsError, match=re.escape("the global batch 100 does not split over the 8 GPUs of p4d.24xlarge")
    ):
        Settings.from_mapping({"trainArgs": "--global-batch-size 100"})


def test_global_batch_must_split_over_every_gpu_of_a_cluster() -> None:
    Settings.from_mapping({"trainingInstanceCount": "2", "trainArgs": "--global-batch-size 64"})  # 16 GPUs
    with pytest.raises(SettingsError) as caught:
        Settings.from_mapping({"trainingInstanceCount": "2", "trainArgs": "--global-batch-size 24"})
    assert str(caught.value) == (
        "context 'trainArgs' = '--global-batch-size 24' is invalid: the global batch 24 does not split over the "
        "16 GPUs of 2 x p4d.24xlarge; allowed is a multiple of 16"
    )


def test_a_cluster_needs_an_efa_instance_type() -> None:
    assert Settings.from_mapping({"trainingInstanceCount": "4"}).training_instance_count == 4  # p4d.24xlarge
    assert Settings.from_mapping({"trainingInstanceType": "g5.xlarge"}).training_instance_count == 1
    for instance_type in ("g5.xlarge", "g6.48xlarge"):
        with pytest.raises(SettingsError) as caught:
            Settings.from_mapping({"trainingInstanceCount": "2", "trainingInstanceType": instance_type})
        assert str(caught.value).startswith(
            f"context 'trainingInstanceCount' = '2' is invalid: {instance_type} has no EFA network interface"
        )
        assert "allowed is 1, or a trainingInstanceType with EFA (" in str(caught.value)


@pytest.mark.parametrize("instance_type", ["p3.2xlarge", "p3.16xlarge", "p3dn.24xlarge"])
def test_volta_is_refused_for_the_cuda_13_image_and_the_oss_driver(instance_type: str) -> None:
    with pytest.raises(
        SettingsError, match=re.escape("V100 GPU (compute capability 7.0) is older than the training image")
    ):
        Settings.from_mapping({"trainingInstanceType": instance_type})
    with pytest.raises(SettingsError, match="older than the DLAMI's open-source NVIDIA driver"):
        Settings.from_mapping({"trainingInstanceType": instance_type, "imagePair": "recipe"})
    proprietary = "/aws/service/deeplearning/ami/x86_64/base-proprietary-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"
    Settings.from_mapping(
        {"trainingInstanceType": instance_type, "imagePair": "recipe", "dlamiSsmParameter": proprietary}
    )


def test_every_allowed_gpu_type_with_the_defaults_is_turing_or_newer_or_refused() -> None:
    for instance_type, spec in GPU_INSTANCE_TYPES.items():
        if spec.gpu.compute_capability >= 7.5:
            assert (
                Settings.from_mapping({"trainingInstanceType": instance_type}).training_instance_type == instance_type
            )
        else:
            with pytest.raises(SettingsError):
                Settings.from_mapping({"trainingInstanceType": instance_type})


def test_the_endpoint_type_must_run_the_inference_images_architecture() -> None:
    with pytest.raises(
        SettingsError, match=re.escape("'ml.c5.xlarge' is invalid: it is x86_64 and the inference image")
    ):
        Settings.from_mapping({"endpointInstanceType": "ml.c5.xlarge"})
    x86_dlc = "763104351884.dkr.ecr.us-west-2.amazonaws.com/pytorch-inference:2.6.0-cpu-py312-ubuntu22.04-sagemaker"
    Settings.from_mapping({"endpointInstanceType": "ml.c5.xlarge", "inferenceImageUri": x86_dlc})
    with pytest.raises(SettingsError, match=re.escape("'ml.c7g.4xlarge' is invalid: it is arm64")):
        Settings.from_mapping({"inferenceImageUri": x86_dlc})
    own_image = "123456789012.dkr.ecr.us-west-2.amazonaws.com/my-inference:1"  # its architecture is the user's
    for instance_type in ("ml.c5.xlarge", "ml.c7g.4xlarge"):
        Settings.from_mapping({"endpointInstanceType": instance_type, "inferenceImageUri": own_image})
    assert (
        Settings.from_mapping({"endpointInstanceType": "ml.m7gd.2xlarge"}).endpoint_instance_type == "ml.m7gd.2xlarge"
    )


def test_a_context_key_that_is_not_a_setting_is_refused_with_the_closest_name() -> None:
    with pytest.raises(SettingsError) as caught:
        reject_unknown_context(["trainingInstanceTyp"])
    assert (
        str(caught.value)
        == "context 'trainingInstanceTyp' is not a setting of this app; did you mean 'trainingInstanceType'?"
    )
    cdk_own = ["@aws-cdk/core:newStyleStackSynthesis", "aws:cdk:enable-path-metadata", "acknowledged-issue-numbers"]
    reject_unknown_context([*cdk_own, "availability-zones:account=123456789012:region=us-west-2", "runId"])
