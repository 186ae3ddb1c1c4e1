#!/bin/sh
# Configures a hot-attached interface from instance metadata alone, the way Amazon's
# ec2-net-utils does: its addresses (local-ipv4s, with the subnet's prefix), and a route table of
# its own (10000 + device-number) holding the subnet and a default route via the subnet router
# (base + 1), chosen by `ip rule` for traffic from each of its addresses.
# Usage: ec2-ifup-from-metadata.sh IFACE
set -eu
iface=$1
imds=http://169.254.169.254/latest
token=$(curl -sf --max-time 5 -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 60" "$imds/api/token")
get() { curl -sf --max-time 5 -H "X-aws-ec2-metadata-token: $token" "$imds/meta-data/$1"; }

mac=$(cat "/sys/class/net/$iface/address")
dir=network/interfaces/macs/$mac
device=$(get "$dir/device-number")
cidr=$(get "$dir/subnet-ipv4-cidr-block")
router=$(echo "${cidr%/*}" | awk -F. '{ printf "%d.%d.%d.%d", $1, $2, $3, $4 + 1 }')
table=$((10000 + device))

ip link set dev "$iface" up
for ip in $(get "$dir/local-ipv4s"); do
    ip addr replace "$ip/${cidr#*/}" dev "$iface"
    ip rule show | grep -q "from $ip lookup $table" || ip rule add from "$ip" lookup "$table" priority "$table"
done
ip route replace "$cidr" dev "$iface" table "$table"
ip route replace default via "$router" dev "$iface" table "$table"
echo "$iface: device $device, $(get "$dir/local-ipv4s" | tr '\n' ' ')table $table via $router"
