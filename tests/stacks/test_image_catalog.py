"""The images come from the sagemaker image catalog: the generated table matches the pinned package."""

from __future__ import annotations

import pytest
from sagemaker.core import image_uris

from scripts.image_catalog import TABLE, regions, render
from stacks.images import CATALOG_INFERENCE_INSTANCE, IMAGE_PAIRS, INFERENCE_SCOPE, catalog_regions
from stacks.settings import Settings, SettingsError
from tests.stacks.synthesis import CUSTOM_CONTEXT, Synthesized


def test_the_committed_table_is_what_the_pinned_catalog_generates() -> None:
    """Every region of every pair, resolved through `image_uris.retrieve`: run `python -m scripts.image_catalog`."""
    assert TABLE.read_text() == render()


@pytest.mark.parametrize("pair", list(IMAGE_PAIRS))
def test_every_region_the_catalog_lists_gets_the_catalogs_images(pair: str) -> None:
    listed = regions(IMAGE_PAIRS[pair])
    assert catalog_regions(pair) == listed
    assert {"us-west-2", "af-south-1", "cn-north-1", "us-gov-west-1"} <= set(listed)
    for region in listed:
        settings = Settings.from_mapping({"region": region, "imagePair": pair})
        training, inference = settings.training_image, settings.inference_image
        assert training.endswith(f"/pytorch-training:{IMAGE_PAIRS[pair].training_ec2_tag}")
        assert training.split("/")[0] == inference.split("/")[0], region  # one DLC registry per region
        assert f".dkr.ecr.{region}.amazonaws.com" in inference


def test_synth_uses_the_catalogs_graviton_image(custom_app: Synthesized) -> None:
    """What the recipe called: `image_uris.retrieve("pytorch", region, version, instance_type, image_scope)`."""
    pair = IMAGE_PAIRS[CUSTOM_CONTEXT["imagePair"]]
    expected = image_uris.retrieve(
        "pytorch",
        CUSTOM_CONTEXT["region"],
        version=pair.inference_version,
        instance_type=CATALOG_INFERENCE_INSTANCE,
        image_scope=INFERENCE_SCOPE,
    )
    models = custom_app.template("inference").find_resources("AWS::SageMaker::Model")
    (model,) = models.values()
    assert model["Properties"]["PrimaryContainer"]["Image"] == expected


def test_a_region_without_the_images_is_one_error_line() -> None:
    with pytest.raises(SettingsError, match=r"^context 'region' = 'xx-nowhere-1' is invalid: allowed is a region"):
        Settings.from_mapping({"region": "xx-nowhere-1"})
    own = "123456789012.dkr.ecr.xx-nowhere-1.amazonaws.com/mine:1"
    assert Settings.from_mapping({"region": "xx-nowhere-1", "trainingImageUri": own, "inferenceImageUri": own})
