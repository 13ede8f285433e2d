"""Every deploy-time choice, read once from CDK context and validated before any construct exists.

A bad value stops synth with one line naming the context key, the value and what is allowed
(`SettingsError`), so nothing half-built is ever written to `cdk.out`.
"""

from __future__ import annotations

import argparse
import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stacks.images import (
    IMAGE_PAIRS,
    ImagePair,
    catalog_regions,
    endpoint_architecture,
    image_architecture,
    inference_image,
    min_compute_capability,
    training_image,
)
from stacks.instance_types import EFA_INTERFACES, GPU_INSTANCE_TYPES, OSS_DRIVER_MIN_COMPUTE_CAPABILITY, families
from training.arguments import DEFAULT_LABELS, FILE_BUILDERS, ArgumentsError, check_user_flags, parse_labels

# CloudWatch Logs accepts only these retention periods.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557)
# Context the CDK CLI and library set themselves: feature flags (@aws-cdk/...), aws:cdk:* switches,
# cached lookups (availability-zones:account=...), and cdk.context.json's acknowledged notices.
_CDK_CONTEXT = re.compile(r"@|[^:]+:|acknowledged-issue-numbers$")


class SettingsError(ValueError):
    """A context value outside what the app supports; its message is one line for the user."""


class InvalidValueError(ValueError):
    """Raised by a parser that can say why a value is wrong; the reason goes into the error line."""


@dataclass(frozen=True)
class Option:
    """One context key: its default, how to parse it and what the error message says is allowed."""

    key: str
    default: Any
    parse: Callable[[str], Any]
    allowed: str
    help: str


def _matching(pattern: str) -> Callable[[str], str]:
    compiled = re.compile(pattern)

    def parse(raw: str) -> str:
        if not compiled.fullmatch(raw):
            raise ValueError(raw)
        return raw

    return parse


def _integer(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw)
        if not low <= value <= high:
            raise ValueError(raw)
        return value

    return parse


def _one_of(*choices: Any) -> Callable[[str], Any]:
    by_text = {str(choice): choice for choice in choices}

    def parse(raw: str) -> Any:
        return by_text[raw]

    return parse


def _boolean(raw: str) -> bool:
    return {"true": True, "false": False}[raw.lower()]


def _optional(parse: Callable[[str], str]) -> Callable[[str], str]:
    return lambda raw: raw if raw == "" else parse(raw)


def _one_of_suggesting(choices: Iterable[str]) -> Callable[[str], str]:
    known = list(choices)

    def parse(raw: str) -> str:
        if raw in known:
            return raw
        close = difflib.get_close_matches(raw, known, n=1)
        raise InvalidValueError(f"did you mean {close[0]}?" if close else "not a known type")

    return parse


def _training_flags(raw: str) -> str:
    """The characters the instance's shell can take unquoted, then training.train's own parser."""
    _matching(r"[A-Za-z0-9 ._=/:,-]*")(raw)
    try:
        check_user_flags(raw.split())
    except ArgumentsError as error:
        raise InvalidValueError(str(error)) from None
    return raw


# The data URLs and labels travel in the user data, which EC2 caps at 16 KB (bootstrap.sh takes ~7 KB).
MAX_DATA_URL = 256
MAX_LABELS_SETTING = 2000
_DATA_URL = re.compile(r"s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(?P<key>[A-Za-z0-9_=+-][A-Za-z0-9._=+/-]*)")
_DATA_URL_ALLOWED = (
    "empty or an s3://bucket/key URL of a "
    + ", ".join(FILE_BUILDERS)
    + f" file (key: letters, digits and ._=+/-; at most {MAX_DATA_URL} characters)"
)
_KMS_KEY_ARN = (
    r"arn:aws(-cn|-us-gov)?:kms:[a-z]{2}(-gov)?-[a-z]+-[0-9]:[0-9]{12}:key/"
    r"(mrk-[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
)


def _data_url(raw: str) -> str:
    """An S3 object whose key IAM reads literally (no * or ?) and training/data.py can load."""
    match = _DATA_URL.fullmatch(raw)
    if not match:
        raise ValueError(raw)
    if len(raw) > MAX_DATA_URL:
        raise InvalidValueError(f"{len(raw)} characters")
    suffix = Path(match["key"]).suffix.lower()
    if suffix not in FILE_BUILDERS:
        raise InvalidValueError(f"{suffix or 'no extension'} is not a data file type")
    return raw


def _labels(raw: str) -> str:
    try:
        labels = ",".join(parse_labels(raw))
    except argparse.ArgumentTypeError as error:
        raise InvalidValueError(str(error)) from None
    if len(labels) > MAX_LABELS_SETTING:
        raise InvalidValueError(f"{len(labels)} characters")
    return labels


_IMAGE_URI = r"[0-9]{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/[a-z0-9._/-]+:[A-Za-z0-9._-]+"

OPTIONS: tuple[Option, ...] = (
    Option(
        "region",
        "us-west-2",
        _matching(r"[a-z]{2}(-gov)?-[a-z]+-[0-9]"),
        "an AWS region name such as us-west-2",
        "Region of all three stacks.",
    ),
    Option(
        "prefix",
        "pt2",
        _matching(r"[a-z][a-z0-9-]{1,15}"),
        "2-16 characters: lowercase letters, digits, '-', starting with a letter",
        "Stack-name prefix; two copies with different prefixes can share an account.",
    ),
    Option(
        "trainingInstanceType",
        "p4d.24xlarge",
        _one_of_suggesting(GPU_INSTANCE_TYPES),
        f"a GPU instance type of the families {', '.join(families())} (each size: stacks/instance_types.py)",
        "EC2 instance type of the training instance.",
    ),
    Option(
        "trainingInstanceCount",
        1,
        _integer(1, 16),
        "an integer from 1 to 16",
        "Instances that train as one torchrun job; above 1 an EFA type (README, Scale-out).",
    ),
    Option(
        "rootVolumeSize",
        200,
        _integer(100, 16384),
        "an integer from 100 to 16384",
        "Size in GiB of the encrypted gp3 root volume (DLAMI, images, checkpoints).",
    ),
    Option(
        "dlamiSsmParameter",
        "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id",
        _matching(r"/aws/service/deeplearning/ami/x86_64/[a-z0-9.-]+/latest/ami-id"),
        "a public DLAMI SSM parameter /aws/service/deeplearning/ami/x86_64/<ami type>/latest/ami-id",
        "Public SSM parameter of the Deep Learning AMI, read once per run (README, Later deploys).",
    ),
    Option(
        "imagePair",
        "current",
        _one_of(*IMAGE_PAIRS),
        f"one of {', '.join(IMAGE_PAIRS)}",
        "Deep Learning Container pair: the current 2.x images or the recipe's PyTorch 2.0 ones.",
    ),
    Option(
        "trainingImageUri",
        "",
        _optional(_matching(_IMAGE_URI)),
        "empty (derived from imagePair and region) or an ECR image URI account.dkr.ecr.region.amazonaws.com/repo:tag",
        "Overrides the training image.",
    ),
    Option(
        "inferenceImageUri",
        "",
        _optional(_matching(_IMAGE_URI)),
        "empty (derived from imagePair and region) or an ECR image URI account.dkr.ecr.region.amazonaws.com/repo:tag",
        "Overrides the inference image.",
    ),
    Option(
        "waitTimeoutMinutes",
        120,
        _integer(15, 720),
        "an integer from 15 to 720",
        "How long deploy waits for the model before failing; also the instance's hard stop.",
    ),
    Option(
        "endpointInstanceType",
        "ml.c7g.4xlarge",
        _matching(r"ml\.[a-z0-9]+\.[0-9]*x?large"),
        "a SageMaker instance type such as ml.c7g.4xlarge",
        "Instance type of the endpoint.",
    ),
    Option(
        "inferenceMode",
        "int8",
        _one_of("fp32", "int8", "bf16"),
        "one of fp32, int8, bf16",
        "Endpoint numerics: int8 (ONNX Runtime on the int8 graph packaged with the model), fp32 or bf16 "
        "(PyTorch eager, bf16 autocast); docs/benchmarks.md has the measurements.",
    ),
    Option(
        "endpointInstanceCount",
        1,
        _integer(1, 10),
        "an integer from 1 to 10",
        "Instances the endpoint starts with.",
    ),
    Option(
        "autoscalingMinCapacity",
        1,
        _integer(1, 10),
        "an integer from 1 to 10",
        "Fewest endpoint instances autoscaling keeps.",
    ),
    Option(
        "autoscalingMaxCapacity",
        2,
        _integer(1, 20),
        "an integer from 1 to 20",
        "Most endpoint instances autoscaling adds.",
    ),
    Option(
        "modelDataUrl",
        "",
        _optional(_matching(r"s3://[a-z0-9.-]{3,63}/[^\s]*\.tar\.gz")),
        "empty (train) or an s3://bucket/key.tar.gz model archive",
        "Serve an existing model.tar.gz instead of training one (no training stack).",
    ),
    Option(
        "runId",
        "run-1",
        _matching(r"[a-z0-9][a-z0-9-]{0,31}"),
        "1-32 characters: lowercase letters, digits, '-'",
        "Training run; a new id trains a fresh model and rolls the endpoint to it.",
    ),
    Option(
        "trainArgs",
        "",
        _training_flags,
        "flags of python -m training.train (see its --help) made of letters, digits, spaces and ._=/:,-",
        "Extra flags for training/train.py, e.g. '--epochs 3'; checked with its own parser at synth.",
    ),
    Option(
        "trainDataUrl",
        "",
        _optional(_data_url),
        _DATA_URL_ALLOWED,
        "Your training file (text,label) instead of tweet_eval; goes with validationDataUrl (README: Your own data).",
    ),
    Option(
        "validationDataUrl",
        "",
        _optional(_data_url),
        _DATA_URL_ALLOWED,
        "Your validation file, which picks the best checkpoint; goes with trainDataUrl.",
    ),
    Option(
        "testDataUrl",
        "",
        _optional(_data_url),
        _DATA_URL_ALLOWED,
        "Your held-out test file, scored once at the end (optional, with trainDataUrl).",
    ),
    Option(
        "labels",
        ",".join(DEFAULT_LABELS),
        _labels,
        f"comma-separated class names (at least 2) of letters, digits, spaces and _.+-, at most {MAX_LABELS_SETTING} "
        "characters in all",
        "Class names, id 0 first: the endpoint answers with them; a file's label column holds names or ids.",
    ),
    Option(
        "dataKmsKeyArn",
        "",
        _optional(_matching(_KMS_KEY_ARN)),
        "empty (objects unencrypted or SSE-S3) or a KMS key ARN arn:aws:kms:region:account:key/key-id",
        "The KMS key your data objects are encrypted with: the instance may decrypt with it, through S3 only.",
    ),
    Option(
        "deleteBucketOnDestroy",
        False,
        _boolean,
        "true or false",
        "Whether cdk destroy empties and deletes the artifact bucket (default: keep the models).",
    ),
    Option(
        "keepInstanceOnFailure",
        False,
        _boolean,
        "true or false",
        "Keep a failed training instance up for Session Manager debugging (until the timeout); make deploy then "
        "deploys with --no-rollback, since a rollback would terminate it.",
    ),
    Option(
        "alarmEmail",
        "",
        _optional(_matching(r"[^@\s'\"]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")),
        "empty (no subscription) or an e-mail address such as ops@example.com",
        "Subscribes this address to the alarm topic; AWS e-mails a confirmation link first.",
    ),
    Option(
        "logRetentionDays",
        30,
        _one_of(*LOG_RETENTION_DAYS),
        "a CloudWatch Logs retention period in days (1, 3, 5, 7, 14, 30, 60, 90, ...)",
        "Retention of the training, flow and endpoint log groups.",
    ),
)


@dataclass(frozen=True)
class Settings:
    region: str
    prefix: str
    training_instance_type: str
    training_instance_count: int
    root_volume_size: int
    dlami_ssm_parameter: str
    image_pair: str
    training_image_uri: str
    inference_image_uri: str
    wait_timeout_minutes: int
    endpoint_instance_type: str
    inference_mode: str
    endpoint_instance_count: int
    autoscaling_min_capacity: int
    autoscaling_max_capacity: int
    model_data_url: str
    run_id: str
    train_args: str
    train_data_url: str
    validation_data_url: str
    test_data_url: str
    labels: str
    data_kms_key_arn: str
    delete_bucket_on_destroy: bool
    keep_instance_on_failure: bool
    alarm_email: str
    log_retention_days: int

    @classmethod
    def from_context(cls, context: Callable[[str], Any]) -> Settings:
        """Reads each option through `context` (e.g. `app.node.try_get_context`)."""
        values = {_attribute(option.key): _parse(option, context(option.key)) for option in OPTIONS}
        settings = cls(**values)
        settings._check_combinations()
        return settings

    @classmethod
    def from_mapping(cls, context: Mapping[str, Any]) -> Settings:
        return cls.from_context(context.get)

    def _check_combinations(self) -> None:
        self._check_region_has_images()
        self._check_autoscaling_range()
        if self.trains:
            self._check_gpu_generation()
            self._check_cluster_type()
            self._check_batch_split()
        self._check_data_files()
        self._check_endpoint_architecture()

    def _check_region_has_images(self) -> None:
        if not (self.training_image_uri and self.inference_image_uri) and self.region not in catalog_regions(
            self.image_pair
        ):
            raise SettingsError(
                f"context 'region' = {self.region!r} is invalid: allowed is a region where the DLC catalog lists "
                f"the '{self.image_pair}' images ({', '.join(catalog_regions(self.image_pair))}), or set both "
                "trainingImageUri and inferenceImageUri"
            )

    def _check_autoscaling_range(self) -> None:
        if self.autoscaling_min_capacity > self.autoscaling_max_capacity:
            raise SettingsError(
                f"context 'autoscalingMinCapacity' = {self.autoscaling_min_capacity!r} is invalid: "
                f"allowed is at most autoscalingMaxCapacity ({self.autoscaling_max_capacity})"
            )
        if not self.autoscaling_min_capacity <= self.endpoint_instance_count <= self.autoscaling_max_capacity:
            raise SettingsError(
                f"context 'endpointInstanceCount' = {self.endpoint_instance_count!r} is invalid: allowed is "
                f"{self.autoscaling_min_capacity} to {self.autoscaling_max_capacity} (the autoscaling range)"
            )

    def _check_gpu_generation(self) -> None:
        """Both the image's CUDA build and the AMI's driver have an oldest GPU they run on."""
        gpu = GPU_INSTANCE_TYPES[self.training_instance_type].gpu
        floors = [(min_compute_capability(self.training_image), f"the training image {self.training_image}")]
        if "oss-nvidia-driver" in self.dlami_ssm_parameter:
            floors.append((OSS_DRIVER_MIN_COMPUTE_CAPABILITY, "the DLAMI's open-source NVIDIA driver"))
        for floor, needs in floors:
            if floor is not None and gpu.compute_capability < floor:
                raise SettingsError(
                    f"context 'trainingInstanceType' = {self.training_instance_type!r} is invalid: its "
                    f"{gpu.model} GPU (compute capability {gpu.compute_capability}) is older than {needs} "
                    f"supports; allowed is a GPU of compute capability {floor} or newer (g4dn, g5, g6, p4d, p5, ...)"
                )

    def _check_cluster_type(self) -> None:
        """Instances of one torchrun job talk over EFA (stacks/training_cluster.py); a type without it cannot."""
        if self.training_instance_count > 1 and not GPU_INSTANCE_TYPES[self.training_instance_type].efa_interfaces:
            raise SettingsError(
                f"context 'trainingInstanceCount' = '{self.training_instance_count}' is invalid: "
                f"{self.training_instance_type} has no EFA network interface, which training across instances "
                f"needs; allowed is 1, or a trainingInstanceType with EFA ({', '.join(EFA_INTERFACES)})"
            )

    def _check_batch_split(self) -> None:
        """Every process takes an equal share of the global batch (training/batching.py)."""
        gpus = GPU_INSTANCE_TYPES[self.training_instance_type].gpus * self.training_instance_count
        batch = check_user_flags(self.train_args.split()).global_batch_size
        if batch % gpus:
            instances = self.training_instance_type
            if self.training_instance_count > 1:
                instances = f"{self.training_instance_count} x {instances}"
            raise SettingsError(
                f"context 'trainArgs' = {self.train_args!r} is invalid: the global batch {batch} does not split "
                f"over the {gpus} GPUs of {instances}; allowed is a multiple of {gpus}"
            )

    def _check_data_files(self) -> None:
        """The user's files replace the hub dataset as a whole, as training.train's own file flags do."""
        urls = {"trainDataUrl": self.train_data_url, "validationDataUrl": self.validation_data_url}
        given = {key: url for key, url in {**urls, "testDataUrl": self.test_data_url}.items() if url}
        if given and not self.trains:
            key, url = next(iter(given.items()))
            raise SettingsError(
                f"context '{key}' = {url!r} is invalid: allowed is empty with modelDataUrl (no training)"
            )
        if len(given.keys() & urls.keys()) == 1:
            (missing,) = urls.keys() - given.keys()
            raise SettingsError(
                f"context '{missing}' = '' is invalid: allowed is an s3:// URL, since the train and validation "
                "files go together"
            )
        if self.train_data_url:
            self._check_train_args_leave_the_files_out()
            return
        for key, value in (("testDataUrl", self.test_data_url), ("dataKmsKeyArn", self.data_kms_key_arn)):
            if value:
                raise SettingsError(
                    f"context '{key}' = {value!r} is invalid: allowed is empty without trainDataUrl "
                    "and validationDataUrl"
                )

    def _check_train_args_leave_the_files_out(self) -> None:
        flags = check_user_flags(self.train_args.split())
        paths = {
            "--train-file": flags.train_file,
            "--validation-file": flags.validation_file,
            "--test-file": flags.test_file,
        }
        named = [flag for flag, path in paths.items() if path is not None]
        if named:
            raise SettingsError(
                f"context 'trainArgs' = {self.train_args!r} is invalid: {named[0]} would replace the files of "
                f"trainDataUrl and the others; allowed is trainArgs without {', '.join(paths)} when they are set"
            )

    def _check_endpoint_architecture(self) -> None:
        image, endpoint = image_architecture(self.inference_image), endpoint_architecture(self.endpoint_instance_type)
        if image is not None and image != endpoint:
            raise SettingsError(
                f"context 'endpointInstanceType' = {self.endpoint_instance_type!r} is invalid: it is {endpoint} "
                f"and the inference image {self.inference_image} is {image}; allowed is an {image} type"
                + (" (Graviton: ml.c7g, ml.m7g, ml.r7g, ...)" if image == "arm64" else "")
            )

    @property
    def images(self) -> ImagePair:
        return IMAGE_PAIRS[self.image_pair]

    @property
    def trains(self) -> bool:
        """False when the endpoint serves an existing model: then no training stack is deployed."""
        return self.model_data_url == ""

    @property
    def data_urls(self) -> dict[str, str]:
        """The user's data files by split (train, validation, test): only those given."""
        splits = {"train": self.train_data_url, "validation": self.validation_data_url, "test": self.test_data_url}
        return {split: url for split, url in splits.items() if url}

    @property
    def training_image(self) -> str:
        return self.training_image_uri or training_image(self.image_pair, self.region)

    @property
    def inference_image(self) -> str:
        return self.inference_image_uri or inference_image(self.image_pair, self.region)

    @property
    def endpoint_name(self) -> str:
        """Named, unlike the other resources, so its log group can exist (with retention) before it. The name
        carries the instance type: SageMaker refuses to change the type of a variant under autoscaling, so a
        new type makes a new endpoint (and scaling target, and log group) instead, which needs a new name."""
        return f"{self.prefix}-endpoint-{self.endpoint_instance_type.removeprefix('ml.').replace('.', '-')}"

    @property
    def endpoint_log_group_name(self) -> str:
        return f"/aws/sagemaker/Endpoints/{self.endpoint_name}"

    @property
    def metrics_namespace(self) -> str:
        """CloudWatch namespace of the training run's EMF metrics (training/emf.py); one per deployment."""
        return f"{self.prefix}/training"

    @property
    def run_prefix(self) -> str:
        """Key prefix in the artifact bucket under which this run's checkpoints and model live."""
        return f"runs/{self.run_id}"


def reject_unknown_context(keys: Iterable[str]) -> None:
    """A misspelt key would otherwise be ignored and its setting left at the default (p4d.24xlarge, say)."""
    settings = [option.key for option in OPTIONS]
    for key in keys:
        if key not in settings and not _CDK_CONTEXT.match(key):
            close = difflib.get_close_matches(key, settings, n=1)
            hint = f"did you mean '{close[0]}'?" if close else "the settings are listed in the README, Configuration"
            raise SettingsError(f"context '{key}' is not a setting of this app; {hint}")


def _attribute(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def _parse(option: Option, raw: Any) -> Any:
    if raw is None:
        return option.default
    text = str(raw).lower() if isinstance(raw, bool) else str(raw)
    try:
        return option.parse(text)
    except InvalidValueError as reason:
        raise SettingsError(
            f"context '{option.key}' = {text!r} is invalid: {reason}; allowed is {option.allowed}"
        ) from None
    except (ValueError, KeyError):
        raise SettingsError(f"context '{option.key}' = {text!r} is invalid: allowed is {option.allowed}") from None
