"""The instances of one training run that trains across several of them: one torchrun job over EFA.

torchrun's c10d rendezvous runs on node 0, whose address every node's user data carries as a
CloudFormation token: node 0's primary network interface is created first, on its own, so its
private IP is known before any instance exists (node 0's user data could not name its own
instance's IP). NCCL's traffic between the nodes goes over EFA, through libfabric and the
aws-ofi-nccl plugin that the DLAMI and the training image carry; what EFA needs is built here:

- one cluster placement group and one subnet (EFA's OS-bypass traffic does not cross subnets);
- a security group that lets all traffic in from itself and nothing else (EFA's requirement), all out;
- on each node, one EFA interface per network card, as many as the type takes
  (stacks/instance_types.py EFA_INTERFACES), laid out as the DLC's own EFA test and AWS's EFA
  launch-template sample launch them (`efa_layout`):

      network card   0        1        2        3    ... k-1
      device index   0        1        1        1    ...  1
      interface      primary  EFA      EFA      EFA  ... EFA      (all of type "efa", EFA with ENA)

  The primary (card 0, device 0) carries the node's IP traffic too. AWS::EC2::Instance cannot say
  NetworkCardIndex or InterfaceType, so the interfaces go into a launch template per node, which also
  requires IMDSv2; each instance then names no subnet or security group of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aws_cdk import aws_ec2 as ec2
from constructs import Construct


@dataclass(frozen=True)
class EfaInterface:
    network_card_index: int
    device_index: int


def efa_layout(interfaces: int) -> list[EfaInterface]:
    """One EFA per network card: the primary on card 0 at device index 0, the others at device index 1."""
    return [EfaInterface(card, 0 if card == 0 else 1) for card in range(interfaces)]


@dataclass(frozen=True)
class NodePlacement:
    """Where a training instance goes and what its user data adds to the run's variables."""

    subnets: ec2.SubnetSelection
    security_group: ec2.ISecurityGroup
    variables: dict[str, str]
    placement_group: ec2.IPlacementGroup | None = None
    # The cluster gives each node a launch template (interfaces, IMDSv2); CDK must not add its own.
    own_launch_template: bool = False


# Builds one training instance (stacks/training_stack.py): scope, construct id, placement.
NodeFactory = Callable[[Construct, str, NodePlacement], ec2.Instance]


class TrainingCluster(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, vpc: ec2.IVpc, nodes: int, efa_interfaces: int, node: NodeFactory
    ) -> None:
        super().__init__(scope, construct_id)
        self.placement_group = ec2.PlacementGroup(self, "PlacementGroup", strategy=ec2.PlacementGroupStrategy.CLUSTER)
        self.subnet = vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS).subnets[0]
        self.security_group = self._security_group(vpc)
        self.rendezvous_interface = ec2.CfnNetworkInterface(
            self,
            "Node0PrimaryInterface",
            subnet_id=self.subnet.subnet_id,
            group_set=[self.security_group.security_group_id],
            interface_type="efa",
            description="Node 0's primary interface: its address is every node's torchrun rendezvous endpoint",
        )
        self.node0_address = self.rendezvous_interface.attr_primary_private_ip_address
        self.efa_interfaces = efa_interfaces
        self.nodes = [self._node(node, rank, nodes) for rank in range(nodes)]

    def _security_group(self, vpc: ec2.IVpc) -> ec2.SecurityGroup:
        group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            description="Training cluster: all traffic among its own nodes (EFA needs it), no other inbound",
            allow_all_outbound=True,
        )
        group.add_ingress_rule(group, ec2.Port.all_traffic(), "EFA, NCCL and torchrun between this run's nodes")
        return group

    def _node(self, node: NodeFactory, rank: int, nodes: int) -> ec2.Instance:
        placement = NodePlacement(
            subnets=ec2.SubnetSelection(subnets=[self.subnet]),
            security_group=self.security_group,
            placement_group=self.placement_group,
            own_launch_template=True,
            variables={
                "NODE_COUNT": str(nodes),
                "NODE_RANK": str(rank),
                "NODE0_ADDR": self.node0_address,
                "EFA_INTERFACES": str(self.efa_interfaces),
            },
        )
        instance = node(self, f"Node{rank}", placement)
        template = ec2.CfnLaunchTemplate(
            self,
            f"Node{rank}Network",
            launch_template_data=ec2.CfnLaunchTemplate.LaunchTemplateDataProperty(
                metadata_options=ec2.CfnLaunchTemplate.MetadataOptionsProperty(http_tokens="required"),
                network_interfaces=self._interfaces(rank),
            ),
        )
        cfn_instance = instance.node.default_child
        assert isinstance(cfn_instance, ec2.CfnInstance)
        cfn_instance.launch_template = ec2.CfnInstance.LaunchTemplateSpecificationProperty(
            launch_template_id=template.ref, version=template.attr_latest_version_number
        )
        # The launch template's interfaces name them; EC2 refuses both on one launch.
        cfn_instance.add_property_deletion_override("SubnetId")
        cfn_instance.add_property_deletion_override("SecurityGroupIds")
        return instance

    def _interfaces(self, rank: int) -> list[ec2.CfnLaunchTemplate.NetworkInterfaceProperty]:
        """Node 0's primary interface is the one created up front; every other one comes and goes with its node."""
        interfaces = []
        for efa in efa_layout(self.efa_interfaces):
            if rank == 0 and efa.network_card_index == 0:
                interface = ec2.CfnLaunchTemplate.NetworkInterfaceProperty(
                    network_card_index=0, device_index=0, network_interface_id=self.rendezvous_interface.ref
                )
            else:
                interface = ec2.CfnLaunchTemplate.NetworkInterfaceProperty(
                    network_card_index=efa.network_card_index,
                    device_index=efa.device_index,
                    interface_type="efa",
                    subnet_id=self.subnet.subnet_id,
                    groups=[self.security_group.security_group_id],
                    delete_on_termination=True,
                )
            interfaces.append(interface)
        return interfaces
