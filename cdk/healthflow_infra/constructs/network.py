"""The VPC every compute piece (steps Lambda, ml-worker tasks, database) lives in.

Private isolated subnets only: there is no internet route at all. The AWS APIs the code calls are
reached through VPC endpoints instead of a NAT gateway.

Cost trade-off (us-east-1 list prices, roughly): an interface endpoint is ~$7.30 per AZ per
month plus $0.01/GB; a NAT gateway is ~$33 per month per AZ plus $0.045/GB. With 5 interface
endpoints in 2 AZs the endpoints cost ~$73/month, more than one NAT gateway (~$33) and about the
same as two (~$66 + traffic). We still choose endpoints because (a) the ml-worker image is pulled
from ECR on every task start (hundreds of MB with torch): through the free S3 gateway endpoint
those layer bytes cost nothing, through NAT they cost $0.045/GB, (b) nothing in the VPC can
reach the internet, which is what health data wants, (c) no single-AZ NAT becomes a point of
failure. A cheaper dev variant would be one NAT gateway (PRIVATE_WITH_EGRESS subnets) and no
interface endpoints; it is not offered as a switch because it trades the no-internet property
for ~$40/month.
"""

from __future__ import annotations

from typing import ClassVar

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Construct


class Network(Construct):
    """A 2-AZ VPC with isolated subnets, VPC endpoints and reject-only flow logs.

    Attributes: `vpc`, `subnet_selection`, `private_subnets`, `endpoints`,
    `endpoint_security_group`, `flow_log_group`.
    """

    INTERFACE_ENDPOINTS: ClassVar[dict[str, ec2.InterfaceVpcEndpointAwsService]] = {
        # SendTaskSuccess/Failure/Heartbeat from the ml-worker.
        "StepFunctions": ec2.InterfaceVpcEndpointAwsService.STEP_FUNCTIONS,
        # The awslogs log driver of the ml-worker.
        "Logs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
        # Image pull: registry API + docker endpoint (layers come from S3, the gateway below).
        "EcrApi": ec2.InterfaceVpcEndpointAwsService.ECR,
        "EcrDocker": ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
        # The database secret, read by the steps Lambda, the ml-worker and the rotation Lambda.
        "SecretsManager": ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
    }

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        max_azs: int = 2,
        flow_log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
    ) -> None:
        super().__init__(scope, construct_id)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=max_azs,
            nat_gateways=0,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="private", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=22
                )
            ],
        )
        self.subnet_selection = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
        self.private_subnets = self.vpc.isolated_subnets
        # Only rejected flows: enough to debug a missing security group rule, a fraction of the
        # log volume (and cost) of ALL.
        self.flow_log_group = logs.LogGroup(
            self,
            "FlowLogs",
            retention=flow_log_retention,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.vpc.add_flow_log(
            "RejectedFlows",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(self.flow_log_group),
            traffic_type=ec2.FlowLogTrafficType.REJECT,
        )
        # The S3 gateway endpoint is free and carries the ECR image layers.
        self.vpc.add_gateway_endpoint(
            "S3", service=ec2.GatewayVpcEndpointAwsService.S3, subnets=[self.subnet_selection]
        )
        # One security group for all interface endpoints, closed by default (`open=False`):
        # only the groups passed to allow_endpoint_access_from() reach them on 443, instead of
        # the whole VPC CIDR.
        self.endpoint_security_group = ec2.SecurityGroup(
            self,
            "EndpointSecurityGroup",
            vpc=self.vpc,
            description="healthflow VPC interface endpoints (HTTPS from known groups only)",
            allow_all_outbound=False,
        )
        self.endpoints: dict[str, ec2.InterfaceVpcEndpoint] = {
            name: self.vpc.add_interface_endpoint(
                name,
                service=service,
                subnets=self.subnet_selection,
                private_dns_enabled=True,
                open=False,
                security_groups=[self.endpoint_security_group],
            )
            for name, service in self.INTERFACE_ENDPOINTS.items()
        }

    def allow_endpoint_access_from(self, peer: ec2.ISecurityGroup, *, description: str) -> None:
        """Let `peer` call the AWS APIs behind the interface endpoints (HTTPS)."""
        self.endpoint_security_group.add_ingress_rule(peer, ec2.Port.tcp(443), description)
