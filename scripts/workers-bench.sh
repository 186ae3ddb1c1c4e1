#!/usr/bin/env bash
# Worker scaling: forwarded packets per second and forwarder CPU per packet with `up --workers W`,
# PAIRS instance pairs sending 64-byte UDP flat out in parallel (iperf3 -u -b 0 -l 64), each
# client in one subnet and its server in another, so every packet is routed and tracked.
#
#   scripts/workers-bench.sh [SECONDS] [PAIRS] [WORKERS...]     (defaults: 5 4 1 2)
#
# Prints one line per worker count: delivered kpps (summed over the pairs, as the servers count
# them) and the daemon's CPU (every thread, /proc/PID/task/*/schedstat) per delivered datagram.
# Needs root and a release build (target/release/vpclab).
set -euo pipefail
secs=${1:-5}
pairs=${2:-4}
shift $(($# < 2 ? $# : 2))
workers=("$@")
[ ${#workers[@]} -eq 0 ] && workers=(1 2)
bin=$(dirname "$0")/../target/release/vpclab
lab=wbench$$
work=$(mktemp -d)
trap '"$bin" down "$lab" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

{
  echo "name = \"$lab\""
  echo '[[vpc]]'; echo 'id = "vpc-w"'; echo 'cidr = "10.0.0.0/16"'
  for s in c s; do
    n=$([ $s = c ] && echo 1 || echo 2)
    echo '[[subnet]]'; echo "id = \"subnet-$s\""; echo 'vpc = "vpc-w"'; echo "cidr = \"10.0.$n.0/24\""
  done
  for i in $(seq "$pairs"); do
    for s in c s; do
      n=$([ $s = c ] && echo 1 || echo 2)
      echo '[[instance]]'; echo "id = \"$s$i\""
      echo '[[network_interface]]'; echo "id = \"eni-$s$i\""; echo "subnet = \"subnet-$s\""
      echo "private_ip = \"10.0.$n.$((10 + i))\""; echo "attachment = { instance = \"$s$i\", device_index = 0 }"
    done
  done
} >"$work/w.toml"

daemon_cpu_ns() { local t=0 ns; for f in /proc/"$1"/task/*/schedstat; do read -r ns _ <"$f" && t=$((t + ns)); done; echo "$t"; }

for w in "${workers[@]}"; do
  "$bin" up "$work/w.toml" --workers "$w" >/dev/null
  pid=$("$bin" status "$lab" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
  for i in $(seq "$pairs"); do
    "$bin" exec --lab "$lab" "s$i" -- iperf3 -s -D -1 -I "$work/s$i.pid" >/dev/null
  done
  sleep 0.5
  before=$(daemon_cpu_ns "$pid")
  for i in $(seq "$pairs"); do
    "$bin" exec --lab "$lab" "c$i" -- timeout $((secs + 10)) iperf3 -c "10.0.2.$((10 + i))" -u -b 0 -l 64 -t "$secs" -J >"$work/c$i.json" &
  done
  wait
  after=$(daemon_cpu_ns "$pid")
  python3 - "$w" "$pairs" "$before" "$after" "$work"/c*.json <<'EOF'
import json, sys
w, pairs, before, after = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
got = secs = 0
for f in sys.argv[5:]:
    s = json.load(open(f))["end"]["sum"]
    got += s["packets"] - s["lost_packets"]
    secs = max(secs, s["seconds"])
print(f"workers={w} pairs={pairs} delivered_kpps={got / secs / 1e3:.1f} cpu_ns_per_packet={(after - before) / max(got, 1):.0f}")
EOF
  "$bin" down "$lab" >/dev/null
done
