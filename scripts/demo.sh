#!/usr/bin/env bash
# The main job: build vpclab, install it as /usr/local/bin/vpclab, bring up the embedded default
# lab (netns-setup/default.toml) and show it forwarding real traffic and failing over. Every step
# is printed as a command you can paste. The lab stays up afterwards; `vpclab down demo` removes
# it. It never touches a lab it did not start: with a lab `demo` already running it stops at once
# (DEMO_LAB=name runs it under another name). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then exec sudo -E "$0" "$@"; fi
scripts/install-deps.sh
cargo build --release --locked -q
install -m 755 target/release/vpclab /usr/local/bin/vpclab
echo "installed /usr/local/bin/vpclab"
vpclab=/usr/local/bin/vpclab
lab=${DEMO_LAB:-demo}
if "$vpclab" status "$lab" >/dev/null 2>&1; then
  echo "demo: a lab named \`$lab\` is already running and this demo did not start it; leaving it alone." >&2
  echo "demo: \`vpclab down $lab\` removes it, or DEMO_LAB=another scripts/demo.sh runs the demo beside it." >&2
  exit 1
fi
"$vpclab" down "$lab" >/dev/null 2>&1 || true   # the remains of a dead forwarder only (a live lab stopped us above)
run() { echo; echo "\$ vpclab ${*}"; "$vpclab" "$@"; }
x() { run exec --lab "$lab" "$@"; }
run up --name "$lab"
x web -- ping -c 3 10.0.2.10                               # web (public subnet) -> app (private subnet), routed
x app -- ping -c 3 -I 10.0.2.50 10.0.2.20              # app's floating ENI (eth1) -> standby, same subnet
x app -- iperf3 -s -D -1 -p 8080            # sg-app admits tcp 8080 from sg-web only
sleep 0.3
x web -- iperf3 -c 10.0.2.10 -p 8080 -t 2              # TCP through the forwarder, tracked both sides
x app -- ping -c 2 198.51.100.7                          # private app -> internet host, through nat-main
x web -- ping -c 2 198.51.100.7                          # web -> internet host, through igw-main as its Elastic IP
run trace --lab "$lab" --from web --to 10.0.2.10 --dport 22   # why is this refused? (sg-app admits 8080 only)
# A failover drill, live: the floating ENI (10.0.2.50) moves from app to standby.
run detach-network-interface --lab "$lab" --network-interface-id eni-app-float
run attach-network-interface --lab "$lab" --network-interface-id eni-app-float --instance-id standby --device-index 1
run exec --lab "$lab" standby -- ip -br addr show dev eth1     # the ENI, its MAC and address, now in standby
x web -- ping -c 2 10.0.2.50                                 # answered by standby
run events --lab "$lab"
run status "$lab"
echo
echo "The lab is still up: try \`vpclab exec --lab $lab web -- bash\`, then \`vpclab down $lab\` to remove it."
