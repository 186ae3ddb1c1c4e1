#!/usr/bin/env python3
"""Describes a lab through its EC2 API with boto3 and prints what it found as one JSON object:
ids by kind, each ENI's addresses, each instance's state (tests/api.rs compares it with
`vpclab status` and `vpclab export`). Every call is paged with MaxResults, as SDK paginators do."""
import json, sys
import boto3

ec2 = boto3.client("ec2", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="test", aws_secret_access_key="test")


def paged(method, key, **kw):
    out = []
    for page in ec2.get_paginator(method).paginate(PaginationConfig={"PageSize": 5}, **kw):
        out.extend(page[key])
    return out


found = {
    "vpcs": [v["VpcId"] for v in paged("describe_vpcs", "Vpcs")],
    "subnets": [s["SubnetId"] for s in paged("describe_subnets", "Subnets")],
    "enis": {e["NetworkInterfaceId"]: sorted(a["PrivateIpAddress"] for a in e["PrivateIpAddresses"])
             for e in paged("describe_network_interfaces", "NetworkInterfaces")
             if e["InterfaceType"] == "interface"},
    "instances": {i["InstanceId"]: i["State"]["Name"]
                  for r in paged("describe_instances", "Reservations") for i in r["Instances"]},
    "groups": [g["GroupId"] for g in paged("describe_security_groups", "SecurityGroups")],
    "route_tables": [t["RouteTableId"] for t in paged("describe_route_tables", "RouteTables")],
    "acls": [a["NetworkAclId"] for a in paged("describe_network_acls", "NetworkAcls")],
    "addresses": {a["AllocationId"]: a["PublicIp"] for a in ec2.describe_addresses()["Addresses"]},
    "nat_gateways": [n["NatGatewayId"] for n in paged("describe_nat_gateways", "NatGateways")],
    "internet_gateways": [g["InternetGatewayId"] for g in paged("describe_internet_gateways", "InternetGateways")],
    "zones": [z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]],
    "instance_types": len(paged("describe_instance_types", "InstanceTypes")),
    "rules": len(paged("describe_security_group_rules", "SecurityGroupRules")),
}
# One filtered call as a script would make it: the ENIs of one instance.
web = ec2.describe_network_interfaces(Filters=[{"Name": "attachment.instance-id", "Values": ["web"]}])
found["web_enis"] = [e["NetworkInterfaceId"] for e in web["NetworkInterfaces"]]
print(json.dumps(found))
