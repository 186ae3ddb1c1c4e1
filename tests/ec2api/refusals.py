#!/usr/bin/env python3
"""Makes calls EC2 refuses and prints, per call, the error code boto3 parsed from the response
(`ClientError`), or "ok" if it was not refused. tests/api.rs checks the codes and that the lab
did not change."""
import json, sys
import boto3
from botocore.exceptions import ClientError

ec2 = boto3.client("ec2", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="test", aws_secret_access_key="test")
calls = {
    "describe_unknown_vpc": lambda: ec2.describe_vpcs(VpcIds=["vpc-nope"]),
    "unknown_filter": lambda: ec2.describe_subnets(Filters=[{"Name": "colour", "Values": ["x"]}]),
    "duplicate_route": lambda: ec2.create_route(RouteTableId="rtb-public", DestinationCidrBlock="0.0.0.0/0",
                                                GatewayId="igw-main"),
    "route_to_nowhere": lambda: ec2.create_route(RouteTableId="rtb-public", DestinationCidrBlock="192.0.2.0/24",
                                                 GatewayId="igw-nope"),
    "duplicate_rule": lambda: ec2.authorize_security_group_ingress(
        GroupId="sg-web", IpPermissions=[{"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
                                          "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]),
    # The second permission is a duplicate: the first must not be added either.
    "half_duplicate_rules": lambda: ec2.authorize_security_group_ingress(
        GroupId="sg-web", IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 8443, "ToPort": 8443, "IpRanges": [{"CidrIp": "10.9.0.0/16"}]},
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]),
    "taken_address": lambda: ec2.assign_private_ip_addresses(NetworkInterfaceId="eni-standby",
                                                             PrivateIpAddresses=["10.0.2.10"]),
    "attach_attached": lambda: ec2.attach_network_interface(NetworkInterfaceId="eni-web", InstanceId="standby",
                                                           DeviceIndex=1),
    "dry_run": lambda: ec2.delete_route(RouteTableId="rtb-public", DestinationCidrBlock="0.0.0.0/0", DryRun=True),
    "stop_unknown": lambda: ec2.stop_instances(InstanceIds=["i-nope"]),
    "not_implemented": lambda: ec2.create_vpn_gateway(Type="ipsec.1"),
}
out = {}
for name, call in calls.items():
    try:
        call()
        out[name] = "ok"
    except ClientError as e:
        out[name] = e.response["Error"]["Code"]
print(json.dumps(out))
