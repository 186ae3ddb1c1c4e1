#!/usr/bin/env python3
"""Writes src/api/ec2-shapes.json: the part of botocore's EC2 service model (2016-11-15) that
vpclab's EC2 Query API reads and writes, without documentation.

    .venv/bin/python scripts/gen-ec2-shapes.py   # after scripts/install-deps.sh (botocore in .venv)

The API face parses requests and writes responses from these shapes (member names, their wire
names, list item names, scalar types), so they are AWS's own rather than spelled out by hand.
Re-run it when the list of actions below changes."""
import gzip, json, os, sys
import botocore

ACTIONS = """
DescribeVpcs DescribeSubnets DescribeInstances DescribeNetworkInterfaces DescribeSecurityGroups
DescribeSecurityGroupRules DescribeRouteTables DescribeNetworkAcls DescribeAddresses
DescribeNatGateways DescribeInternetGateways DescribeVpcPeeringConnections DescribeAvailabilityZones
DescribeInstanceTypes DescribeFlowLogs
AttachNetworkInterface DetachNetworkInterface AssignPrivateIpAddresses UnassignPrivateIpAddresses
AssociateAddress DisassociateAddress ModifyNetworkInterfaceAttribute
AuthorizeSecurityGroupIngress AuthorizeSecurityGroupEgress RevokeSecurityGroupIngress RevokeSecurityGroupEgress
CreateRoute ReplaceRoute DeleteRoute ReplaceRouteTableAssociation
CreateNetworkAclEntry ReplaceNetworkAclEntry DeleteNetworkAclEntry
StopInstances StartInstances RebootInstances TerminateInstances
CreateVpc DeleteVpc CreateSubnet DeleteSubnet CreateSecurityGroup DeleteSecurityGroup
CreateNetworkInterface DeleteNetworkInterface CreateRouteTable DeleteRouteTable
AssociateRouteTable DisassociateRouteTable CreateInternetGateway DeleteInternetGateway
AttachInternetGateway DetachInternetGateway AllocateAddress ReleaseAddress
CreateNatGateway DeleteNatGateway CreateVpcPeeringConnection AcceptVpcPeeringConnection
DeleteVpcPeeringConnection RunInstances
""".split()

here = os.path.dirname(os.path.abspath(__file__))
model_dir = os.path.join(os.path.dirname(botocore.__file__), "data", "ec2", "2016-11-15")
with gzip.open(os.path.join(model_dir, "service-2.json.gz")) as f:
    model = json.load(f)

shapes, keep = model["shapes"], {}


def walk(name):
    if name in keep:
        return
    s = shapes[name]
    out = {"type": s["type"]}
    keep[name] = out
    if s["type"] == "structure":
        out["members"] = {}
        for m, ref in s.get("members", {}).items():
            r = {"shape": ref["shape"]}
            for k in ("locationName", "queryName"):
                if k in ref:
                    r[k] = ref[k]
            out["members"][m] = r
            walk(ref["shape"])
    elif s["type"] == "list":
        ref = s["member"]
        out["member"] = {k: ref[k] for k in ("shape", "locationName") if k in ref}
        walk(ref["shape"])
    elif s["type"] == "map":
        sys.exit(f"map shape {name}: not supported by the API face")


ops = {}
for a in ACTIONS:
    op = model["operations"][a]
    ops[a] = {"input": op.get("input", {}).get("shape"), "output": op.get("output", {}).get("shape")}
    for k in ("input", "output"):
        if ops[a][k]:
            walk(ops[a][k])

out = {"source": f"botocore {botocore.__version__}, ec2 2016-11-15", "operations": ops, "shapes": keep}
path = os.path.join(here, "..", "src", "api", "ec2-shapes.json")
with open(path, "w") as f:
    json.dump(out, f, separators=(",", ":"), sort_keys=True)
    f.write("\n")
print(f"{path}: {len(ops)} operations, {len(keep)} shapes, {os.path.getsize(path)} bytes")
