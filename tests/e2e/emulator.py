"""The AWS emulator of the local round trip (moto in server mode on loopback), and every place where
it differs from AWS, worked around here and nowhere else.

`Emulator` starts `python -m tests.e2e.emulator` in its own process group on 127.0.0.1 and a free
port, with fake credentials, and stops it in every case. That process patches moto before it serves
(the gaps marked SERVER below); the others are client settings or checks the round trip must make
differently (marked CLIENT and CHECK). Some patches reach into moto's internals, so the version is
pinned (requirements-dev.txt) and checked at start.

Gaps, each with what AWS does and what moto does instead:

SERVER  The public DLAMI SSM parameter (/aws/service/deeplearning/ami/...) exists in every region on
        AWS; moto does not ship it (CloudFormation fails with a 500 resolving the template
        parameter) and refuses PutParameter under the reserved /aws/ prefix. Seeded into moto's SSM
        backend, pointing at a Deep Learning AMI that moto ships (ami-dca37ea5, root /dev/sda1).
SERVER  AWS publishes a new DLAMI by pointing its public parameter at the new image. The round trip
        plays such a release with PutParameter (`release_dlami`), which moto refuses under /aws/;
        for the DLAMI parameters it adds the new version here, as the seeding does.
SERVER  Lambda runs a function's zip in its runtime; moto runs it only in Docker, which this machine
        lacks. Here the function's own zip (as CloudFormation deployed it) is unpacked and its
        handler runs in a subprocess with this venv's Python (boto3 included, as in the runtime),
        the function's environment, fake credentials and AWS_ENDPOINT_URL on the emulator.
SERVER  CloudFormation creates a custom resource, waits for the function's answer at the ResponseURL
        (a presigned S3 URL), and only then creates what reads its attributes; a FAILED answer fails
        the stack. moto invokes the function on a thread, goes on creating dependents with its
        attributes unresolved (None), and ignores FAILED. Here the invocation is awaited, the
        ResponseURL is moto's own on loopback (whose answer handler takes the region from the
        path, as the host names none), and a resource that got no SUCCESS fails its create.
        A custom resource's physical id is the one its function answered; moto keeps a generated
        name. The answered one is kept here.
        CloudFormation sends an Update (with the old properties and the physical id) when a custom
        resource's properties change; moto updates nothing. Here the Update is sent and awaited as
        a Create is. moto sends no Delete either, and none is sent here: the app's functions do
        nothing on Delete (functions/cfn.py).
SERVER  SageMaker accepts ml.c7g.* endpoint instances; moto's EndpointConfig validation has a
        hard-coded list without Graviton types. The validation is switched off.
SERVER  CloudFormation applies every property of AWS::S3::Bucket; moto's bucket model applies only
        BucketEncryption and Tags. PublicAccessBlockConfiguration and VersioningConfiguration are
        applied here too, so the round trip reads them back; LoggingConfiguration cannot be (moto
        checks the log bucket's policy, which it skips), so it is asserted from the template.
SERVER  moto's AWS::EC2::Instance drops LaunchTemplate (and with it the IMDSv2 MetadataOptions that
        EC2 applies from the template), InstanceInitiatedShutdownBehavior and Monitoring; they are
        applied here as EC2 applies them.
SERVER  moto ignores AWS::SageMaker::Endpoint's EndpointName and generates a name; it is honoured
        here, so the endpoint and its log group carry the names AWS would give them.
SERVER  CloudFormation's Fn::GetAtt Arn of an AWS::Logs::LogGroup ends in ":*" (so a policy on it covers
        the group's streams); moto's omits it. It is added here.
SERVER  On UpdateStack the CDK CLI passes UsePreviousValue for parameters it leaves alone (the DLAMI
        parameter, BootstrapVersion); AWS then keeps the previous value, which for a parameter
        created from its template default is that default. moto keeps only values passed
        explicitly and fails with a 500 (KeyError); such parameters are left to their default here.
SERVER  CloudFormation resolves an AWS::SSM::Parameter::Value template parameter again on every stack
        update and updates what references it when the value moved (a DLAMI release replaces an
        instance whose ImageId is such a parameter); moto compares only the parameter's name. The
        value is compared here. moto's AWS::EC2::Instance has no update at all; a changed ImageId,
        which requires replacement on AWS, launches a new instance and terminates the old one here.
SERVER  CloudFormation updates every resource whose resolved properties change, so when a Model is
        replaced (new physical name) the EndpointConfig that names it is replaced too, and the
        Endpoint moves to it. moto compares template text only and leaves the EndpointConfig
        pointing at the deleted Model. Here a resource that references (Ref, Fn::GetAtt) an
        updated one is updated after it. moto also counts a resource without Properties as changed
        on every update (its parser adds an empty Properties to the stored template); such a
        resource (a WaitConditionHandle) is left alone here, as CloudFormation leaves it.
SERVER  Instance types and AMIs are validated (moto's MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION and
        MOTO_ENABLE_AMI_VALIDATION), as EC2 refuses a type a region lacks or an unknown AMI.
SERVER  A WaitConditionHandle's Ref is a presigned S3 URL that takes the instance's PUT; moto does
        not model handles (the Ref resolves to the string "None") and completes every WaitCondition
        at once. The handle's Ref becomes a URL of `WaitHandleRecorder` on loopback, which keeps
        every body the instance PUTs. The wait itself is not emulated, so the round trip deploys
        a new run as CloudFormation orders it: the stacks up to the training stack, then the
        instance's boot, then `--all` (test_round_trip.UNTIL_THE_WAIT); on AWS the inference stack,
        whose serving archive is built from the run's, waits for the instance's SUCCESS.
SERVER  EC2 has placement groups, and CloudFormation's AWS::EC2::PlacementGroup makes one and gives
        its GroupName; moto has no placement groups at all, and the training cluster's instances
        fail to resolve their PlacementGroupName. The resource is modelled here as a name (moto
        then ignores the instance's placement, as it ignores its launch template's interfaces: the
        round trip reads both from the deployed template).
SERVER  CloudFormation puts an AWS::EC2::NetworkInterface into the security groups of its GroupSet;
        moto reads a SecurityGroups property instead (which CloudFormation does not have) and puts
        the interface into the VPC's default group. GroupSet is passed on here.
SERVER  CloudFormation refuses an UpdateStack that would remove an export another stack imports ("Cannot
        delete export ... as it is in use by ..."), and makes the exports an update adds importable.
        moto checks nothing and keeps the exports of the stack's create. Both are done here, so a
        switch between training mode and modelDataUrl mode fails here as it fails on AWS.
CLIENT  The CDK CLI builds the TemplateURL of a deployment from AWS_ENDPOINT_URL_S3_FOR_CLOUDFORMATION;
        moto parses path-style bucket names only for the host `localhost` (with 127.0.0.1 it looks
        for a bucket named "127"), so that one URL says localhost.
CLIENT  moto's change sets never build Outputs and Exports, so cross-stack imports fail: deploys use
        `--method=direct` (plain CreateStack/UpdateStack), which AWS supports too.
CHECK   moto skips AWS::S3::BucketPolicy, CloudWatch alarms, Application Auto Scaling targets and
        policies, and CDK metadata without error: the round trip asserts those from the template
        (README, "What the local round trip proves").
CHECK   moto's CloudFormation deletes only some EC2 types: a NAT gateway, Elastic IP, internet
        gateway, VPC endpoint, flow log, route table, route or subnet association outlives its
        stack (and so does the VPC, whose delete then fails). For those types (`UNDELETED_TYPES`)
        the round trip checks that each belonged to a stack that reached deletion with no Retain
        policy, instead of listing them. The foundation stack's delete then ends in "The vpc ... has
        dependencies and cannot be deleted", so `cdk destroy` exits 1 with that one failure
        (`only_the_vpc_outlived_its_stack` accepts exactly that).
CHECK   DescribeStacks on a deleted stack re-creates that stack's exported resources in moto; the
        round trip never describes a deleted stack (ListStacks shows the status).
SERVER  KMS DescribeKey on a key made by CloudFormation answers 500 in moto: its CloudFormation model
        keeps KeyPolicy as a dict where the API model expects JSON text. It is stored as text here.
SERVER  CloudFormation puts an AWS::IAM::Role's Policies as policy documents (GetRolePolicy answers the
        JSON) and, when they change on an update, puts the new ones. moto stores each document as
        the dict it parsed (GetRolePolicy then answers its Python repr) and ignores Policies on
        update. Here they are stored as JSON text on create and on update.
CHECK   A stack delete schedules an AWS::KMS::Key for deletion (PendingDeletion for its window); moto
        deletes it at once. Either way no enabled customer key is left, which is what is checked;
        moto's default aws/ebs key is customer-managed there (AWS-managed on AWS) and is skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
import zipfile
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace, TracebackType
from typing import Any

MOTO_VERSION = "5.2.5"
ACCOUNT = "123456789012"  # moto's default account
# The public parameter the training stack's template resolves, and the AMI it resolves to here.
DLAMI_AMI = "ami-dca37ea5"  # moto's "Deep Learning AMI Ubuntu Linux", root device /dev/sda1
NEXT_DLAMI_AMI = "ami-9b32e8e2"  # moto's "Ubuntu CUDA9 DLAMI", root /dev/sda1: a later release
DLAMI_PARAMETERS = "/aws/service/deeplearning/ami/"
LAMBDA_TIMEOUT_S = 120
UNDELETED_TYPES = frozenset(
    {
        "AWS::EC2::NatGateway",
        "AWS::EC2::EIP",
        "AWS::EC2::InternetGateway",
        "AWS::EC2::VPCGatewayAttachment",
        "AWS::EC2::VPCEndpoint",
        "AWS::EC2::FlowLog",
        "AWS::EC2::RouteTable",
        "AWS::EC2::Route",
        "AWS::EC2::SubnetRouteTableAssociation",
        "AWS::EC2::VPC",
    }
)
STARTUP_TIMEOUT_S = 30
_VPC_LEFT_BEHIND = re.compile(r"destroy failed .*The vpc vpc-[0-9a-f]+ has dependencies and cannot be deleted")


def client_environment(port: int, region: str) -> dict[str, str]:
    """What the CDK CLI, the aws CLI and boto3 need to talk to the emulator and nothing else."""
    loopback = f"http://127.0.0.1:{port}"
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_ENDPOINT_URL": loopback,
        "AWS_ENDPOINT_URL_S3": loopback,
        "AWS_ENDPOINT_URL_S3_FOR_CLOUDFORMATION": f"http://localhost:{port}",  # CLIENT gap, see above
        "AWS_EC2_METADATA_DISABLED": "true",  # no instance metadata service to ask for credentials
    }


def only_the_vpc_outlived_its_stack(cdk_output: str) -> bool:
    """CHECK gap: a `cdk destroy` whose only failures are the VPC that moto cannot delete."""
    failures = [line for line in cdk_output.splitlines() if "destroy failed" in line]
    return bool(failures) and all(_VPC_LEFT_BEHIND.search(line) for line in failures)


class Emulator:
    """moto in server mode on 127.0.0.1:`port`, in its own process group; a context manager."""

    def __init__(self, port: int, region: str, wait_handle_url: str, log: Path) -> None:
        self.port = port
        self.region = region
        self.url = f"http://127.0.0.1:{port}"
        self.wait_handle_url = wait_handle_url
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Emulator:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def environment(self) -> dict[str, str]:
        return client_environment(self.port, self.region)

    def start(self) -> None:
        command = [sys.executable, "-m", "tests.e2e.emulator", "--port", str(self.port)]
        command += ["--region", self.region, "--wait-handle-url", self.wait_handle_url]
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                command,
                cwd=Path(__file__).resolve().parents[2],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the emulator exited with {self.process.returncode}: {self.log.read_text()[-2000:]}"
                )
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"{self.url}/moto-api/", timeout=2).close()
                return
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"the emulator did not answer within {STARTUP_TIMEOUT_S} s")

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None


class WaitHandleRecorder:
    """Stands in for the presigned URL of a WaitConditionHandle: keeps every PUT body, per path."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, bytes]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                recorder.bodies.append((self.path, self.rfile.read(length)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> WaitHandleRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


# ---- the emulator process: patch moto, seed it, serve --------------------------------------------


def _check_moto_version() -> None:
    import moto

    if moto.__version__ != MOTO_VERSION:
        sys.exit(f"the emulator's workarounds were written for moto {MOTO_VERSION}, found {moto.__version__}")


def _seed_dlami_parameters(region: str) -> None:
    """SERVER gap: the public DLAMI parameter the settings default to."""
    from moto.ssm.models import ssm_backends

    from stacks.settings import OPTIONS

    (default,) = [option.default for option in OPTIONS if option.key == "dlamiSsmParameter"]
    _publish_dlami(ssm_backends[ACCOUNT][region], default, DLAMI_AMI)


def _publish_dlami(backend: Any, name: str, image_id: str) -> Any:
    """A new version of a public DLAMI parameter, as AWS publishes a release."""
    from moto.ssm.models import Parameter

    versions = backend._parameters[name]
    parameter = Parameter(  # type: ignore[abstract]  # moto instantiates its own models the same way
        account_id=ACCOUNT,
        name=name,
        value=image_id,
        parameter_type="String",
        description="Deep Learning Base OSS Nvidia Driver GPU AMI (published by the emulator)",
        allowed_pattern=None,
        keyid=None,
        last_modified_date=_now(),
        version=len(versions) + 1,
        data_type="aws:ec2:image",
    )
    versions.append(parameter)
    return parameter


def _accept_dlami_releases() -> None:
    """SERVER gap: PutParameter on a DLAMI parameter plays AWS publishing a release (`release_dlami`)."""
    from moto.ssm.models import SimpleSystemManagerBackend

    put_parameter = SimpleSystemManagerBackend.put_parameter

    def put_or_publish(self: Any, name: str, description: str, value: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith(DLAMI_PARAMETERS):
            return _publish_dlami(self, name, value)
        return put_parameter(self, name, description, value, *args, **kwargs)

    SimpleSystemManagerBackend.put_parameter = put_or_publish  # type: ignore[method-assign]


def release_dlami(ssm: Any, name: str, image_id: str) -> None:
    """CLIENT side of the release: what AWS does when it publishes a new DLAMI."""
    ssm.put_parameter(Name=name, Value=image_id, Type="String", DataType="aws:ec2:image", Overwrite=True)


def _run_lambda_functions_locally(port: int) -> None:
    """SERVER gap: a function's own zip runs in a subprocess with this venv's Python."""
    from moto.awslambda.models import LambdaFunction

    def invoke_here(self: LambdaFunction, event: Any = None) -> tuple[str, bool, str]:
        with tempfile.TemporaryDirectory(prefix="lambda-") as root:
            with zipfile.ZipFile(io.BytesIO(self.code_bytes)) as code:
                code.extractall(root)
            module, function = str(self.handler).rsplit(".", 1)
            runner = (
                "import importlib, json, sys\n"
                f"result = importlib.import_module({module!r}).{function}(json.load(sys.stdin), None)\n"
                "print(json.dumps(result))\n"
            )
            environment = {
                "PATH": os.environ["PATH"],
                **client_environment(port, self.region),
                **self.environment_vars,
                "AWS_LAMBDA_FUNCTION_NAME": self.function_name,
            }
            done = subprocess.run(
                [sys.executable, "-c", runner],
                input=json.dumps(event or {}),
                cwd=root,
                env=environment,
                capture_output=True,
                text=True,
                timeout=LAMBDA_TIMEOUT_S,
                check=False,
            )
        print(f"lambda {self.function_name} ({self.handler}) exited {done.returncode}:\n{done.stderr}", flush=True)
        lines = done.stdout.strip().splitlines()
        return (lines[-1] if lines else "null"), done.returncode != 0, done.stderr

    LambdaFunction._invoke_lambda = invoke_here  # type: ignore[method-assign]


def _await_custom_resources(port: int) -> None:
    """SERVER gap: a custom resource's create waits for its function's answer on moto's loopback URL."""
    from moto import settings
    from moto.awslambda.utils import get_backend as get_lambda_backend
    from moto.cloudformation import custom_model
    from moto.cloudformation.models import Stack
    from moto.cloudformation.responses import CloudFormationResponse

    class _RunNow:
        """moto starts the invocation on a thread; here it runs before create returns."""

        def __init__(self, target: Any, args: tuple[Any, ...]) -> None:
            self.target, self.args = target, args

        def start(self) -> None:
            self.target(*self.args)

    os.environ["MOTO_PORT"] = str(port)
    # moto's answer handler would go on creating the stack's remaining resources on its own thread;
    # with the create awaiting the answer, the create loop itself finds every resource created.
    Stack.verify_readiness = lambda self: None  # type: ignore[method-assign]
    settings.moto_server_host = lambda: "http://127.0.0.1"  # type: ignore[assignment]
    custom_model.threading = SimpleNamespace(Thread=_RunNow)  # type: ignore[assignment]

    def awaited(resource: Any, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any) -> Any:
        if not resource.is_created():
            raise RuntimeError(f"custom resource {kwargs['LogicalId']} got no SUCCESS from its function")
        resource.stack_id, resource.resource_type = kwargs["StackId"], kwargs["ResourceType"]
        resource.properties = cloudformation_json["Properties"]
        return resource

    def update_and_await(
        cls: type,
        original_resource: Any,
        new_resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
    ) -> Any:
        properties = cloudformation_json["Properties"]
        stack_id = original_resource.stack_id
        answer_url = f"{settings.moto_server_host()}:{port}/cloudformation_{region_name}/cfnresponse?stack={stack_id}"
        event = {
            "RequestType": "Update",
            "ServiceToken": properties["ServiceToken"],
            "ResponseURL": answer_url,
            "StackId": stack_id,
            "RequestId": str(uuid.uuid4()),
            "LogicalResourceId": original_resource.logical_id,
            "PhysicalResourceId": original_resource.physical_resource_id,
            "ResourceType": original_resource.resource_type,
            "ResourceProperties": properties,
            "OldResourceProperties": original_resource.properties,
        }
        original_resource._finished = False
        get_lambda_backend(account_id, region_name).get_function(properties["ServiceToken"]).invoke(
            json.dumps(event), {}, {}
        )
        if not original_resource.is_created():
            raise RuntimeError(f"custom resource {original_resource.logical_id}: its Update got no SUCCESS")
        original_resource.properties = properties
        return original_resource

    _finish_created(custom_model.CustomModel, awaited)
    custom_model.CustomModel.update_from_cloudformation_json = classmethod(update_and_await)  # type: ignore[assignment]
    process = CloudFormationResponse.process_cfn_response

    def process_in_its_region(self: CloudFormationResponse) -> Any:
        self.region = self.path.split("/")[1].removeprefix("cloudformation_")
        answered = process(self)
        if self._get_param("Status") == "SUCCESS":
            stack = self.cloudformation_backend.get_stack(self._get_param("StackId"))
            resource = stack.get_custom_resource(self._get_param("LogicalResourceId"))
            resource.resource_name = self._get_param("PhysicalResourceId")
        return answered

    CloudFormationResponse.process_cfn_response = process_in_its_region  # type: ignore[method-assign]


def _now() -> Any:
    from moto.core.utils import utcnow

    return utcnow()


def _finish_created(model: Any, finish: Callable[..., Any]) -> None:
    """Wraps `model`'s create from CloudFormation: `finish(resource, cloudformation_json, account_id,
    region_name, **kwargs)` completes the resource moto made and returns it."""
    create = model.create_from_cloudformation_json.__func__

    def create_and_finish(
        cls: type, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
    ) -> Any:
        resource = create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
        return finish(resource, cloudformation_json, account_id, region_name, **kwargs)

    model.create_from_cloudformation_json = classmethod(create_and_finish)


def _key_policies_as_text() -> None:
    """SERVER gap: AWS::KMS::Key's KeyPolicy reaches moto's key as a dict; its API expects JSON text."""
    from moto.kms.models import Key

    def with_text_policy(key: Key, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any) -> Key:
        key.policy = key.policy if isinstance(key.policy, str) else json.dumps(key.policy)
        return key

    _finish_created(Key, with_text_policy)


def _role_policies_as_cloudformation_puts_them() -> None:
    """SERVER gap: an AWS::IAM::Role's inline Policies, as JSON text, on create and on update."""
    from moto.iam.models import Role

    def with_policies(role: Role, cloudformation_json: Any, *args: Any, **kwargs: Any) -> Role:
        policies = cloudformation_json["Properties"].get("Policies", [])
        role.policies = {policy["PolicyName"]: json.dumps(policy["PolicyDocument"]) for policy in policies}
        return role

    _finish_created(Role, with_policies)
    update = Role.update_from_cloudformation_json.__func__  # type: ignore[attr-defined]

    def update_with_policies(
        cls: type,
        original_resource: Role,
        new_resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
    ) -> Role:
        updated = update(cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name)
        return with_policies(updated, cloudformation_json)

    Role.update_from_cloudformation_json = classmethod(update_with_policies)  # type: ignore[method-assign,assignment]


def _accept_graviton_endpoints() -> None:
    """SERVER gap: moto's EndpointConfig knows no ml.c7g.* instance type."""
    from moto.sagemaker import models

    models.FakeEndpointConfig.validate_instance_type = lambda self, instance_type: None  # type: ignore[method-assign]


class _Modelled:
    """What the resources modelled here share: a physical id, no name property, nothing to delete. Mixed
    into a direct subclass of moto's CloudFormationModel, which is how moto finds its models."""

    def __init__(self, physical_resource_id: str) -> None:
        self.physical_resource_id = physical_resource_id

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @classmethod
    def delete_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str
    ) -> None:
        return None


def _model_wait_condition_handles(base_url: str) -> None:
    """SERVER gap: a WaitConditionHandle whose Ref is a URL of the recorder, as AWS's is a presigned URL."""
    from moto.cloudformation import parsing
    from moto.core.common_models import CloudFormationModel

    class WaitConditionHandle(_Modelled, CloudFormationModel):
        __module__ = "moto.cloudformation.emulated"  # moto files every model under its service's name

        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::CloudFormation::WaitConditionHandle"

        @classmethod
        def create_from_cloudformation_json(
            cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
        ) -> WaitConditionHandle:
            stack_name = kwargs["StackId"].split("/")[1]
            return cls(f"{base_url}/{stack_name}/{kwargs['LogicalId']}?X-Amz-Signature=emulated")

    parsing.NULL_MODELS.remove(WaitConditionHandle.cloudformation_type())
    parsing.get_model_list.cache_clear()
    parsing.get_model_map.cache_clear()


def _model_placement_groups() -> None:
    """SERVER gap: AWS::EC2::PlacementGroup, as a name that Ref and Fn::GetAtt GroupName give."""
    from moto.cloudformation import parsing
    from moto.core.common_models import CloudFormationModel

    class PlacementGroup(_Modelled, CloudFormationModel):
        __module__ = "moto.ec2.emulated"  # moto files every model under its service's name

        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::EC2::PlacementGroup"

        @classmethod
        def has_cfn_attr(cls, attr: str) -> bool:
            return attr == "GroupName"

        def get_cfn_attribute(self, attribute_name: str) -> str:
            assert attribute_name == "GroupName", attribute_name
            return self.physical_resource_id

        @classmethod
        def create_from_cloudformation_json(
            cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
        ) -> PlacementGroup:
            return cls(f"{kwargs['StackId'].split('/')[1]}-{kwargs['LogicalId']}")

    parsing.get_model_map.cache_clear()


def _apply_dropped_bucket_properties() -> None:
    """SERVER gap: the public access block and versioning of AWS::S3::Bucket."""
    from moto.s3.models import FakeBucket, s3_backends

    def with_all_properties(
        bucket: FakeBucket, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
    ) -> FakeBucket:
        backend = s3_backends[account_id]["aws"]
        properties = cloudformation_json.get("Properties", {})
        if "PublicAccessBlockConfiguration" in properties:
            backend.put_public_access_block(bucket.name, properties["PublicAccessBlockConfiguration"])
        if "VersioningConfiguration" in properties:
            backend.put_bucket_versioning(bucket.name, properties["VersioningConfiguration"]["Status"])
        return bucket

    _finish_created(FakeBucket, with_all_properties)


def _apply_dropped_instance_properties() -> None:
    """SERVER gap: LaunchTemplate metadata options, shutdown behaviour and monitoring of AWS::EC2::Instance."""
    from moto.ec2.models import ec2_backends
    from moto.ec2.models.instances import Instance, MetadataOptions

    def with_all_properties(
        instance: Instance, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
    ) -> Instance:
        properties = cloudformation_json["Properties"]
        if "LaunchTemplate" in properties:
            template = ec2_backends[account_id][region_name]._get_template_from_args(properties["LaunchTemplate"])
            instance.metadata_options = MetadataOptions(template.data.get("MetadataOptions", {}))
        behavior = properties.get("InstanceInitiatedShutdownBehavior")
        instance.instance_initiated_shutdown_behavior = behavior or instance.instance_initiated_shutdown_behavior
        instance.monitoring_state = "enabled" if properties.get("Monitoring") else "disabled"
        return instance

    _finish_created(Instance, with_all_properties)


def _apply_network_interface_group_sets() -> None:
    """SERVER gap: the GroupSet of AWS::EC2::NetworkInterface."""
    from moto.ec2.models.elastic_network_interfaces import NetworkInterface

    create = NetworkInterface.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]

    def create_in_its_groups(
        cls: type, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
    ) -> Any:
        properties = cloudformation_json["Properties"]
        groups = {**cloudformation_json, "Properties": {**properties, "SecurityGroups": properties.get("GroupSet", [])}}
        return create(cls, resource_name, groups, account_id, region_name, **kwargs)

    NetworkInterface.create_from_cloudformation_json = classmethod(create_in_its_groups)  # type: ignore[assignment]


def _log_group_arns_as_cloudformation_gives_them() -> None:
    """SERVER gap: Fn::GetAtt Arn of a log group is `arn:...:log-group:NAME:*`."""
    from moto.logs.models import LogGroup

    get_attribute = LogGroup.get_cfn_attribute

    def get_cfn_attribute(self: LogGroup, attribute_name: str) -> Any:
        value = get_attribute(self, attribute_name)
        return f"{value}:*" if attribute_name == "Arn" else value

    LogGroup.get_cfn_attribute = get_cfn_attribute  # type: ignore[method-assign]


def _previous_values_of_defaulted_parameters() -> None:
    """SERVER gap: UsePreviousValue for a parameter the stack took from its template default."""
    from moto.cloudformation.models import CloudFormationBackend

    resolve = CloudFormationBackend._resolve_update_parameters

    def resolve_update_parameters(self: Any, instance: Any, incoming_params: list[dict[str, str]]) -> Any:
        passed = [
            parameter
            for parameter in incoming_params
            if not parameter.get("UsePreviousValue") or parameter["ParameterKey"] in instance.parameters
        ]
        return resolve(self, instance, passed)

    CloudFormationBackend._resolve_update_parameters = resolve_update_parameters  # type: ignore[method-assign]


def _update_what_references_an_updated_resource() -> None:
    """SERVER gap: updates follow references, as CloudFormation's resolved-property comparison does."""
    from moto.cloudformation.parsing import ResourceMap

    diff = ResourceMap.build_resource_diff

    def build_resource_diff(self: ResourceMap, other_template: dict[str, Any], parameters: Any = None) -> Any:
        actions = diff(self, other_template, parameters)
        resources = other_template["Resources"]
        # moto gives a resource without Properties an empty one when it parses it, then sees that as a change.
        old = self._resource_json_map
        actions["Modify"] = [
            name
            for name in actions["Modify"]
            if "Properties" in resources[name] or old[name] != {"Properties": {}, **resources[name]}
        ]
        for updated in actions["Modify"]:  # the list grows while it is walked: dependents of dependents
            for name, resource in resources.items():
                if name not in actions["Modify"] and name not in actions["Add"] and updated in _references(resource):
                    actions["Modify"].append(name)
        return actions

    ResourceMap.build_resource_diff = build_resource_diff  # type: ignore[method-assign]


def _resolve_ssm_parameters_again_on_update() -> None:
    """SERVER gap: an SSM-typed parameter whose value moved since the last update updates its users."""
    from moto.cloudformation.parsing import ResourceMap
    from moto.cloudformation.responses import CloudFormationResponse

    diff = ResourceMap.build_resource_diff
    validate = CloudFormationResponse._validate_different_update

    def build_resource_diff(self: ResourceMap, other_template: dict[str, Any], parameters: Any = None) -> Any:
        actions = diff(self, other_template, parameters)
        moved = _moved_ssm_parameters(self, other_template)
        for name, resource in other_template["Resources"].items():
            if moved & _references(resource) and name not in actions["Modify"] and name not in actions["Add"]:
                actions["Modify"].append(name)
        return actions

    def validate_unless_a_value_moved(self: CloudFormationResponse, incoming: Any, body: str, old_stack: Any) -> None:
        """moto answers "No updates are to be performed" for the same template and parameters."""
        if not _moved_ssm_parameters(old_stack.resource_map, json.loads(body)):
            validate(self, incoming, body, old_stack)

    ResourceMap.build_resource_diff = build_resource_diff  # type: ignore[method-assign]
    CloudFormationResponse._validate_different_update = validate_unless_a_value_moved  # type: ignore[method-assign,assignment]


def _moved_ssm_parameters(resources: Any, template: dict[str, Any]) -> set[str]:
    """The SSM-typed parameters of `template` whose value is no longer the one the stack resolved last."""
    return {
        name
        for name, slot in template.get("Parameters", {}).items()
        if slot["Type"].startswith("AWS::SSM::Parameter::Value<")
        and name in resources.resolved_parameters
        and resources.parse_ssm_parameter(resources.input_parameters.get(name) or slot["Default"], slot["Type"])
        != resources.resolved_parameters[name]
    }


def _replace_instances_whose_image_changes() -> None:
    """SERVER gap: an update of AWS::EC2::Instance's ImageId replaces the instance."""
    from moto.ec2.models import ec2_backends
    from moto.ec2.models.instances import Instance

    def update_from_cloudformation_json(
        cls: type[Instance],
        original_resource: Instance,
        new_resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
    ) -> Instance:
        if cloudformation_json["Properties"]["ImageId"] == original_resource.image_id:
            return original_resource
        create = cls.create_from_cloudformation_json
        replacement = create(new_resource_name, cloudformation_json, account_id, region_name)
        ec2_backends[account_id][region_name].terminate_instances([original_resource.id])
        return replacement

    Instance.update_from_cloudformation_json = classmethod(update_from_cloudformation_json)  # type: ignore[assignment]


def _references(node: Any) -> set[str]:
    """Logical ids a template fragment points at through Ref or Fn::GetAtt."""

    def referenced(mapping: dict[str, Any]) -> set[str]:
        found = {mapping["Ref"]} if isinstance(mapping.get("Ref"), str) else set()
        return found | ({mapping["Fn::GetAtt"][0]} if isinstance(mapping.get("Fn::GetAtt"), list) else set())

    return _found_in_mappings(node, referenced)


def _imports(node: Any) -> set[str]:
    """Export names a template fragment imports through Fn::ImportValue (CDK writes them as literals)."""
    return _found_in_mappings(
        node, lambda mapping: {mapping["Fn::ImportValue"]} if isinstance(mapping.get("Fn::ImportValue"), str) else set()
    )


def _found_in_mappings(node: Any, find: Callable[[dict[str, Any]], set[str]]) -> set[str]:
    """What `find` finds in each mapping of a template fragment, at any depth."""
    if isinstance(node, list):
        return set().union(*(_found_in_mappings(item, find) for item in node))
    if not isinstance(node, dict):
        return set()
    return find(node).union(*(_found_in_mappings(value, find) for value in node.values()))


def _keep_exports_that_are_in_use() -> None:
    """SERVER gap: an export in use cannot be removed by an update; an update's exports are importable."""
    import json

    from moto.cloudformation.exceptions import ValidationError
    from moto.cloudformation.models import CloudFormationBackend

    update = CloudFormationBackend.update_stack

    def update_stack(self: Any, name: str, template: str, *args: Any, **kwargs: Any) -> Any:
        stack = self.get_stack(name)
        outputs = json.loads(template).get("Outputs", {}).values()
        kept = {output["Export"]["Name"] for output in outputs if "Export" in output}
        for export in stack.exports:
            users = [
                other.name
                for other in self.stacks.values()
                if other.stack_id != stack.stack_id and export.name in _imports(other.template_dict)
            ]
            if export.name not in kept and users:
                raise ValidationError(message=f"Cannot delete export {export.name} as it is in use by {users[0]}")
        for export in stack.exports:
            self.exports.pop(export.name, None)
        updated = update(self, name, template, *args, **kwargs)
        self.exports.update((export.name, export) for export in updated.exports)
        return updated

    CloudFormationBackend.update_stack = update_stack  # type: ignore[method-assign]


def _honour_endpoint_names() -> None:
    """SERVER gap: AWS::SageMaker::Endpoint's EndpointName."""
    from moto.sagemaker.models import FakeEndpoint

    FakeEndpoint.cloudformation_name_type = staticmethod(lambda: "EndpointName")  # type: ignore[method-assign]


def serve(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="moto on loopback, with the round trip's workarounds")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--wait-handle-url", required=True)
    args = parser.parse_args(argv)
    _check_moto_version()
    os.environ.update(MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION="true", MOTO_ENABLE_AMI_VALIDATION="true")
    _apply_dropped_bucket_properties()
    _apply_dropped_instance_properties()
    _apply_network_interface_group_sets()
    _honour_endpoint_names()
    _log_group_arns_as_cloudformation_gives_them()
    _previous_values_of_defaulted_parameters()
    _resolve_ssm_parameters_again_on_update()  # before the next one, which adds the dependents of these updates
    _replace_instances_whose_image_changes()
    _update_what_references_an_updated_resource()
    _keep_exports_that_are_in_use()
    _key_policies_as_text()
    _role_policies_as_cloudformation_puts_them()
    _accept_graviton_endpoints()
    _model_wait_condition_handles(args.wait_handle_url)
    _model_placement_groups()
    _seed_dlami_parameters(args.region)
    _accept_dlami_releases()
    _run_lambda_functions_locally(args.port)
    _await_custom_resources(args.port)

    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=args.port, verbose=False)
    server.start()
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    server.stop()


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    serve()
