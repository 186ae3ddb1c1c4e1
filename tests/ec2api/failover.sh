#!/usr/bin/env bash
# A keepalived-style notify script, as people write it for EC2: on becoming master, take the
# floating address over from the peer with the real awscli.
#   failover.sh ENDPOINT ENI ADDRESS
set -euo pipefail
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1
aws="$(dirname "$0")/../../.venv/bin/aws"
"$aws" --endpoint-url "$1" ec2 assign-private-ip-addresses \
  --network-interface-id "$2" --private-ip-addresses "$3" --allow-reassignment
# Confirm, as careful scripts do, that the address is ours now.
owner=$("$aws" --endpoint-url "$1" ec2 describe-network-interfaces \
  --filters "Name=addresses.private-ip-address,Values=$3" --query 'NetworkInterfaces[0].NetworkInterfaceId' --output text)
[ "$owner" = "$2" ] || { echo "the address is on $owner, not $2" >&2; exit 1; }
echo "moved $3 to $2"
