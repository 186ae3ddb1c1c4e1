#!/usr/bin/env python3
"""Builds a lab from nothing with boto3 calls alone, as a provisioning script would against
AWS: a VPC, two subnets, a group with rules, an internet gateway and a route table, two
instances (RunInstances), an Elastic IP, and a second ENI created and attached to the second
instance. Prints the ids and addresses it got as JSON (tests/api.rs sends traffic over them)."""
import json, sys
import boto3
from botocore.exceptions import ClientError

ec2 = boto3.client("ec2", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="test", aws_secret_access_key="test")

vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
public = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.1.0/24", AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
private = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.2.0/24", AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
sg = ec2.create_security_group(GroupName="lab", Description="built by boto3", VpcId=vpc)["GroupId"]
ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=[
    {"IpProtocol": "icmp", "FromPort": -1, "ToPort": -1, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
    {"IpProtocol": "tcp", "FromPort": 7000, "ToPort": 7000, "UserIdGroupPairs": [{"GroupId": sg}]},
])
igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
rtb = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
ec2.create_route(RouteTableId=rtb, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
assoc = ec2.associate_route_table(RouteTableId=rtb, SubnetId=public)["AssociationId"]


def run(subnet):
    r = ec2.run_instances(ImageId="ami-0123456789abcdef0", InstanceType="t3.micro", MinCount=1, MaxCount=1,
                          SubnetId=subnet, SecurityGroupIds=[sg])
    i = r["Instances"][0]
    return i["InstanceId"], i["PrivateIpAddress"], i["NetworkInterfaces"][0]["NetworkInterfaceId"]


front, front_ip, front_eni = run(public)
back, back_ip, _ = run(private)
eip = ec2.allocate_address(Domain="vpc")
ec2.associate_address(AllocationId=eip["AllocationId"], NetworkInterfaceId=front_eni)
extra = ec2.create_network_interface(SubnetId=private, Groups=[sg], Description="second leg")["NetworkInterface"]
attachment = ec2.attach_network_interface(NetworkInterfaceId=extra["NetworkInterfaceId"], InstanceId=back,
                                          DeviceIndex=1)["AttachmentId"]
# A peering is pending until accepted; a NAT gateway, a group and an address come and go.
vpc2 = ec2.create_vpc(CidrBlock="10.30.0.0/16")["Vpc"]["VpcId"]
pcx = ec2.create_vpc_peering_connection(VpcId=vpc, PeerVpcId=vpc2)["VpcPeeringConnection"]
accepted = ec2.accept_vpc_peering_connection(VpcPeeringConnectionId=pcx["VpcPeeringConnectionId"])
nat_eip = ec2.allocate_address(Domain="vpc")["AllocationId"]
nat = ec2.create_nat_gateway(SubnetId=public, AllocationId=nat_eip)["NatGateway"]
ec2.delete_nat_gateway(NatGatewayId=nat["NatGatewayId"])
ec2.release_address(AllocationId=nat_eip)
temp = ec2.create_security_group(GroupName="temp", Description="short-lived", VpcId=vpc)["GroupId"]
ec2.delete_security_group(GroupId=temp)
lifecycle = {
    "peering": [pcx["Status"]["Code"], accepted["VpcPeeringConnection"]["Status"]["Code"]],
    "nat_state": nat["State"],
    "nat_gone": len(ec2.describe_nat_gateways(Filters=[{"Name": "nat-gateway-id", "Values": [nat["NatGatewayId"]]}])["NatGateways"]),
    "groups": sorted(g["GroupName"] for g in ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["SecurityGroups"]),
    "addresses": len(ec2.describe_addresses()["Addresses"]),
}
try:
    ec2.delete_vpc(VpcId=vpc)
    refused = "ok"
except ClientError as e:
    refused = e.response["Error"]["Code"]
state = ec2.describe_instances(InstanceIds=[front, back])["Reservations"]
print(json.dumps({
    "vpc": vpc, "subnets": [public, private], "group": sg, "igw": igw, "rtb": rtb, "association": assoc,
    "front": front, "front_ip": front_ip, "back": back, "back_ip": back_ip,
    "public_ip": eip["PublicIp"], "extra_eni": extra["NetworkInterfaceId"], "extra_ip": extra["PrivateIpAddress"],
    "attachment": attachment, "delete_vpc": refused, "lifecycle": lifecycle,
    "states": [r["Instances"][0]["State"]["Name"] for r in state],
    "back_enis": sorted(n["NetworkInterfaceId"] for n in state[1]["Instances"][0]["NetworkInterfaces"]),
}))
