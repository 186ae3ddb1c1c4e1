#!/usr/bin/env python3
"""An HA monitor as people run beside NAT instances and firewalls: ping the active appliance
and, when it stops answering, point every route table that sent traffic to it at the standby
with ReplaceRoute (boto3).

    route_monitor.py ENDPOINT NAMESPACE ACTIVE_IP ACTIVE_ENI STANDBY_ENI SECONDS

The probe runs in NAMESPACE (an instance of the lab). Prints a JSON report and exits 0 once it
failed over, 1 if the active appliance kept answering for SECONDS."""
import json, subprocess, sys, time
import boto3

endpoint, ns, active_ip, active_eni, standby_eni, secs = sys.argv[1:7]
ec2 = boto3.client("ec2", endpoint_url=endpoint, region_name="us-east-1",
                   aws_access_key_id="test", aws_secret_access_key="test")


def answers():
    p = subprocess.run(["ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "1", active_ip],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return p.returncode == 0


deadline = time.time() + float(secs)
misses = 0
while time.time() < deadline:
    misses = 0 if answers() else misses + 1
    if misses == 2:
        tables = ec2.describe_route_tables(Filters=[{"Name": "route.network-interface-id", "Values": [active_eni]}])
        replaced = []
        for t in tables["RouteTables"]:
            for r in t["Routes"]:
                if r.get("NetworkInterfaceId") == active_eni:
                    ec2.replace_route(RouteTableId=t["RouteTableId"], DestinationCidrBlock=r["DestinationCidrBlock"],
                                      NetworkInterfaceId=standby_eni)
                    replaced.append([t["RouteTableId"], r["DestinationCidrBlock"]])
        print(json.dumps({"failed_over": True, "replaced": replaced}))
        sys.exit(0)
print(json.dumps({"failed_over": False}))
sys.exit(1)
