"""What matters in the synthesized templates, asserted directly (the snapshots only catch drift)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from stacks.user_data import shipped_script, unpack_bootstrap
from tests.stacks.synthesis import CUSTOM_CONTEXT, EXISTING_MODEL, Synthesized

STACKS = ("foundation", "training", "inference")
ROOT = Path(__file__).resolve().parents[2]


def resources_of(app: Synthesized, stack: str, resource_type: str) -> dict[str, Any]:
    return dict(app.template(stack).find_resources(resource_type))


def only(resources: dict[str, Any]) -> dict[str, Any]:
    assert len(resources) == 1, list(resources)
    return next(iter(resources.values()))


def instance(app: Synthesized) -> dict[str, Any]:
    return only(resources_of(app, "training", "AWS::EC2::Instance"))["Properties"]


def launch_template(app: Synthesized) -> dict[str, Any]:
    return only(resources_of(app, "training", "AWS::EC2::LaunchTemplate"))["Properties"]["LaunchTemplateData"]


def user_data(app: Synthesized) -> str:
    """The user data with every CDK token replaced by a readable placeholder."""
    parts = instance(app)["UserData"]["Fn::Base64"]["Fn::Join"][1]
    return "".join(part if isinstance(part, str) else "<token>" for part in parts)


def test_training_instance_type_and_ami_from_the_public_ssm_parameter(default_app: Synthesized) -> None:
    """Read by the run's resolver function, which may read that one parameter and nothing else."""
    props = instance(default_app)
    assert props["InstanceType"] == "p4d.24xlarge"
    resolver, attribute = props["ImageId"]["Fn::GetAtt"]
    assert attribute == "ImageId"
    resource = default_app.template_json("training")["Resources"][resolver]
    assert resource["Type"] == "Custom::RunDlami"
    parameter = "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"
    assert resource["Properties"]["ParameterName"] == parameter
    function = resource["Properties"]["ServiceToken"]["Fn::GetAtt"][0]
    properties = default_app.template_json("training")["Resources"][function]["Properties"]
    assert (properties["Runtime"], properties["Handler"]) == ("python3.14", "functions.dlami.handler")
    role = only(resources_of(default_app, "training", "AWS::IAM::Role"))["Properties"]
    (policy,) = role["Policies"]
    reads = [s for s in policy["PolicyDocument"]["Statement"] if s["Action"] == "ssm:GetParameter"]
    arn = f"arn:aws:ssm:us-west-2::parameter{parameter}"
    assert reads == [{"Action": "ssm:GetParameter", "Effect": "Allow", "Resource": arn}]
    assert "ManagedPolicyArns" not in role


def test_instance_requires_imdsv2_and_has_no_key_pair(default_app: Synthesized) -> None:
    assert launch_template(default_app)["MetadataOptions"]["HttpTokens"] == "required"
    assert "LaunchTemplate" in instance(default_app)
    assert "KeyName" not in instance(default_app)


def test_root_volume_is_encrypted_gp3_of_the_configured_size(default_app: Synthesized, custom_app: Synthesized) -> None:
    for app, size in ((default_app, 200), (custom_app, int(CUSTOM_CONTEXT["rootVolumeSize"]))):
        (mapping,) = instance(app)["BlockDeviceMappings"]
        assert mapping["DeviceName"] == "/dev/sda1"
        assert mapping["Ebs"] == {
            "VolumeSize": size,
            "VolumeType": "gp3",
            "Encrypted": True,
            "DeleteOnTermination": True,
        }


def test_instance_terminates_itself_when_it_shuts_down(default_app: Synthesized) -> None:
    assert instance(default_app)["InstanceInitiatedShutdownBehavior"] == "terminate"


def test_no_security_group_allows_any_ingress(default_app: Synthesized) -> None:
    for stack in STACKS:
        template = default_app.template_json(stack)
        for resource in template["Resources"].values():
            assert resource["Type"] != "AWS::EC2::SecurityGroupIngress"
            if resource["Type"] == "AWS::EC2::SecurityGroup":
                assert "SecurityGroupIngress" not in resource["Properties"]
            assert not (resource["Type"] == "AWS::EC2::NetworkAclEntry" and not resource["Properties"]["Egress"])


def test_artifact_bucket_is_encrypted_tls_only_private_versioned_and_logged(default_app: Synthesized) -> None:
    template = default_app.template("foundation")
    buckets = template.find_resources("AWS::S3::Bucket")
    assert len(buckets) == 2
    for bucket in buckets.values():
        props = bucket["Properties"]
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"] == {
            "SSEAlgorithm": "AES256"
        }
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}
        assert bucket["DeletionPolicy"] == "Retain"
    artifact = only({k: v for k, v in buckets.items() if k.startswith("ArtifactBucket")})
    assert "LoggingConfiguration" in artifact["Properties"]
    policies = template.find_resources("AWS::S3::BucketPolicy")
    assert len(policies) == 2
    for policy in policies.values():
        assert {
            "Effect": "Deny",
            "Action": "s3:*",
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }.items() <= next(
            s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"
        ).items()


def test_destroy_deletes_the_buckets_only_when_asked(custom_app: Synthesized) -> None:
    buckets = resources_of(custom_app, "foundation", "AWS::S3::Bucket")
    assert {bucket["DeletionPolicy"] for bucket in buckets.values()} == {"Delete"}
    assert resources_of(custom_app, "foundation", "Custom::S3AutoDeleteObjects")


def test_no_managed_full_access_policies_and_no_admin_actions(default_app: Synthesized) -> None:
    for stack in STACKS:
        assert "FullAccess" not in json.dumps(default_app.template_json(stack))
        for policy in resources_of(default_app, stack, "AWS::IAM::Policy").values():
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                assert statement["Effect"] == "Allow"
                assert not [action for action in actions if action == "*" or action.endswith(":*")]


def test_vpc_has_two_azs_private_subnets_s3_endpoint_and_flow_logs(default_app: Synthesized) -> None:
    template = default_app.template("foundation")
    subnets = template.find_resources("AWS::EC2::Subnet")
    assert len(subnets) == 4
    template.has_resource_properties("AWS::EC2::VPCEndpoint", {"VpcEndpointType": "Gateway"})
    template.has_resource_properties("AWS::EC2::FlowLog", {"TrafficType": "ALL"})
    template.resource_count_is("AWS::EC2::NatGateway", 1)


def test_roles_are_the_recipes_ec2_role_and_sagemakerrole(default_app: Synthesized) -> None:
    roles = resources_of(default_app, "foundation", "AWS::IAM::Role")
    principals = sorted(
        role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["Service"]
        for role in roles.values()
        if "Description" in role["Properties"]
    )
    assert principals == ["ec2.amazonaws.com", "sagemaker.amazonaws.com"]


def test_image_pulls_are_limited_to_the_dlc_repositories(default_app: Synthesized) -> None:
    text = json.dumps(default_app.template_json("foundation"))
    assert ":ecr:us-west-2:763104351884:repository/pytorch-training" in text
    assert ":ecr:us-west-2:763104351884:repository/pytorch-inference-arm64" in text


def test_instance_writes_only_its_own_run_prefix(custom_app: Synthesized) -> None:
    policy = only(resources_of(custom_app, "training", "AWS::IAM::Policy"))
    text = json.dumps(policy["Properties"]["PolicyDocument"])
    assert "/runs/exp-42/*" in text
    assert "/runs/*" not in text


def test_wait_condition_waits_for_the_instance_with_the_configured_timeout(
    default_app: Synthesized, custom_app: Synthesized
) -> None:
    for app, minutes in ((default_app, 120), (custom_app, 60)):
        template = app.template_json("training")
        (name,) = [k for k, v in template["Resources"].items() if v["Type"] == "AWS::CloudFormation::WaitCondition"]
        wait = template["Resources"][name]
        assert wait["Properties"]["Timeout"] == str(minutes * 60)
        assert wait["Properties"]["Count"] == 1
        (instance_name,) = resources_of(app, "training", "AWS::EC2::Instance")
        assert instance_name in wait["DependsOn"]
        assert f"export MAX_RUNTIME_MINUTES='{minutes}'" in user_data(app)


def test_user_data_carries_the_run_wiring_and_the_bootstrap_script(default_app: Synthesized) -> None:
    script = user_data(default_app)
    for variable in (
        "TRAINING_ASSET_S3_URI",
        "INFERENCE_ASSET_S3_URI",
        "DOCKER_ASSET_S3_URI",
        "WAIT_HANDLE_URL",
        "CHECKPOINT_S3_URI",
        "LOG_GROUP_NAME",
    ):
        (line,) = [line for line in script.splitlines() if line.startswith(f"export {variable}='")]
        assert "<token>" in line
    assert "export RUN_ID='run-1'" in script
    assert "export TRAINING_IMAGE_URI='763104351884.dkr.ecr.us-west-2.amazonaws.com/pytorch-training:" in script
    assert script.startswith("#!/bin/bash\n")
    assert unpack_bootstrap(script).decode() == shipped_script(ROOT / "training" / "bootstrap.sh")
    assert script.endswith('exec bash "${WORK_ROOT:-/opt/pt2}/bootstrap.sh"\n')


def test_the_shipped_script_is_the_source_without_its_comment_lines_and_still_parses() -> None:
    source = (ROOT / "training" / "bootstrap.sh").read_text().splitlines()
    shipped = shipped_script(ROOT / "training" / "bootstrap.sh")
    kept = [line for line in source if line.startswith("#!") or not line.lstrip().startswith("#")]
    assert shipped.splitlines() == kept
    assert len(kept) < len(source)
    subprocess.run(["bash", "-n"], input=shipped, text=True, check=True)


def user_data_size(properties: dict[str, Any]) -> int:
    """An instance's user data size once CloudFormation resolves its tokens, each counted generously."""
    parts = properties["UserData"]["Fn::Base64"]["Fn::Join"][1]
    literal = sum(len(part) for part in parts if isinstance(part, str))
    tokens = len([part for part in parts if not isinstance(part, str)])
    presigned_wait_handle_url = 1024  # the longest token, with room to spare
    return literal + presigned_wait_handle_url + 128 * tokens


def resolved_user_data_size(app: Synthesized) -> int:
    return user_data_size(instance(app))


def test_user_data_fits_the_16_kib_ec2_limit_once_tokens_resolve(
    default_app: Synthesized, p5_cluster_app: Synthesized
) -> None:
    instances = [*resources_of(default_app, "training", "AWS::EC2::Instance").values()]
    instances += resources_of(p5_cluster_app, "training", "AWS::EC2::Instance").values()
    assert len(instances) == 5
    for resource in instances:
        assert user_data_size(resource["Properties"]) < 16 * 1024


def test_the_serving_archive_is_built_from_the_key_in_user_data_and_is_what_the_model_reads(
    default_app: Synthesized,
) -> None:
    parts = instance(default_app)["UserData"]["Fn::Base64"]["Fn::Join"][1]
    start = next(i for i, part in enumerate(parts) if isinstance(part, str) and part.endswith("MODEL_S3_URI='s3://"))
    bucket_import, key_tail = parts[start + 1 : start + 3]
    archives = resources_of(default_app, "inference", "Custom::ServingArchive")
    model = only(resources_of(default_app, "inference", "AWS::SageMaker::Model"))
    assert model["Properties"]["PrimaryContainer"]["ModelDataUrl"] == {"Fn::GetAtt": [*archives, "ModelDataUrl"]}
    url = only(archives)["Properties"]["SourceArchive"]["Fn::Join"][1]
    assert url[0] == "s3://"
    assert url[1] == bucket_import
    assert key_tail.startswith(url[2] + "'\n")
    assert url[2] == "/runs/run-1/model.tar.gz"


def test_endpoint_log_group_exists_before_the_endpoint_with_retention(custom_app: Synthesized) -> None:
    """The foundation's: deployed before the endpoint's stack, and kept when a failed endpoint rolls back."""
    groups = resources_of(custom_app, "foundation", "AWS::Logs::LogGroup").values()
    assert {
        "LogGroupName": "/aws/sagemaker/Endpoints/team2-endpoint-c7g-2xlarge",
        "RetentionInDays": 7,
    } in [group["Properties"] for group in groups]
    endpoint = only(resources_of(custom_app, "inference", "AWS::SageMaker::Endpoint"))
    assert endpoint["Properties"]["EndpointName"] == "team2-endpoint-c7g-2xlarge"
    assert "team2-foundation" in custom_app.manifest["artifacts"]["team2-inference"]["dependencies"]


def test_log_groups_have_the_configured_retention(default_app: Synthesized, custom_app: Synthesized) -> None:
    """The VPC flow log's, the training instance's and the endpoint's, all in the foundation."""
    for app, days in ((default_app, 30), (custom_app, 7)):
        groups = resources_of(app, "foundation", "AWS::Logs::LogGroup").values()
        assert [group["Properties"]["RetentionInDays"] for group in groups] == [days] * 3


def test_endpoint_instance_type_count_and_encrypted_volume(default_app: Synthesized, custom_app: Synthesized) -> None:
    for app, instance_type, count in ((default_app, "ml.c7g.4xlarge", 1), (custom_app, "ml.c7g.2xlarge", 2)):
        config = only(resources_of(app, "inference", "AWS::SageMaker::EndpointConfig"))["Properties"]
        (variant,) = config["ProductionVariants"]
        assert variant["InstanceType"] == instance_type
        assert variant["InitialInstanceCount"] == count
        assert "KmsKeyId" in config


def test_model_runs_the_graviton_image_with_the_graviton_tuning(
    default_app: Synthesized, custom_app: Synthesized
) -> None:
    for app, workers, image in (
        (
            default_app,
            "4",
            "763104351884.dkr.ecr.us-west-2.amazonaws.com/pytorch-inference-arm64:2.6.0-cpu-py312-ubuntu22.04-sagemaker",
        ),
        (
            custom_app,
            "2",
            "763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-inference-graviton:2.0.1-cpu-py310-ubuntu20.04-sagemaker",
        ),
    ):
        container = only(resources_of(app, "inference", "AWS::SageMaker::Model"))["Properties"]["PrimaryContainer"]
        assert container["Image"] == image
        environment = container["Environment"]
        assert environment["DNNL_DEFAULT_FPMATH_MODE"] == "BF16"
        assert environment["LRU_CACHE_CAPACITY"] == "1024"
        assert environment["THP_MEM_ALLOC_ENABLE"] == "1"
        assert environment["OMP_NUM_THREADS"] == "4"
        # The toolkit's TS variables carry the plan past an entrypoint that overwrites the other one.
        assert environment["SAGEMAKER_TS_MIN_WORKERS"] == environment["SAGEMAKER_TS_MAX_WORKERS"] == workers
        assert environment["SAGEMAKER_MODEL_SERVER_WORKERS"] == workers
        assert environment["INFERENCE_MODE"] == ("bf16" if app is custom_app else "int8")
        assert environment["SAGEMAKER_PROGRAM"] == "inference.py"


def test_endpoint_container_has_no_network(default_app: Synthesized) -> None:
    """It installs from the archive's wheels, so it needs no network; nothing places it in the VPC."""
    model = only(resources_of(default_app, "inference", "AWS::SageMaker::Model"))["Properties"]
    assert model["EnableNetworkIsolation"] is True
    assert "VpcConfig" not in model
    assert not resources_of(default_app, "inference", "AWS::EC2::SecurityGroup")
    role_policies = resources_of(default_app, "foundation", "AWS::IAM::Policy")
    endpoint_policy = only({name: p for name, p in role_policies.items() if name.startswith("EndpointRole")})
    actions = json.dumps(endpoint_policy["Properties"]["PolicyDocument"]["Statement"])
    assert "ec2:" not in actions


def test_a_container_that_never_gets_healthy_fails_the_deployment_within_ten_minutes(
    default_app: Synthesized,
) -> None:
    config = only(resources_of(default_app, "inference", "AWS::SageMaker::EndpointConfig"))["Properties"]
    (variant,) = config["ProductionVariants"]
    assert variant["ContainerStartupHealthCheckTimeoutInSeconds"] == 600


def test_endpoint_stack_is_deployed_after_the_training_wait_condition(default_app: Synthesized) -> None:
    artifacts = default_app.manifest["artifacts"]
    assert "pt2-training" in artifacts["pt2-inference"]["dependencies"]
    assert "pt2-foundation" in artifacts["pt2-training"]["dependencies"]
    assert resources_of(default_app, "training", "AWS::CloudFormation::WaitCondition")


def test_autoscaling_and_alarms(custom_app: Synthesized) -> None:
    template = custom_app.template("inference")
    template.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalableTarget",
        {"MinCapacity": 2, "MaxCapacity": 4, "ScalableDimension": "sagemaker:variant:DesiredInstanceCount"},
    )
    template.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalingPolicy", {"PolicyType": "TargetTrackingScaling"}
    )
    template.has_resource_properties("AWS::CloudWatch::Alarm", {"MetricName": "Invocation5XXErrors"})
    template.has_resource_properties("AWS::CloudWatch::Alarm", {"MetricName": "ModelLatency"})


def test_an_existing_model_is_served_without_a_training_stack(existing_model_app: Synthesized) -> None:
    assert "pt2-training" not in existing_model_app.manifest["artifacts"]
    archive = only(resources_of(existing_model_app, "inference", "Custom::ServingArchive"))
    assert archive["Properties"]["SourceArchive"] == EXISTING_MODEL
    external = "arn:aws:s3:::someone-elses-models/roberta/model.tar.gz"
    (builder,) = [
        role
        for name, role in resources_of(existing_model_app, "inference", "AWS::IAM::Role").items()
        if name.startswith("ServingArchiveBuilderRole")
    ]
    (reads,) = [
        statement
        for policy in builder["Properties"]["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
        if statement["Action"] == "s3:GetObject"
    ]
    assert external in reads["Resource"]  # the function reads it; the endpoint reads only what it wrote
    assert "someone-elses-models" not in json.dumps(existing_model_app.template_json("foundation"))


def test_a_new_run_id_replaces_the_instance_and_the_wait_condition(
    default_app: Synthesized, custom_app: Synthesized
) -> None:
    def run_scoped(app: Synthesized) -> set[str]:
        resources = app.template_json("training")["Resources"]
        return {
            name
            for name, resource in resources.items()
            if resource["Type"]
            in ("AWS::EC2::Instance", "AWS::CloudFormation::WaitCondition", "AWS::CloudFormation::WaitConditionHandle")
        }

    assert all(name.startswith("Runrun1") for name in run_scoped(default_app))
    assert all(name.startswith("Runexp42") for name in run_scoped(custom_app))


def test_physical_names_are_generated_so_two_prefixes_never_collide(custom_app: Synthesized) -> None:
    assert set(custom_app.manifest["artifacts"]) >= {"team2-foundation", "team2-training", "team2-inference"}
    for stack in STACKS:
        for resource in custom_app.template_json(stack)["Resources"].values():
            properties = resource.get("Properties", {})
            names = {"BucketName", "RoleName", "LogGroupName", "EndpointName", "ModelName", "EndpointConfigName"}
            literal = [properties[name] for name in names & set(properties) if isinstance(properties[name], str)]
            assert all(name.startswith(("team2-", "/aws/sagemaker/Endpoints/team2-")) for name in literal)


def test_every_grant_exists_before_its_first_use(default_app: Synthesized, existing_model_app: Synthesized) -> None:
    """CloudFormation orders only what a reference or DependsOn links; IAM grants are neither."""
    resources = existing_model_app.template_json("inference")["Resources"]
    (function,) = [r for r in resources.values() if r["Type"] == "AWS::Lambda::Function"]
    assert function["Properties"]["Role"]["Fn::GetAtt"][0] in function["DependsOn"]  # its inline policy with it
    training = default_app.template_json("training")["Resources"]
    (run_policy,) = [name for name, r in training.items() if r["Type"] == "AWS::IAM::Policy"]
    (instance,) = [r for r in training.values() if r["Type"] == "AWS::EC2::Instance"]
    assert run_policy in instance["DependsOn"]
    foundation = default_app.template_json("foundation")["Resources"]
    (flow_log,) = [r for r in foundation.values() if r["Type"] == "AWS::EC2::FlowLog"]
    role = flow_log["Properties"]["DeliverLogsPermissionArn"]["Fn::GetAtt"][0]
    (delivery_policy,) = [
        name
        for name, r in foundation.items()
        if r["Type"] == "AWS::IAM::Policy" and r["Properties"]["Roles"] == [{"Ref": role}]
    ]
    assert delivery_policy in flow_log["DependsOn"]
