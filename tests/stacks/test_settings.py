"""Settings: defaults, parsing of CLI strings, and one-line errors that name the context key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stacks.settings import OPTIONS, Settings, SettingsError

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
