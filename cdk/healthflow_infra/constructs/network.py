"""Where the compute runs: a new VPC (public layout by default, isolated as a switch) or yours.

Public layout (default, no hourly charge): two AZs, public subnets for the ml-worker tasks (they
get a public IP to pull the image from ECR and ship logs; their security group admits nothing
in) and isolated subnets for the steps Lambda and the database. The steps Lambda calls no AWS API
at run time (the IAM database token is signed locally), so it needs no route out at all. No NAT
gateway, no interface endpoint.

Isolated layout (`-c healthflow:network=isolated`): no internet route anywhere; the ml-worker
reaches ECR and CloudWatch Logs through three interface endpoints (ECR API, ECR Docker, Logs) in
two AZs, image layers through the free S3 gateway endpoint. At us-east-1 list prices that is
3 x 2 x $0.01/h x 730 h = $43.80 a month before data ($0.01/GB), for teams whose policy forbids
any internet route. (The container calls no AWS API, so no Step Functions or Secrets Manager
endpoint is needed any more.)

Your VPC (`-c healthflow:vpcId=... availabilityZones=... lambdaSubnetIds=...
mlWorkerSubnetIds=...`): imported from ids, no lookup (synth needs no credentials). Give the
ml-worker public subnets (`mlWorkerPublicIp=true`, default) or private subnets behind your own
NAT (`mlWorkerPublicIp=false`).
"""

from __future__ import annotations

from typing import ClassVar

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Construct

# us-east-1 list price of one interface endpoint in one AZ, per hour (data processing apart).
INTERFACE_ENDPOINT_HOURLY_USD = 0.01


class Network(Construct):
    """Attributes: `vpc`, `lambda_subnets`, `ml_worker_subnets` (two, for the ASL),
    `ml_worker_public_ip`, `database_subnets`, `endpoints` (isolated layout only),
    `endpoint_security_group` (or None)."""

    INTERFACE_ENDPOINTS: ClassVar[dict[str, ec2.InterfaceVpcEndpointAwsService]] = {
        # The awslogs log driver of the ml-worker.
        "Logs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
        # Image pull: registry API + docker endpoint (layers come from S3, the gateway endpoint).
        "EcrApi": ec2.InterfaceVpcEndpointAwsService.ECR,
        "EcrDocker": ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
    }

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        layout: str = "public",
        vpc_id: str | None = None,
        availability_zones: tuple[str, ...] = (),
        lambda_subnet_ids: tuple[str, ...] = (),
        ml_worker_subnet_ids: tuple[str, ...] = (),
        ml_worker_public_ip: bool = True,
        flow_log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
    ) -> None:
        super().__init__(scope, construct_id)
        self.endpoints: dict[str, ec2.InterfaceVpcEndpoint] = {}
        self.endpoint_security_group: ec2.SecurityGroup | None = None
        if vpc_id is not None:
            self.layout = "yours"
            self.vpc: ec2.IVpc = ec2.Vpc.from_vpc_attributes(
                self, "Vpc", vpc_id=vpc_id, availability_zones=list(availability_zones)
            )
            self.lambda_subnets = [
                ec2.Subnet.from_subnet_id(self, f"LambdaSubnet{i}", subnet_id)
                for i, subnet_id in enumerate(lambda_subnet_ids, start=1)
            ]
            self.ml_worker_subnets = [
                ec2.Subnet.from_subnet_id(self, f"MlWorkerSubnet{i}", subnet_id)
                for i, subnet_id in enumerate(ml_worker_subnet_ids, start=1)
            ]
            self.database_subnets = self.lambda_subnets
            self.ml_worker_public_ip = ml_worker_public_ip
            return

        self.layout = layout
        isolated = layout == "isolated"
        subnets = [
            ec2.SubnetConfiguration(
                name="private", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=22
            )
        ]
        if not isolated:
            subnets.append(
                ec2.SubnetConfiguration(
                    name="worker", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24
                )
            )
        new_vpc = ec2.Vpc(self, "Vpc", max_azs=2, nat_gateways=0, subnet_configuration=subnets)
        self.vpc = new_vpc
        self.lambda_subnets = list(new_vpc.isolated_subnets)
        self.database_subnets = self.lambda_subnets
        self.ml_worker_subnets = list(
            new_vpc.isolated_subnets if isolated else new_vpc.public_subnets
        )
        self.ml_worker_public_ip = not isolated
        # Only rejected flows: enough to debug a security group, a fraction of ALL's volume.
        self.flow_log_group = logs.LogGroup(
            self, "FlowLogs", retention=flow_log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        new_vpc.add_flow_log(
            "RejectedFlows",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(self.flow_log_group),
            traffic_type=ec2.FlowLogTrafficType.REJECT,
        )
        if isolated:
            self._add_endpoints(new_vpc)

    def _add_endpoints(self, vpc: ec2.Vpc) -> None:
        selection = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
        # Free, and it carries the ECR image layers.
        vpc.add_gateway_endpoint(
            "S3", service=ec2.GatewayVpcEndpointAwsService.S3, subnets=[selection]
        )
        # Closed by default: only groups passed to allow_endpoint_access_from() reach it on 443.
        self.endpoint_security_group = ec2.SecurityGroup(
            self,
            "EndpointSecurityGroup",
            vpc=vpc,
            description="healthflow VPC interface endpoints (HTTPS from known groups only)",
            allow_all_outbound=False,
        )
        for name, service in self.INTERFACE_ENDPOINTS.items():
            self.endpoints[name] = vpc.add_interface_endpoint(
                name,
                service=service,
                subnets=selection,
                private_dns_enabled=True,
                open=False,
                security_groups=[self.endpoint_security_group],
            )

    @property
    def monthly_endpoint_cost_usd(self) -> float:
        """What the interface endpoints cost per month (730 h), before data."""
        zones = 2
        return len(self.endpoints) * zones * INTERFACE_ENDPOINT_HOURLY_USD * 730

    def allow_endpoint_access_from(self, peer: ec2.ISecurityGroup, *, description: str) -> None:
        """Let `peer` call the AWS APIs behind the interface endpoints (isolated layout only)."""
        if self.endpoint_security_group is not None:
            self.endpoint_security_group.add_ingress_rule(peer, ec2.Port.tcp(443), description)
