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
"$vpclab" down demo >/dev/null 2>&1 || true
run up
run exec web -- ping -c 3 10.0.2.10                       # web (public subnet) -> app (private subnet), routed
run exec app -- ping -c 3 -I 10.0.2.50 10.0.2.20          # app's floating ENI (eth1) -> standby, same subnet
run exec app -- iperf3 -s -D -1
sleep 0.3
run exec web -- iperf3 -c 10.0.2.10 -t 2                  # TCP through the forwarder
run status
echo
echo "The lab is still up: try \`$vpclab exec web -- bash\`, then \`$vpclab down\` to remove it."
