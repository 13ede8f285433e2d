"""The Deep Learning Container images the app can deploy, and where each region keeps them.

Every tag below is listed in aws/deep-learning-containers `available_images.md`
(docs/reference/available_images.md for the current pair; the 2.0 rows of the older root file).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class ImagePair:
    training: str
    inference: str
    note: str


IMAGE_PAIRS: dict[str, ImagePair] = {
    "current": ImagePair(
        training="pytorch-training:2.9.0-gpu-py312-cu130-ubuntu22.04-ec2",
        inference="pytorch-inference-arm64:2.6.0-cpu-py312-ubuntu22.04-sagemaker",
        note="PyTorch 2.9 training, 2.6 Graviton inference; Python 3.12 runs the pinned transformers.",
    ),
    "recipe": ImagePair(
        training="pytorch-training:2.0.1-gpu-py310-cu118-ubuntu20.04-ec2",
        inference="pytorch-inference-graviton:2.0.1-cpu-py310-ubuntu20.04-sagemaker",
        note="The recipe's PyTorch 2.0 images: Python 3.10 and torch 2.0 are older than the pinned "
        "transformers supports (Python >= 3.11, torch >= 2.6); kept to reproduce the recipe's images.",
    ),
}

# Regions whose DLC registry is not the default account (available_images.md, "Region" table).
_DLC_ACCOUNTS = {
    "af-south-1": "626614931356",
    "ap-east-1": "871362719292",
    "ap-south-2": "772153158452",
    "ap-southeast-3": "907027046896",
    "ap-southeast-4": "457447274322",
    "ap-southeast-5": "550225433462",
    "ap-southeast-7": "590183813437",
    "ap-northeast-3": "364406365360",
    "ca-west-1": "204538143572",
    "eu-south-1": "692866216735",
    "eu-south-2": "503227376785",
    "eu-central-2": "380420809688",
    "il-central-1": "780543022126",
    "mx-central-1": "637423239942",
    "me-south-1": "217643126080",
    "me-central-1": "914824155844",
    "cn-north-1": "727897471807",
    "cn-northwest-1": "727897471807",
}
_DEFAULT_DLC_ACCOUNT = "763104351884"


def dlc_account(region: str) -> str:
    return _DLC_ACCOUNTS.get(region, _DEFAULT_DLC_ACCOUNT)


def dlc_registry(region: str) -> str:
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"{dlc_account(region)}.dkr.ecr.{region}.{suffix}"


# CUDA 13 dropped Maxwell, Pascal and Volta: its builds run on compute capability 7.5 (Turing) and newer.
_CUDA_FLOORS = {13: 7.5}
_GRAVITON_ENDPOINT = re.compile(r"ml\.[a-z]+[0-9]+g[a-z]*\.")


def min_compute_capability(image_uri: str) -> float | None:
    """The oldest GPU generation an image's CUDA build runs on, from its `-cuNNN-` tag; None if unknown."""
    match = re.search(r"-cu([0-9]+)[0-9]-", image_uri)  # cu130: CUDA 13.0
    return _CUDA_FLOORS.get(int(match.group(1))) if match else None


def image_architecture(image_uri: str) -> str:
    repository = repository_name(image_uri)
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
