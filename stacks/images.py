"""The Deep Learning Container images the app can deploy, resolved per region from the sagemaker image catalog.

The choices (framework versions, the EC2 training tag) are here; the registry accounts and the
inference tags come from `sagemaker.core.image_uris`, the catalog the sagemaker SDK keeps, through the
table `stacks/image_catalog.py` generated from it (`python -m scripts.image_catalog`). Synth reads the
table rather than the package: importing the package adds seconds to every synth (see README,
Dependencies), and a test regenerates the table from the pinned package and fails on any difference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from stacks.image_catalog import CATALOG

# What `image_uris.retrieve` is asked for: a GPU training instance (for the processor) and the recipe's endpoint.
CATALOG_TRAINING_INSTANCE = "ml.p4d.24xlarge"
CATALOG_INFERENCE_INSTANCE = "ml.c7g.4xlarge"
INFERENCE_SCOPE = "inference_graviton"


@dataclass(frozen=True)
class ImagePair:
    training_version: str
    training_python: str
    # The catalog knows the SageMaker training tags only; the EC2 tag is aws/deep-learning-containers
    # available_images.md's, in the catalog's repository and account.
    training_ec2_tag: str
    inference_version: str
    note: str


IMAGE_PAIRS: dict[str, ImagePair] = {
    "current": ImagePair(
        training_version="2.9.0",
        training_python="py312",
        training_ec2_tag="2.9.0-gpu-py312-cu130-ubuntu22.04-ec2",
        inference_version="2.6.0",
        note="PyTorch 2.9 training, 2.6 Graviton inference; Python 3.12 runs the pinned transformers.",
    ),
    "recipe": ImagePair(
        training_version="2.0.1",
        training_python="py310",
        training_ec2_tag="2.0.1-gpu-py310-cu118-ubuntu20.04-ec2",
        inference_version="2.0.1",
        note="The recipe's PyTorch 2.0 images: Python 3.10 and torch 2.0 are older than the pinned "
        "transformers supports (Python >= 3.11, torch >= 2.6); kept to reproduce the recipe's images.",
    ),
}


def catalog_regions(pair: str) -> list[str]:
    """Regions whose DLC registry the catalog lists for both images of the pair."""
    return sorted(CATALOG[pair])


def training_image(pair: str, region: str) -> str:
    return f"{CATALOG[pair][region].training_repository}:{IMAGE_PAIRS[pair].training_ec2_tag}"


def inference_image(pair: str, region: str) -> str:
    return CATALOG[pair][region].inference_image


# CUDA 13 dropped Maxwell, Pascal and Volta: its builds run on compute capability 7.5 (Turing) and newer.
_CUDA_FLOORS = {13: 7.5}
_GRAVITON_ENDPOINT = re.compile(r"ml\.[a-z]+[0-9]+g[a-z]*\.")


def min_compute_capability(image_uri: str) -> float | None:
    """The oldest GPU generation an image's CUDA build runs on, from its `-cuNNN-` tag; None if unknown."""
    match = re.search(r"-cu([0-9]+)[0-9]-", image_uri)  # cu130: CUDA 13.0
    return _CUDA_FLOORS.get(int(match.group(1))) if match else None


def image_architecture(image_uri: str) -> str | None:
    """The CPU architecture of a DLC inference image, from its repository; None for an image of the user's own."""
    repository = repository_name(image_uri)
    if not repository.startswith("pytorch-inference"):
        return None
    return "arm64" if "arm64" in repository or "graviton" in repository else "x86_64"


def endpoint_architecture(instance_type: str) -> str:
    """Graviton SageMaker types are the families with a `g` after the generation: ml.c7g, ml.m6gd, ..."""
    return "arm64" if _GRAVITON_ENDPOINT.match(instance_type) else "x86_64"


def registry_account(image_uri: str) -> str:
    """The AWS account that owns an ECR image URI (its first label)."""
    return image_uri.split(".", 1)[0]


def repository_name(image_uri: str) -> str:
    """`repo` of `account.dkr.ecr.region.amazonaws.com/repo:tag`."""
    return image_uri.split("/", 1)[1].rsplit(":", 1)[0]


def image_tag(image_uri: str) -> str:
    """`repo:tag` of `account.dkr.ecr.region.amazonaws.com/repo:tag`."""
    return image_uri.split("/", 1)[1]
