"""The whole user journey against an AWS emulator on loopback (`make e2e-local`), top to bottom:

upload the user's labelled files to S3 -> cdk bootstrap -> cdk deploy --all with their URLs and
labels -> read back what CloudFormation made -> play the training instance (a failed first boot,
whose stack is rolled back while its logs stay; then, deployed again, a successful one, then a
reboot) -> the endpoint's stack puts the handler into the run's archive -> serve the model the
endpoint would serve -> edit the handler and deploy: a new serving archive, no instance -> deploy a
new run that names a missing file, whose instance fails within a minute -> deploy the next run on a
cluster of two instances -> play both nodes, which train as one job -> switch to serving an existing
model without training, and back -> cdk destroy --all -> nothing billable left. The real CDK CLI, the real aws CLI
and boto3 talk to moto (tests/e2e/emulator.py lists where moto differs from AWS and how each
difference is handled).

The tests share one emulator and run in file order: each phase builds on the one before.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import shlex
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from inference.serve import LocalEndpoint, free_port
from stacks.inference_stack import HANDLER
from tests.e2e.emulator import DLAMI_AMI, NEXT_DLAMI_AMI, UNDELETED_TYPES, release_dlami
from tests.e2e.instance import Boot, EmulatedInstance, on_loopback, user_data
from tests.e2e.local_aws import LocalAws, Stack, local_aws
from tests.wheel_sets import locked_set
from training import wheels
from training.tiny_model import build_model, write_dataset

pytestmark = pytest.mark.slow

CONTEXT = json.loads((Path(__file__).resolve().parents[2] / "cdk.json").read_text())["context"]

PREFIX = "pt2"
STACKS = ("foundation", "training", "inference")
ENDPOINT = f"{PREFIX}-endpoint-c7g-4xlarge"  # the endpoint's name carries its instance type
SENTENCE = "Covid cases are increasing fast!"
EXTERNAL_MODEL_BUCKET = "someone-elses-models"
EXTERNAL_MODEL_KEY = "roberta/model.tar.gz"
CLUSTER_RUN = "run-3"
OTHER_DLAMI_PARAMETER = (
    "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-amazon-linux-2023/latest/ami-id"
)
CLUSTER_NODES = 2
P4D_EFA_INTERFACES = 4
# The user's own data: their bucket, their files (label names in the label column), their classes.
DATA_BUCKET = "my-labelled-texts"
DATA_KEYS = {"train": "tweets/v1/train.csv", "validation": "tweets/v1/validation.csv", "test": "tweets/v1/test.csv"}
MISSING_KEY = "tweets/v2/validation.csv"
USER_LABELS = ("complaint", "other", "praise")
MODEL_IN_CONTAINER = "/workspace/output/inputs/tiny-model"  # where `play` stages it: the model hub's stand-in
TRAIN_ARGS = (
    f"--model-name {MODEL_IN_CONTAINER} --epochs 1 --global-batch-size 16 --learning-rate 2e-3 --no-compile --no-bf16"
)
# `cdk deploy --all` as far as the training stack's WaitCondition. CloudFormation holds the inference stack
# there until the instance signals; moto completes the wait at once (tests/e2e/emulator.py), so a new run
# is deployed this far, its instance played, and then `--all` deploys the inference stack.
UNTIL_THE_WAIT = (f"{PREFIX}-foundation", f"{PREFIX}-training")


def data_url(split: str) -> str:
    return f"s3://{DATA_BUCKET}/{DATA_KEYS[split]}"


def own_data(**urls: str) -> dict[str, str]:
    """The context of a training on the user's files: `-c trainDataUrl=... -c labels=...` and the rest."""
    return {
        "trainArgs": TRAIN_ARGS,
        "trainDataUrl": data_url("train"),
        "validationDataUrl": data_url("validation"),
        "testDataUrl": data_url("test"),
        "labels": ",".join(USER_LABELS),
        **urls,
    }


# ---- the account and the first deploy -----------------------------------------------------------------


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalAws]:
    with local_aws(tmp_path_factory.mktemp("local-aws")) as account:
        yield account
        assert account.trap.attempts == [], "something tried to leave the machine"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inputs")
    data = write_dataset(root / "data", train=240, validation=30, test=30, labels=USER_LABELS, names=True)
    return {"model": build_model(root / "tiny-model"), **{split: data / f"{split}.csv" for split in DATA_KEYS}}


@pytest.fixture(scope="module")
def deployed(aws: LocalAws, inputs: dict[str, Path]) -> dict[str, Stack]:
    """The user's two commands: upload the files, then deploy with their URLs and labels."""
    aws.client("s3").create_bucket(Bucket=DATA_BUCKET, CreateBucketConfiguration={"LocationConstraint": aws.region})
    for split in DATA_KEYS:
        upload(aws, split, inputs[split])
    aws.bootstrap()
    aws.deploy(*UNTIL_THE_WAIT, **own_data())
    return {name: aws.stack(f"{PREFIX}-{name}") for name in ("foundation", "training")}


def upload(aws: LocalAws, split: str, path: Path) -> None:
    aws.client("s3").put_object(Bucket=DATA_BUCKET, Key=DATA_KEYS[split], Body=path.read_bytes())


def test_the_stacks_up_to_the_wait_are_created_and_the_endpoint_waits_for_the_model(
    aws: LocalAws, deployed: dict[str, Stack]
) -> None:
    statuses = aws.stack_statuses()
    assert {name: statuses[f"{PREFIX}-{name}"] for name in deployed} == dict.fromkeys(deployed, "CREATE_COMPLETE")
    assert f"{PREFIX}-inference" not in statuses


def test_network_has_private_subnets_and_one_nat_gateway(aws: LocalAws, deployed: dict[str, Stack]) -> None:
    ec2 = aws.client("ec2")
    vpc = deployed["foundation"].only("AWS::EC2::VPC")
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]
    assert len(subnets) == 4
    assert len({subnet["AvailabilityZone"] for subnet in subnets}) == 2
    assert sum(subnet["MapPublicIpOnLaunch"] for subnet in subnets) == 2  # the NAT gateway's
    (nat,) = ec2.describe_nat_gateways(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["NatGateways"]
    assert nat["State"] == "available"
    assert ec2.describe_vpc_endpoints(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["VpcEndpoints"]


def test_buckets_are_encrypted_versioned_and_never_public(aws: LocalAws, deployed: dict[str, Stack]) -> None:
    s3 = aws.client("s3")
    buckets = deployed["foundation"].physical_ids("AWS::S3::Bucket")
    assert len(buckets) == 2
    for bucket in buckets:
        (rule,) = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
        assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
        assert set(s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"].values()) == {True}
        assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"


def test_what_the_emulator_skips_is_in_the_deployed_templates(aws: LocalAws, deployed: dict[str, Stack]) -> None:
    """Bucket policies and access logging: moto accepts them without creating them."""
    foundation = aws.template(f"{PREFIX}-foundation")["Resources"]
    policies = [r for r in foundation.values() if r["Type"] == "AWS::S3::BucketPolicy"]
    assert len(policies) == 2
    for policy in policies:
        deny = next(s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny")
        assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert any("LoggingConfiguration" in r.get("Properties", {}) for r in foundation.values())


def test_training_instance_is_the_configured_gpu_type_from_the_dlami(aws: LocalAws, deployed: dict[str, Stack]) -> None:
    ec2 = aws.client("ec2")
    instance = _instance(aws, deployed["training"])
    assert instance["InstanceType"] == "p4d.24xlarge"
    dlami = aws.client("ssm").get_parameter(Name=CONTEXT["dlamiSsmParameter"])["Parameter"]["Value"]
    assert instance["ImageId"] == dlami == DLAMI_AMI  # read by the run's own resolver function
    assert instance["MetadataOptions"]["HttpTokens"] == "required"
    assert "KeyName" not in instance
    shutdown = ec2.describe_instance_attribute(
        InstanceId=instance["InstanceId"], Attribute="instanceInitiatedShutdownBehavior"
    )
    assert shutdown["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"
    (root,) = instance["BlockDeviceMappings"]
    assert root["DeviceName"] == "/dev/sda1"
    assert root["Ebs"]["DeleteOnTermination"]
    (volume,) = ec2.describe_volumes(VolumeIds=[root["Ebs"]["VolumeId"]])["Volumes"]
    assert (volume["Size"], volume["VolumeType"], volume["Encrypted"]) == (200, "gp3", True)
    for group in deployed["training"].physical_ids("AWS::EC2::SecurityGroup"):
        (described,) = ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"]
        assert described["IpPermissions"] == []


def test_instance_role_grants_exactly_what_the_user_data_uses(aws: LocalAws, deployed: dict[str, Stack]) -> None:
    """The joints between the user data and IAM, with every token resolved by CloudFormation."""
    exports = _exports(user_data(aws.client("ec2"), _instance(aws, deployed["training"])["InstanceId"]))
    role = _role_policies(aws, deployed["foundation"], "InstanceRole")
    for asset in ("TRAINING", "INFERENCE", "DOCKER"):
        url = exports[f"{asset}_ASSET_S3_URI"]
        assert _allows(role, "s3:GetObject", _s3_arn(url)), url
        bucket, key = url.removeprefix("s3://").split("/", 1)
        assert aws.client("s3").head_object(Bucket=bucket, Key=key)["ContentLength"] > 0  # the published asset
    for name in ("MODEL_S3_URI", "METRICS_S3_URI"):
        assert _allows(role, "s3:PutObject", _s3_arn(exports[name])), name
    assert _allows(role, "s3:PutObject", _s3_arn(exports["CHECKPOINT_S3_URI"] + "/checkpoint-9/model.safetensors"))
    assert not _allows(role, "s3:PutObject", _s3_arn(exports["MODEL_S3_URI"].replace("/run-1/", "/run-2/")))
    (log_group,) = aws.client("logs").describe_log_groups(logGroupNamePrefix=exports["LOG_GROUP_NAME"])["logGroups"]
    stream = f"{log_group['arn'].removesuffix(':*')}:log-stream:run-1/bootstrap"
    assert _allows(role, "logs:CreateLogStream", stream)
    assert _allows(role, "logs:PutLogEvents", stream)
    assert _allows(role, "ecr:BatchGetImage", _repository_arn(exports["TRAINING_IMAGE_URI"]))
    assert exports["WAIT_HANDLE_URL"].startswith(aws.recorder.url)
    for split in DATA_KEYS:
        assert exports[f"{split.upper()}_DATA_S3_URI"] == data_url(split)
        assert _allows(role, "s3:GetObject", _s3_arn(data_url(split))), split
    assert not _allows(role, "s3:GetObject", _s3_arn(f"s3://{DATA_BUCKET}/tweets/v1/other.csv"))  # those objects only
    assert not _allows(role, "s3:ListBucket", f"arn:aws:s3:::{DATA_BUCKET}")
    assert not [statement for statement in role if "kms:Decrypt" in str(statement["Action"])]  # no key named
    assert exports["LABELS"] == ",".join(USER_LABELS)


# ---- the training instance ----------------------------------------------------------------------------


@dataclass
class Played:
    """One emulated instance, its boot, and the WaitCondition bodies that boot sent."""

    instance: EmulatedInstance
    boot: Boot
    signals: list[dict[str, str]]


@pytest.fixture(scope="module")
def package_index() -> Path:
    """The endpoint's locked wheels, where the instance's package step finds them instead of PyPI."""
    return locked_set(wheels.ENDPOINT)[0].parent


def play(aws: LocalAws, training: Stack, root: Path, model: Path, package_index: Path) -> Played:
    instance = EmulatedInstance(root, aws.environment(), package_index)
    assert instance.stage_input(model) == MODEL_IN_CONTAINER
    seen = len(aws.recorder.bodies)
    boot = instance.boot(user_data(aws.client("ec2"), _instance(aws, training)["InstanceId"]))
    return Played(instance, boot, [json.loads(body) for _, body in aws.recorder.bodies[seen:]])


@pytest.fixture(scope="module")
def failed_boot(
    aws: LocalAws,
    deployed: dict[str, Stack],
    inputs: dict[str, Path],
    package_index: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Played:
    """A first boot whose train file (as uploaded then) holds a label that is not one of the labels."""
    root = tmp_path_factory.mktemp("instance-failed")
    broken = root / "broken.csv"
    rows = list(csv.reader(inputs["train"].open()))
    rows[5][1] = "angry"
    with broken.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    upload(aws, "train", broken)
    return play(aws, deployed["training"], root, inputs["model"], package_index)


@pytest.fixture(scope="module")
def rolled_back(aws: LocalAws, failed_boot: Played) -> None:
    """What CloudFormation does with the FAILURE of a first create: it deletes everything the training stack
    made (the emulator completes the wait at once, so the rollback is played by deleting the stack)."""
    aws.cdk("destroy", f"{PREFIX}-training", "--exclusively", "--force", context=own_data())
    assert f"{PREFIX}-training" not in aws.live_stacks()


@pytest.fixture(scope="module")
def trained(
    aws: LocalAws,
    inputs: dict[str, Path],
    rolled_back: None,
    package_index: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Played:
    """The user read why, uploaded a good train file and deployed again: the run's new instance trains for
    real (torchrun, two processes)."""
    upload(aws, "train", inputs["train"])
    aws.deploy(*UNTIL_THE_WAIT, **own_data())
    training = aws.stack(f"{PREFIX}-training")
    return play(aws, training, tmp_path_factory.mktemp("instance"), inputs["model"], package_index)


@pytest.fixture(scope="module")
def served(aws: LocalAws, trained: Played) -> Stack:
    """The rest of `cdk deploy --all` once the instance signalled: the inference stack."""
    assert trained.boot.returncode == 0, trained.boot.output[-3000:]
    aws.deploy(**own_data())
    return aws.stack(f"{PREFIX}-inference")


def test_a_failed_run_signals_failure_with_its_step_and_log_and_uploads_nothing(
    aws: LocalAws, deployed: dict[str, Stack], failed_boot: Played
) -> None:
    (signal,) = failed_boot.signals
    assert signal["Status"] == "FAILURE", failed_boot.boot.output[-3000:]
    assert signal["UniqueId"] == "run-1"
    assert signal["Reason"].startswith("step train failed")
    # The data check's own message, from inside the container, before any model was loaded.
    assert (
        "error: train split: a label must be one of complaint, other, praise or its id 0-2; found 'angry'"
        in (signal["Reason"])
    )
    assert not _objects(aws, deployed, "runs/run-1/")
    assert failed_boot.boot.powered_off


def test_the_failed_runs_log_outlives_the_rollback_of_its_stack(
    aws: LocalAws, deployed: dict[str, Stack], rolled_back: None
) -> None:
    """The training instance's log group is the foundation's: the rollback left the stream that says why."""
    group = deployed["foundation"].outputs["TrainingLogGroup"]
    bootstrap = _messages(aws, group, "run-1/bootstrap")
    assert any("step train: failed with exit code" in message for message in bootstrap)
    assert any("found 'angry'" in message for message in bootstrap)
    assert any("found 'angry'" in message for message in _messages(aws, group, "run-1/training"))


def test_a_successful_run_uploads_its_archive_and_metrics(aws: LocalAws, trained: Played) -> None:
    assert trained.boot.returncode == 0, trained.boot.output[-3000:]
    model_data_url = aws.stack(f"{PREFIX}-training").outputs["ModelDataUrl"]
    output = trained.instance.work_root / "output"
    assert _get(aws, model_data_url) == (output / "model.tar.gz").read_bytes()
    metrics = json.loads(_get(aws, model_data_url.replace("model.tar.gz", "metrics.json")))
    assert metrics == json.loads((output / "metrics.json").read_text())
    assert 0 <= metrics["eval_recall"] <= 1
    (signal,) = trained.signals
    assert signal["Status"] == "SUCCESS"
    assert json.loads(signal["Data"]) == metrics
    assert model_data_url in signal["Reason"]


def test_the_instance_trained_on_every_gpu_and_powered_off(trained: Played) -> None:
    (training,) = [
        " ".join(call) for call in trained.boot.calls_to("docker", "run") if "training.train" in " ".join(call)
    ]
    assert "torchrun --standalone --nproc_per_node=2 -m training.train" in training
    assert trained.boot.calls[0][:3] == ["shutdown", "-h", "+120"]  # the watchdog
    assert trained.boot.powered_off


def test_the_instance_trained_on_the_users_files_with_their_labels(
    aws: LocalAws, deployed: dict[str, Stack], inputs: dict[str, Path], trained: Played
) -> None:
    (training,) = [call[-1] for call in trained.boot.calls_to("docker", "run") if "training.train" in call[-1]]
    assert shlex.split(training)[-8:] == [  # the words the entrypoint's eval hands torchrun
        *("--labels", ",".join(USER_LABELS)),
        *("--train-file", "/workspace/output/data/train.csv"),
        *("--validation-file", "/workspace/output/data/validation.csv"),
        *("--test-file", "/workspace/output/data/test.csv"),
    ]
    for split in DATA_KEYS:
        copied = trained.instance.work_root / "output" / "data" / f"{split}.csv"
        assert copied.read_bytes() == inputs[split].read_bytes()
    model_data_url = aws.stack(f"{PREFIX}-training").outputs["ModelDataUrl"]
    metrics = json.loads(_get(aws, model_data_url.replace("model.tar.gz", "metrics.json")))
    assert 0 <= metrics["test_recall"] <= 1  # the held-out file was scored
    assert metrics["setup"]["dataset"] == "files"


def test_bootstrap_and_training_logs_reach_cloudwatch(
    aws: LocalAws, deployed: dict[str, Stack], trained: Played
) -> None:
    logs = aws.client("logs")
    group = deployed["foundation"].outputs["TrainingLogGroup"]
    streams = {stream["logStreamName"] for stream in logs.describe_log_streams(logGroupName=group)["logStreams"]}
    assert streams == {"run-1/bootstrap", "run-1/training"}
    training = _messages(aws, group, "run-1/training")
    assert any("saved model to" in message for message in training)
    bootstrap = _messages(aws, group, "run-1/bootstrap")
    assert any("step train: failed" in message for message in bootstrap)  # the failed boot's, kept
    assert any("step signal-success: done" in message for message in bootstrap)


def test_a_reboot_finds_the_model_signals_and_trains_nothing(aws: LocalAws, trained: Played) -> None:
    seen = len(aws.recorder.bodies)
    boot = trained.instance.reboot()
    assert boot.returncode == 0, boot.output[-3000:]
    assert boot.calls_to("docker") == []
    (body,) = [json.loads(body) for _, body in aws.recorder.bodies[seen:]]
    assert body["Status"] == "SUCCESS"
    assert boot.powered_off


def test_the_deployed_model_answers_the_recipe_sentence(aws: LocalAws, served: Stack, tmp_path: Path) -> None:
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(_get(aws, _model(aws, served)["PrimaryContainer"]["ModelDataUrl"]))
    with tarfile.open(archive) as contents:
        assert "code/inference.py" in contents.getnames()
    with LocalEndpoint(archive, port=free_port()) as endpoint:
        answer = subprocess.run(
            [sys.executable, "-m", "inference.predict", "--local", "--url", endpoint.url, SENTENCE],
            capture_output=True,
            text=True,
            check=True,
        )
    reply = json.loads(answer.stdout)
    assert reply["sentiment"] in USER_LABELS  # the user's class names, not the recipe's
    assert 0 < reply["score"] <= 1


# ---- the endpoint ----


def test_the_endpoints_alarms_and_autoscaling_are_in_its_deployed_template(aws: LocalAws, served: Stack) -> None:
    """Skipped by moto as well (the test above)."""
    inference = aws.template(served.name)["Resources"]
    types = [resource["Type"] for resource in inference.values()]
    assert types.count("AWS::CloudWatch::Alarm") >= 2
    assert "AWS::ApplicationAutoScaling::ScalableTarget" in types
    assert "AWS::ApplicationAutoScaling::ScalingPolicy" in types


def test_the_endpoint_serves_the_runs_archive_with_the_checkouts_handler(
    aws: LocalAws, deployed: dict[str, Stack], served: Stack
) -> None:
    """The instance writes the run's archive without a handler; the inference stack's function writes the
    archive the Model reads: that one with inference/inference.py, under a key named by its hash."""
    model = _model(aws, served)
    training = aws.stack(f"{PREFIX}-training")
    exports = _exports(user_data(aws.client("ec2"), _instance(aws, training)["InstanceId"]))
    artifact_bucket = deployed["foundation"].outputs["ArtifactBucketName"]
    run_archive = f"s3://{artifact_bucket}/runs/run-1/model.tar.gz"
    assert exports["MODEL_S3_URI"] == training.outputs["ModelDataUrl"] == run_archive
    container = model["PrimaryContainer"]
    serving = container["ModelDataUrl"]
    assert _is_serving_archive_of(serving, artifact_bucket, run_archive), serving
    assert served.only("Custom::ServingArchive") == serving
    run_members = _members(aws, run_archive)
    assert "code/inference.py" not in run_members
    assert _members(aws, serving) == {**run_members, "code/inference.py": (aws.project / HANDLER).read_bytes()}
    assert container["Image"].endswith("/pytorch-inference-arm64:2.6.0-cpu-py312-ubuntu22.04-sagemaker")
    assert container["Environment"]["INFERENCE_MODE"] == CONTEXT["inferenceMode"]  # cdk.json's, as deployed
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    endpoint_role = _role_policies(aws, deployed["foundation"], "EndpointRole")
    assert model["ExecutionRoleArn"].endswith("/" + _role_name(deployed["foundation"], "EndpointRole"))
    assert _allows(endpoint_role, "s3:GetObject", _s3_arn(serving))
    assert not _allows(endpoint_role, "s3:GetObject", _s3_arn(run_archive))  # only what it serves
    assert _allows(endpoint_role, "ecr:BatchGetImage", _repository_arn(container["Image"]))
    builder = _role_policies(aws, served, "ServingArchiveBuilderRole")
    assert _allows(builder, "s3:GetObject", _s3_arn(run_archive))
    assert _allows(builder, "s3:PutObject", _s3_arn(serving))
    assert not _allows(builder, "s3:PutObject", _s3_arn(run_archive))
    sagemaker = aws.client("sagemaker")
    endpoint = sagemaker.describe_endpoint(EndpointName=ENDPOINT)
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    (variant,) = config["ProductionVariants"]
    assert (variant["ModelName"], variant["InstanceType"]) == (model["ModelName"], "ml.c7g.4xlarge")
    assert aws.client("logs").describe_log_groups(logGroupNamePrefix=f"/aws/sagemaker/Endpoints/{ENDPOINT}")[
        "logGroups"
    ]


# ---- later deploys and destroy ------------------------------------------------------------------------


def test_a_later_deploy_of_the_same_run_after_a_dlami_release_launches_nothing(aws: LocalAws, served: Stack) -> None:
    """AWS publishes a new DLAMI, the user deploys the same run again: the CLI finds nothing to do."""
    instance = _instance(aws, aws.stack(f"{PREFIX}-training"))["InstanceId"]
    launched = _every_instance(aws)
    release_dlami(aws.client("ssm"), CONTEXT["dlamiSsmParameter"], NEXT_DLAMI_AMI)
    output = aws.deploy(**own_data())
    assert aws.stack(f"{PREFIX}-training").only("AWS::EC2::Instance") == instance
    assert _every_instance(aws) == launched
    assert _instance(aws, aws.stack(f"{PREFIX}-training"))["ImageId"] == DLAMI_AMI
    for name in STACKS:
        assert f"{PREFIX}-{name} (no changes)" in output, output[-3000:]


def test_another_dlami_parameter_for_the_same_run_keeps_its_instance_and_ami(aws: LocalAws, trained: Played) -> None:
    """A later app version's default, or the user's own: the resolver gets an Update and keeps the image."""
    instance = _instance(aws, aws.stack(f"{PREFIX}-training"))["InstanceId"]
    launched = _every_instance(aws)
    release_dlami(aws.client("ssm"), OTHER_DLAMI_PARAMETER, NEXT_DLAMI_AMI)
    aws.deploy(dlamiSsmParameter=OTHER_DLAMI_PARAMETER, **own_data())
    training = aws.stack(f"{PREFIX}-training")
    assert training.only("AWS::EC2::Instance") == instance
    assert _every_instance(aws) == launched
    assert _instance(aws, training)["ImageId"] == DLAMI_AMI
    assert training.only("Custom::RunDlami") == DLAMI_AMI  # the physical id the function answered


def test_a_handler_edit_reaches_the_endpoint_in_one_deploy_without_an_instance(aws: LocalAws, served: Stack) -> None:
    """The user edits inference/inference.py and runs `cdk deploy --all`: a new serving archive of the same
    run, a new Model; the training stack has nothing to do."""
    instance = _instance(aws, aws.stack(f"{PREFIX}-training"))["InstanceId"]
    launched = _every_instance(aws)
    before = _model(aws, aws.stack(f"{PREFIX}-inference"))["PrimaryContainer"]["ModelDataUrl"]
    handler = aws.project / HANDLER
    edited = handler.read_bytes() + b"\n# a day-two edit, which the endpoint must serve\n"
    handler.write_bytes(edited)
    output = aws.deploy(dlamiSsmParameter=OTHER_DLAMI_PARAMETER, **own_data())  # the settings deployed last
    for name in ("foundation", "training"):
        assert f"{PREFIX}-{name} (no changes)" in output, output[-3000:]
    assert aws.stack(f"{PREFIX}-training").only("AWS::EC2::Instance") == instance
    assert _every_instance(aws) == launched
    model = _model(aws, aws.stack(f"{PREFIX}-inference"))
    after = model["PrimaryContainer"]["ModelDataUrl"]
    assert after != before
    assert _members(aws, after) == {**_members(aws, before), "code/inference.py": edited}
    _assert_the_endpoint_serves_only(aws, model)


def test_a_new_run_replaces_the_instance_and_the_endpoint_keeps_serving_until_it_trained(aws: LocalAws) -> None:
    """Run 2 names a validation file that was never uploaded (the next test boots its instance)."""
    old_instance = _instance(aws, aws.stack(f"{PREFIX}-training"))["InstanceId"]
    serving = _model(aws, aws.stack(f"{PREFIX}-inference"))
    aws.deploy(*UNTIL_THE_WAIT, runId="run-2", **own_data(validationDataUrl=f"s3://{DATA_BUCKET}/{MISSING_KEY}"))
    training = aws.stack(f"{PREFIX}-training")
    new_instance = _instance(aws, training)
    assert new_instance["InstanceId"] != old_instance
    assert new_instance["ImageId"] == NEXT_DLAMI_AMI  # a new run reads the DLAMI again
    _assert_the_endpoint_serves_only(aws, serving)
    assert _live_instances(aws) == [new_instance["InstanceId"]]
    assert "export RUN_ID='run-2'" in user_data(aws.client("ec2"), new_instance["InstanceId"]).decode()


def test_a_run_naming_a_missing_file_fails_within_a_minute_before_any_docker_call(
    aws: LocalAws, deployed: dict[str, Stack], inputs: dict[str, Path], package_index: Path, tmp_path: Path
) -> None:
    started = time.monotonic()
    played = play(aws, aws.stack(f"{PREFIX}-training"), tmp_path, inputs["model"], package_index)
    seconds = time.monotonic() - started

    (signal,) = played.signals
    assert signal["Status"] == "FAILURE", played.boot.output[-3000:]
    assert signal["Reason"].startswith(
        f"step check-data failed (exit 1): error: validation data s3://{DATA_BUCKET}/{MISSING_KEY}: not found (404)"
    )
    assert seconds < 60
    assert played.boot.calls_to("docker") == []  # no login, pull or build was paid for
    assert played.boot.powered_off
    assert not _objects(aws, deployed, "runs/run-2/")


# ---- a cluster run ------------------------------------------------------------------------------------


@dataclass
class NewRun:
    """The training stack after `cdk deploy --all -c runId=run-3 -c trainingInstanceCount=2`, and what it replaced."""

    training: Stack
    replaced_instance: str
    replaced_model: str


@pytest.fixture(scope="module")
def new_run(aws: LocalAws, trained: Played) -> NewRun:
    """The next run, on a cluster of two p4d.24xlarge."""
    replaced_instance = _instance(aws, aws.stack(f"{PREFIX}-training"))["InstanceId"]  # run-2's
    replaced_model = _model(aws, aws.stack(f"{PREFIX}-inference"))["ModelName"]
    aws.deploy(*UNTIL_THE_WAIT, runId=CLUSTER_RUN, trainingInstanceCount=str(CLUSTER_NODES), **own_data())
    return NewRun(aws.stack(f"{PREFIX}-training"), replaced_instance, replaced_model)


def test_a_new_run_on_two_instances_replaces_the_instance(new_run: NewRun, aws: LocalAws) -> None:
    nodes = new_run.training.physical_ids("AWS::EC2::Instance")
    assert len(nodes) == CLUSTER_NODES
    assert new_run.replaced_instance not in nodes
    assert sorted(_live_instances(aws)) == sorted(nodes)


def test_each_node_knows_its_rank_and_node0s_address_and_the_group_admits_only_itself(
    aws: LocalAws, new_run: NewRun
) -> None:
    """The tokens as CloudFormation resolved them: node 0's address is its primary interface's IP."""
    ec2 = aws.client("ec2")
    (interface,) = ec2.describe_network_interfaces(
        NetworkInterfaceIds=new_run.training.physical_ids("AWS::EC2::NetworkInterface")
    )["NetworkInterfaces"]
    variables = sorted((_exports(script) for script in _node_user_data(aws, new_run)), key=lambda v: v["NODE_RANK"])
    assert [(v["NODE_RANK"], v["NODE_COUNT"]) for v in variables] == [("0", "2"), ("1", "2")]
    assert {v["NODE0_ADDR"] for v in variables} == {interface["PrivateIpAddress"]}
    assert {(v["RUN_ID"], v["EFA_INTERFACES"]) for v in variables} == {(CLUSTER_RUN, str(P4D_EFA_INTERFACES))}
    (group,) = new_run.training.physical_ids("AWS::EC2::SecurityGroup")
    assert [g["GroupId"] for g in interface["Groups"]] == [group]
    (described,) = ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"]
    (rule,) = described["IpPermissions"]
    assert rule["IpProtocol"] == "-1"
    assert [pair["GroupId"] for pair in rule["UserIdGroupPairs"]] == [group]
    assert rule["IpRanges"] == rule.get("Ipv6Ranges", []) == []


def test_each_nodes_launch_template_has_an_efa_interface_per_network_card_and_one_placement_group(
    aws: LocalAws, new_run: NewRun
) -> None:
    """Read from the emulator and the deployed template: moto launches the instances without them (emulator.py)."""
    ec2 = aws.client("ec2")
    templates = new_run.training.physical_ids("AWS::EC2::LaunchTemplate")
    assert len(templates) == CLUSTER_NODES
    for template in templates:
        (version,) = ec2.describe_launch_template_versions(LaunchTemplateId=template)["LaunchTemplateVersions"]
        interfaces = version["LaunchTemplateData"]["NetworkInterfaces"]
        assert [(i["NetworkCardIndex"], i["DeviceIndex"]) for i in interfaces] == [(0, 0), (1, 1), (2, 1), (3, 1)]
        assert version["LaunchTemplateData"]["MetadataOptions"]["HttpTokens"] == "required"
    resources = aws.template(f"{PREFIX}-training")["Resources"].values()
    groups = [r["Properties"] for r in resources if r["Type"] == "AWS::EC2::PlacementGroup"]
    assert groups == [{"Strategy": "cluster"}]


# ---- the cluster's nodes -------------------------------------------------------------------------------


@dataclass
class ClusterPlay:
    """Both nodes' boots, node 0 first, and the WaitCondition bodies they sent."""

    nodes: list[Played]
    signals: list[dict[str, str]]


@pytest.fixture(scope="module")
def cluster_trained(
    aws: LocalAws,
    new_run: NewRun,
    inputs: dict[str, Path],
    package_index: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> ClusterPlay:
    """Both nodes boot at once from their own user data and train as one torchrun job (a CPU process each).

    tests/bootstrap/test_two_nodes.py kills one of two such nodes mid-run.
    """
    root = tmp_path_factory.mktemp("cluster")
    (interface,) = aws.client("ec2").describe_network_interfaces(
        NetworkInterfaceIds=new_run.training.physical_ids("AWS::EC2::NetworkInterface")
    )["NetworkInterfaces"]
    rendezvous = {"RENDEZVOUS_PORT": str(free_port())}
    scripts = sorted(_node_user_data(aws, new_run), key=lambda script: _exports(script)["NODE_RANK"])
    instances = []
    for rank in range(CLUSTER_NODES):
        instance = EmulatedInstance(
            root / f"node-{rank}",
            aws.environment(),
            package_index,
            gpus=1,
            efa_devices=P4D_EFA_INTERFACES,
            extra_environment=rendezvous,
        )
        instance.stage_input(inputs["model"])
        instances.append(instance)
    seen = len(aws.recorder.bodies)
    processes = [
        instance.start(on_loopback(script, interface["PrivateIpAddress"]))
        for instance, script in zip(instances, scripts, strict=True)
    ]
    boots = [instance.finish(process) for instance, process in zip(instances, processes, strict=True)]
    signals = [json.loads(body) for _, body in aws.recorder.bodies[seen:]]
    return ClusterPlay([Played(i, boot, []) for i, boot in zip(instances, boots, strict=True)], signals)


def test_the_cluster_trains_across_both_nodes_and_exactly_one_uploads_the_archive(
    aws: LocalAws, deployed: dict[str, Stack], cluster_trained: ClusterPlay
) -> None:
    tails = [node.boot.output[-2000:] for node in cluster_trained.nodes]
    assert len(cluster_trained.signals) == 1, (cluster_trained.signals, tails)
    (success,) = cluster_trained.signals
    assert success["Status"] == "SUCCESS", tails
    assert json.loads(success["Data"])["setup"]["processes"] == CLUSTER_NODES  # one process per node, one job
    bucket = deployed["foundation"].outputs["ArtifactBucketName"]
    key = f"runs/{CLUSTER_RUN}/model.tar.gz"
    versions = aws.client("s3").list_object_versions(Bucket=bucket, Prefix=key).get("Versions", [])
    assert [version["Key"] for version in versions] == [key]
    (uploader,) = [rank for rank, node in enumerate(cluster_trained.nodes) if "step upload: done" in node.boot.output]
    assert success["UniqueId"] == f"{CLUSTER_RUN}-node-{uploader}"
    other = cluster_trained.nodes[1 - uploader].boot.output
    assert "global rank 0 ran on another node: that node uploads the model" in other
    assert all(node.boot.powered_off for node in cluster_trained.nodes)


def test_rank_0_writes_the_checkpoint_each_rank_its_rng_state_and_s3_holds_them_all(
    aws: LocalAws, deployed: dict[str, Stack], cluster_trained: ClusterPlay
) -> None:
    """What every node restores before it trains, so that a restarted job finds the whole checkpoint."""
    checkpoint = "checkpoint-15"  # 240 rows, 16 a step
    writers = [
        rank
        for rank, node in enumerate(cluster_trained.nodes)
        if (node.instance.work_root / "output" / "checkpoints" / checkpoint / "trainer_state.json").exists()
    ]
    assert len(writers) == 1
    bucket = deployed["foundation"].outputs["ArtifactBucketName"]
    prefix = f"runs/{CLUSTER_RUN}/checkpoints/{checkpoint}/"
    listed = aws.client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    names = {item["Key"].removeprefix(prefix) for item in listed}
    assert {"trainer_state.json", "model.safetensors", "optimizer.pt", "rng_state_0.pth", "rng_state_1.pth"} <= names


def test_the_clusters_archive_replaces_the_model_the_endpoint_serves(
    aws: LocalAws, deployed: dict[str, Stack], new_run: NewRun, cluster_trained: ClusterPlay
) -> None:
    aws.deploy(runId=CLUSTER_RUN, trainingInstanceCount=str(CLUSTER_NODES), **own_data())
    model = _model(aws, aws.stack(f"{PREFIX}-inference"))
    bucket = deployed["foundation"].outputs["ArtifactBucketName"]
    serving = model["PrimaryContainer"]["ModelDataUrl"]
    assert _is_serving_archive_of(serving, bucket, f"s3://{bucket}/runs/{CLUSTER_RUN}/model.tar.gz"), serving
    _assert_the_endpoint_serves_only(aws, model)
    assert model["ModelName"] != new_run.replaced_model


def _node_user_data(aws: LocalAws, new_run: NewRun) -> list[bytes]:
    return [user_data(aws.client("ec2"), node) for node in new_run.training.physical_ids("AWS::EC2::Instance")]


def test_the_modes_switch_there_and_back(aws: LocalAws, deployed: dict[str, Stack], trained: Played) -> None:
    """`cdk deploy pt2-foundation pt2-inference -c modelDataUrl=s3://...` on the account deployed in training
    mode serves a model from elsewhere, and `cdk deploy --all` goes back to the last run's. The foundation
    exports the same values in both modes: the emulator, like CloudFormation, refuses to remove an export
    that a deployed stack imports."""
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=EXTERNAL_MODEL_BUCKET, CreateBucketConfiguration={"LocationConstraint": aws.region})
    s3.put_object(
        Bucket=EXTERNAL_MODEL_BUCKET,
        Key=EXTERNAL_MODEL_KEY,
        Body=(trained.instance.work_root / "output" / "model.tar.gz").read_bytes(),
    )
    url = f"s3://{EXTERNAL_MODEL_BUCKET}/{EXTERNAL_MODEL_KEY}"
    training = aws.stack(f"{PREFIX}-training")
    aws.deploy(f"{PREFIX}-foundation", f"{PREFIX}-inference", modelDataUrl=url)
    inference = aws.stack(f"{PREFIX}-inference")
    serving = _model(aws, inference)["PrimaryContainer"]["ModelDataUrl"]
    bucket = deployed["foundation"].outputs["ArtifactBucketName"]
    assert _is_serving_archive_of(serving, bucket, url), serving
    assert _members(aws, serving)["code/inference.py"] == (aws.project / HANDLER).read_bytes()
    assert _allows(_role_policies(aws, inference, "ServingArchiveBuilderRole"), "s3:GetObject", _s3_arn(url))
    assert not _allows(_role_policies(aws, deployed["foundation"], "EndpointRole"), "s3:GetObject", _s3_arn(url))
    assert aws.stack(f"{PREFIX}-training").resources == training.resources  # the last run's stack, untouched

    aws.deploy(runId=CLUSTER_RUN, trainingInstanceCount=str(CLUSTER_NODES), **own_data())
    inference = aws.stack(f"{PREFIX}-inference")
    serving = _model(aws, inference)["PrimaryContainer"]["ModelDataUrl"]
    assert _is_serving_archive_of(serving, bucket, f"s3://{bucket}/runs/{CLUSTER_RUN}/model.tar.gz"), serving
    assert not _allows(_role_policies(aws, inference, "ServingArchiveBuilderRole"), "s3:GetObject", _s3_arn(url))
    assert sorted(aws.stack(f"{PREFIX}-training").physical_ids("AWS::EC2::Instance")) == sorted(
        training.physical_ids("AWS::EC2::Instance")
    )


def test_destroy_leaves_nothing_billable(aws: LocalAws, deployed: dict[str, Stack]) -> None:
    templates = {name: aws.template(f"{PREFIX}-{name}") for name in STACKS}
    kept_buckets = set(deployed["foundation"].physical_ids("AWS::S3::Bucket"))
    assert [key for key in _enabled_customer_keys(aws) if "Encrypts the endpoint" in key]  # the check can fail
    aws.destroy()
    assert aws.live_stacks() == {"CDKToolkit"}
    assert _live_instances(aws) == []
    sagemaker = aws.client("sagemaker")
    assert sagemaker.list_endpoints()["Endpoints"] == []
    assert sagemaker.list_endpoint_configs()["EndpointConfigs"] == []
    assert sagemaker.list_models()["Models"] == []
    app_buckets = {b["Name"] for b in aws.client("s3").list_buckets()["Buckets"] if b["Name"].startswith(f"{PREFIX}-")}
    assert app_buckets == kept_buckets  # the artifact bucket and its access-log bucket, kept by default
    groups = [g["logGroupName"] for g in aws.client("logs").describe_log_groups()["logGroups"]]
    assert not [group for group in groups if PREFIX in group]
    roles = [role["RoleName"] for role in aws.client("iam").list_roles()["Roles"]]
    assert not [role for role in roles if role.startswith(f"{PREFIX}-")]
    assert _enabled_customer_keys(aws) == []
    for name, template in templates.items():
        for logical_id, resource in template["Resources"].items():
            if resource["Type"] in UNDELETED_TYPES:  # moto cannot delete these: checked on the template
                assert resource.get("DeletionPolicy", "Delete") == "Delete", (name, logical_id)


# ---- reading the emulator back ------------------------------------------------------------------------


def _instance(aws: LocalAws, training: Stack) -> dict[str, Any]:
    (reservation,) = aws.client("ec2").describe_instances(InstanceIds=[training.only("AWS::EC2::Instance")])[
        "Reservations"
    ]
    instance: dict[str, Any] = reservation["Instances"][0]
    return instance


def _every_instance(aws: LocalAws) -> list[str]:
    """Whatever their state: an instance launched and terminated since would still be listed."""
    reservations = aws.client("ec2").describe_instances()["Reservations"]
    return sorted(instance["InstanceId"] for reservation in reservations for instance in reservation["Instances"])


def _assert_the_endpoint_serves_only(aws: LocalAws, model: dict[str, Any]) -> None:
    """The endpoint's config serves `model`; no other model or endpoint config is left."""
    sagemaker = aws.client("sagemaker")
    config = sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"]
    (variant,) = sagemaker.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"]
    assert variant["ModelName"] == model["ModelName"]
    assert [m["ModelName"] for m in sagemaker.list_models()["Models"]] == [model["ModelName"]]
    assert [c["EndpointConfigName"] for c in sagemaker.list_endpoint_configs()["EndpointConfigs"]] == [config]


def _live_instances(aws: LocalAws) -> list[str]:
    reservations = aws.client("ec2").describe_instances()["Reservations"]
    return [
        instance["InstanceId"]
        for reservation in reservations
        for instance in reservation["Instances"]
        if instance["State"]["Name"] not in ("terminated", "shutting-down")
    ]


def _model(aws: LocalAws, inference: Stack) -> dict[str, Any]:
    arn = inference.only("AWS::SageMaker::Model")  # a model's physical id is its ARN
    model: dict[str, Any] = aws.client("sagemaker").describe_model(ModelName=arn.rsplit("/", 1)[1])
    return model


def _role_name(foundation: Stack, logical_prefix: str) -> str:
    (role,) = [
        r["PhysicalResourceId"]
        for r in foundation.resources["AWS::IAM::Role"]
        if r["LogicalResourceId"].startswith(logical_prefix)
    ]
    return role


def _role_policies(aws: LocalAws, foundation: Stack, logical_prefix: str) -> list[dict[str, Any]]:
    """Every statement of the role's inline policies, as IAM holds them."""
    iam = aws.client("iam")
    role = _role_name(foundation, logical_prefix)
    statements = []
    for name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
        document = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
        statements += document["Statement"] if isinstance(document["Statement"], list) else [document["Statement"]]
    return statements


def _allows(statements: list[dict[str, Any]], action: str, resource: str) -> bool:
    """Whether an Allow statement covers the action on the resource (wildcards as IAM reads them;
    conditions are not evaluated, and no statement here denies)."""

    def listed(value: str | list[str]) -> list[str]:
        return [value] if isinstance(value, str) else value

    return any(
        statement["Effect"] == "Allow"
        and any(fnmatch.fnmatchcase(action.lower(), pattern.lower()) for pattern in listed(statement["Action"]))
        and any(fnmatch.fnmatchcase(resource, pattern) for pattern in listed(statement["Resource"]))
        for statement in statements
    )


def _s3_arn(url: str) -> str:
    return "arn:aws:s3:::" + url.removeprefix("s3://")


def _repository_arn(image_uri: str) -> str:
    registry, repository = image_uri.split("/", 1)
    account, _, _, region = registry.split(".")[:4]
    return f"arn:aws:ecr:{region}:{account}:repository/{repository.rsplit(':', 1)[0]}"


def _exports(script: bytes) -> dict[str, str]:
    """The `export NAME='value'` lines the stack put in front of the bootstrap script."""
    exports = {}
    for line in script.decode().splitlines():
        if line.startswith("export ") and "='" in line:
            name, value = line.removeprefix("export ").split("=", 1)
            exports[name] = value.strip("'")
    return exports


def _is_serving_archive_of(url: str, artifact_bucket: str, source: str) -> bool:
    """serving/<handler hash>/<source bucket>/<source key> in the artifact bucket (stacks/inference_stack.py)."""
    return fnmatch.fnmatch(url, f"s3://{artifact_bucket}/serving/*/{source.removeprefix('s3://')}")


def _members(aws: LocalAws, url: str) -> dict[str, bytes | None]:
    """An archive's members by name: a file's bytes, None for a folder."""
    with tarfile.open(fileobj=io.BytesIO(_get(aws, url))) as archive:
        return {
            member.name: extracted.read() if (extracted := archive.extractfile(member)) else None
            for member in archive.getmembers()
        }


def _get(aws: LocalAws, url: str) -> bytes:
    bucket, key = url.removeprefix("s3://").split("/", 1)
    body: bytes = aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


def _objects(aws: LocalAws, deployed: dict[str, Stack], prefix: str) -> list[str]:
    bucket = deployed["foundation"].outputs["ArtifactBucketName"]
    listed = aws.client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for item in listed.get("Contents", [])]


def _messages(aws: LocalAws, group: str, stream: str) -> list[str]:
    events = aws.client("logs").get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True)["events"]
    return [event["message"] for event in events]


def _enabled_customer_keys(aws: LocalAws) -> list[str]:
    """Customer-managed KMS keys not scheduled for deletion; moto's aws/* keys are AWS-managed on AWS."""
    kms = aws.client("kms")
    aws_managed = {
        alias["TargetKeyId"] for alias in kms.list_aliases()["Aliases"] if alias["AliasName"].startswith("alias/aws/")
    }
    described = [kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"] for key in kms.list_keys()["Keys"]]
    return [
        f"{key['KeyId']} ({key.get('Description')})"
        for key in described
        if key["KeyId"] not in aws_managed and key["KeyManager"] == "CUSTOMER" and key["KeyState"] != "PendingDeletion"
    ]
