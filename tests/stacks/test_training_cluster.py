"""A run on several instances: one placement group and subnet, EFA on every network card, a security group
open to itself only, and user data that tells each node its rank and where node 0 is."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stacks.instance_types import GPU_INSTANCE_TYPES
from stacks.training_cluster import EfaInterface, efa_layout
from stacks.user_data import shipped_script, unpack_bootstrap
from tests.stacks.synthesis import CLUSTER_CONTEXT, P5_CLUSTER_CONTEXT, Synthesized
from tests.stacks.test_templates import ROOT

CLUSTERS = [("cluster_app", CLUSTER_CONTEXT), ("p5_cluster_app", P5_CLUSTER_CONTEXT)]


@pytest.fixture(params=CLUSTERS, ids=[name for name, _ in CLUSTERS])
def cluster(request: pytest.FixtureRequest) -> tuple[Synthesized, int, int]:
    """The synthesized app, its node count and the EFA interfaces of its instance type."""
    name, context = request.param
    instance_type = context.get("trainingInstanceType", "p4d.24xlarge")
    app: Synthesized = request.getfixturevalue(name)
    return app, int(context["trainingInstanceCount"]), GPU_INSTANCE_TYPES[instance_type].efa_interfaces


def resources(app: Synthesized, resource_type: str) -> dict[str, dict[str, Any]]:
    return {
        name: resource
        for name, resource in app.template_json("training")["Resources"].items()
        if resource["Type"] == resource_type
    }


def nodes(app: Synthesized) -> list[dict[str, Any]]:
    """The instances' properties, node 0 first (by the rank their user data carries)."""
    instances = [resource["Properties"] for resource in resources(app, "AWS::EC2::Instance").values()]
    return sorted(instances, key=lambda properties: exports(properties)["NODE_RANK"])


def only_name(found: dict[str, Any]) -> str:
    (name,) = found
    return name


def user_data_parts(instance: dict[str, Any]) -> list[Any]:
    parts: list[Any] = instance["UserData"]["Fn::Base64"]["Fn::Join"][1]
    return parts


def exports(instance: dict[str, Any]) -> dict[str, Any]:
    """`export NAME='value'` lines of the user data; a value that is a token comes back as the token."""
    found: dict[str, Any] = {}
    parts = user_data_parts(instance)
    for index, part in enumerate(parts):
        if not isinstance(part, str):
            continue
        for line in part.split("\n"):
            if not line.startswith("export "):
                continue
            name, value = line.removeprefix("export ").split("=", 1)
            if value == "'" and line == part.split("\n")[-1]:  # the value is the next part, a token
                found[name] = parts[index + 1]
            else:
                found[name] = value.strip("'")
    return found


def launch_template(app: Synthesized, instance: dict[str, Any]) -> dict[str, Any]:
    name = instance["LaunchTemplate"]["LaunchTemplateId"]["Ref"]
    data: dict[str, Any] = resources(app, "AWS::EC2::LaunchTemplate")[name]["Properties"]["LaunchTemplateData"]
    return data


def test_efa_layout_puts_one_interface_on_each_network_card() -> None:
    assert efa_layout(4) == [EfaInterface(0, 0), EfaInterface(1, 1), EfaInterface(2, 1), EfaInterface(3, 1)]
    assert [efa.network_card_index for efa in efa_layout(32)] == list(range(32))
    assert {efa.device_index for efa in efa_layout(32)[1:]} == {1}


def test_the_table_knows_the_efa_interfaces_of_the_cluster_types() -> None:
    assert GPU_INSTANCE_TYPES["p4d.24xlarge"].efa_interfaces == 4
    assert GPU_INSTANCE_TYPES["p5.48xlarge"].efa_interfaces == 32
    assert GPU_INSTANCE_TYPES["g5.xlarge"].efa_interfaces == 0


def test_every_node_is_in_one_cluster_placement_group(cluster: tuple[Synthesized, int, int]) -> None:
    app, count, _ = cluster
    group = only_name(resources(app, "AWS::EC2::PlacementGroup"))
    assert resources(app, "AWS::EC2::PlacementGroup")[group]["Properties"] == {"Strategy": "cluster"}
    assert len(nodes(app)) == count
    for node in nodes(app):
        assert node["PlacementGroupName"] == {"Fn::GetAtt": [group, "GroupName"]}


def test_every_node_has_an_efa_interface_on_each_network_card_in_one_subnet(
    cluster: tuple[Synthesized, int, int],
) -> None:
    app, _, efa_interfaces = cluster
    rendezvous = only_name(resources(app, "AWS::EC2::NetworkInterface"))
    (subnet,) = {json.dumps(resources(app, "AWS::EC2::NetworkInterface")[rendezvous]["Properties"]["SubnetId"])}
    for rank, node in enumerate(nodes(app)):
        interfaces = launch_template(app, node)["NetworkInterfaces"]
        assert [(i["NetworkCardIndex"], i["DeviceIndex"]) for i in interfaces] == [
            (efa.network_card_index, efa.device_index) for efa in efa_layout(efa_interfaces)
        ]
        created = interfaces[1:] if rank == 0 else interfaces
        assert {i["InterfaceType"] for i in created} == {"efa"}
        assert {json.dumps(i["SubnetId"]) for i in created} == {subnet}
        assert all(i["DeleteOnTermination"] for i in created)  # nothing left after the node terminates
    node0_primary = launch_template(app, nodes(app)[0])["NetworkInterfaces"][0]
    assert node0_primary == {"DeviceIndex": 0, "NetworkCardIndex": 0, "NetworkInterfaceId": {"Ref": rendezvous}}
    assert resources(app, "AWS::EC2::NetworkInterface")[rendezvous]["Properties"]["InterfaceType"] == "efa"


def test_the_only_inbound_rule_is_all_traffic_from_the_clusters_own_group(
    cluster: tuple[Synthesized, int, int],
) -> None:
    app, _, _ = cluster
    group = only_name(resources(app, "AWS::EC2::SecurityGroup"))
    assert "SecurityGroupIngress" not in resources(app, "AWS::EC2::SecurityGroup")[group]["Properties"]
    (rule,) = [rule["Properties"] for rule in resources(app, "AWS::EC2::SecurityGroupIngress").values()]
    own_group = {"Fn::GetAtt": [group, "GroupId"]}
    assert (rule["GroupId"], rule["SourceSecurityGroupId"], rule["IpProtocol"]) == (own_group, own_group, "-1")
    assert not {"CidrIp", "CidrIpv6", "SourcePrefixListId"} & set(rule)
    interfaces = [i for node in nodes(app) for i in launch_template(app, node)["NetworkInterfaces"]]
    assert {json.dumps(i.get("Groups", [own_group])) for i in interfaces} == {json.dumps([own_group])}
    for node in nodes(app):  # the interfaces carry the group and subnet; EC2 refuses them twice
        assert not {"SubnetId", "SecurityGroupIds"} & set(node)


def test_each_node_knows_the_node_count_its_rank_and_node0s_address(cluster: tuple[Synthesized, int, int]) -> None:
    app, count, efa_interfaces = cluster
    rendezvous = only_name(resources(app, "AWS::EC2::NetworkInterface"))
    for rank, node in enumerate(nodes(app)):
        variables = exports(node)
        assert (variables["NODE_COUNT"], variables["NODE_RANK"]) == (str(count), str(rank))
        assert variables["NODE0_ADDR"] == {"Fn::GetAtt": [rendezvous, "PrimaryPrivateIpAddress"]}
        assert variables["EFA_INTERFACES"] == str(efa_interfaces)
        script = unpack_bootstrap("".join(p for p in user_data_parts(node) if isinstance(p, str)))
        assert script.decode() == shipped_script(ROOT / "training" / "bootstrap.sh")


def test_each_node_requires_imdsv2_through_its_launch_template(cluster: tuple[Synthesized, int, int]) -> None:
    app, _, _ = cluster
    for node in nodes(app):
        assert launch_template(app, node)["MetadataOptions"] == {"HttpTokens": "required"}
        assert node["InstanceInitiatedShutdownBehavior"] == "terminate"


def test_everything_of_the_run_is_under_its_run_construct_and_waited_for(
    cluster: tuple[Synthesized, int, int],
) -> None:
    app, _, _ = cluster
    run = "Run" + app.application.settings.run_id.replace("-", "")
    template = app.template_json("training")["Resources"]
    # The stack's own, outside any run: the function that resolves each run's AMI.
    assert {name for name in template if not name.startswith(run) and not name.startswith("DlamiResolver")} == set()
    wait = template[only_name(resources(app, "AWS::CloudFormation::WaitCondition"))]
    assert set(resources(app, "AWS::EC2::Instance")) <= set(wait["DependsOn"])
    assert wait["Properties"]["Count"] == 1  # one SUCCESS: the node that holds the model sends it


def test_a_single_instance_has_no_cluster(default_app: Synthesized) -> None:
    for resource_type in ("AWS::EC2::PlacementGroup", "AWS::EC2::NetworkInterface", "AWS::EC2::SecurityGroupIngress"):
        assert resources(default_app, resource_type) == {}
    (instance,) = resources(default_app, "AWS::EC2::Instance").values()
    assert not {"NODE_COUNT", "NODE_RANK", "NODE0_ADDR"} & set(exports(instance["Properties"]))
