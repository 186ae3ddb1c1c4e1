#!/usr/bin/env bash
# The main job: build vpclab, bring up the embedded default lab (netns-setup/default.toml) and
# show it forwarding real traffic. Every step is printed so you can repeat it by hand. The lab
# stays up afterwards; `target/release/vpclab down` removes it. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then exec sudo -E "$0" "$@"; fi
scripts/install-deps.sh
cargo build --release --locked -q
vpclab=target/release/vpclab
run() { echo; echo "\$ vpclab ${*}"; "$vpclab" "$@"; }
x() { run exec --lab demo "$@"; }
"$vpclab" down demo >/dev/null 2>&1 || true
run up
x web -- ping -c 3 10.0.2.10                               # web (public subnet) -> app (private subnet), routed
x app -- ping -c 3 -I 10.0.2.50 10.0.2.20              # app's floating ENI (eth1) -> standby, same subnet
x app -- iperf3 -s -D -1 -p 8080            # sg-app admits tcp 8080 from sg-web only
sleep 0.3
x web -- iperf3 -c 10.0.2.10 -p 8080 -t 2              # TCP through the forwarder, tracked both sides
x app -- ping -c 2 198.51.100.7                          # private app -> internet host, through nat-main
x web -- ping -c 2 198.51.100.7                          # web -> internet host, through igw-main as its Elastic IP
run trace --lab demo --from web --to 10.0.2.10 --dport 22   # why is this refused? (sg-app admits 8080 only)
# A failover drill, live: the floating ENI (10.0.2.50) moves from app to standby.
run detach-network-interface --lab demo --network-interface-id eni-app-float
run attach-network-interface --lab demo --network-interface-id eni-app-float --instance-id standby --device-index 1
run exec --lab demo standby -- ip -br addr show dev eth1     # the ENI, its MAC and address, now in standby
x web -- ping -c 2 10.0.2.50                                 # answered by standby
run events --lab demo
run status demo
echo
echo "The lab is still up: try \`$vpclab exec web -- bash\`, then \`$vpclab down demo\` to remove it."
