#!/usr/bin/env bash
# vpclab's benchmark: a two-instance lab (one instance per subnet, so every packet is routed by
# the forwarder), measured the way ../shared/bench/ceiling.sh measures its rows, in the same run:
# iperf3 TCP (one stream), iperf3 UDP with 64-byte payloads, ping round trip. Prints the
# ceiling rows, then vpclab's row, then vpclab's ratios against each ceiling row; then the
# live-change rows of scripts/failover.py (an ENI failover's outage; a change to a big lab). Needs root.
#
#   scripts/bench.sh [SECONDS]     default 5 s per measurement
set -euo pipefail
secs=${1:-5}
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then exec sudo -E "$0" "$@"; fi
shared=${VPCLAB_SHARED:-../shared}
[ -x "$shared/bench/ceiling.sh" ] || { echo "bench: $shared/bench/ceiling.sh not found (set VPCLAB_SHARED)" >&2; exit 1; }
scripts/install-deps.sh
cargo build --release --locked -q
bin=$PWD/target/release/vpclab
lab="bench$$"
work=$(mktemp -d)
cleanup() { "$bin" down "$lab" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

cat > "$work/bench.toml" <<TOML
name = "$lab"
[[vpc]]
id = "vpc-bench"
cidr = "10.0.0.0/16"
[[subnet]]
id = "subnet-client"
vpc = "vpc-bench"
cidr = "10.0.1.0/24"
[[subnet]]
id = "subnet-server"
vpc = "vpc-bench"
cidr = "10.0.2.0/24"
[[instance]]
id = "client"
[[instance]]
id = "server"
[[network_interface]]
id = "eni-client"
subnet = "subnet-client"
private_ip = "10.0.1.10"
attachment = { instance = "client", device_index = 0 }
[[network_interface]]
id = "eni-server"
subnet = "subnet-server"
private_ip = "10.0.2.10"
attachment = { instance = "server", device_index = 0 }
TOML

echo "# ceiling rows ($shared/bench/ceiling.sh $secs)"
"$shared/bench/ceiling.sh" "$secs" | tee "$work/ceiling.txt"

"$bin" up "$work/bench.toml" >/dev/null
pid=$("$bin" status "$lab" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
x() { "$bin" exec --lab "$lab" "$@"; }
ip=10.0.2.10
# Sets tcp, udp and rtt: one iperf3 TCP stream, iperf3 UDP with 64-byte payloads, ping.
measure() {
  x server -- iperf3 -s -D -1 -I "$work/s1.pid" >/dev/null; sleep 0.3
  tcp=$(x client -- timeout $((secs + 10)) iperf3 -c "$ip" -t "$secs" -J | python3 -c \
    'import json,sys; print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9, 2))')
  x server -- iperf3 -s -D -1 -I "$work/s2.pid" >/dev/null; sleep 0.3
  udp=$(x client -- timeout $((secs + 10)) iperf3 -c "$ip" -u -b 0 -l 64 -t "$secs" -J | python3 -c \
    'import json,sys; s=json.load(sys.stdin)["end"]["sum"]; print(round((s["packets"]-s["lost_packets"])/s["seconds"]/1e3, 1))')
  # The same datagrams offered at 100 kpps (51.2 Mbit/s of 64-byte payloads): what arrives.
  x server -- iperf3 -s -D -1 -I "$work/s4.pid" >/dev/null; sleep 0.3
  udp100=$(x client -- timeout $((secs + 10)) iperf3 -c "$ip" -u -b 51.2M -l 64 -t "$secs" -J | python3 -c \
    'import json,sys; s=json.load(sys.stdin)["end"]["sum"]; print(round((s["packets"]-s["lost_packets"])/s["seconds"]/1e3, 1))')
  rtt=$(x client -- ping -c 50 -i 0.01 -q "$ip" | awk -F/ '/rtt/ {printf "%d", $5*1000}')
  cpu=$(cpu_per_packet)
}
# Nanoseconds of forwarder CPU (every thread of the daemon: forwarding, capture writers, control)
# per datagram of a 64-byte UDP stream at a fixed 50 kpps, below every row's ceiling: what the
# work costs, less swayed by a busy machine than a rate is.
daemon_cpu_ns() { local t=0 ns; for f in /proc/"$pid"/task/*/schedstat; do read -r ns _ <"$f" && t=$((t + ns)); done; echo "$t"; }
cpu_per_packet() {
  x server -- iperf3 -s -D -1 -I "$work/s3.pid" >/dev/null; sleep 0.3
  local before after
  before=$(daemon_cpu_ns)
  x client -- timeout $((secs + 10)) iperf3 -c "$ip" -u -b 25.6M -l 64 -t "$secs" -J >"$work/fixed.json"
  after=$(daemon_cpu_ns)
  python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["end"]["sum"]; print(round((int(sys.argv[3])-int(sys.argv[2]))/s["packets"]))' \
    "$work/fixed.json" "$before" "$after"
}
measure
row="vpclab tcp_gbps=$tcp udp64_kpps=$udp rtt_us=$rtt"
cpu_plain=$cpu udp100_plain=$udp100
echo "# vpclab (two instances in two subnets, routed by the forwarder)"
echo "$row"
# The same while `vpclab capture all --snaplen 128 -w FILE` runs: what capturing costs forwarding.
"$bin" capture --lab "$lab" all --snaplen 128 -w "$work/cap.pcapng" 2>"$work/cap.err" &
capture=$!
for _ in $(seq 100); do [ -s "$work/cap.pcapng" ] && break; sleep 0.05; done
measure
kill -INT "$capture"; wait "$capture" || true
echo "# vpclab while capturing both ENIs (snaplen 128, to a file): $(cat "$work/cap.err")"
echo "vpclab+capture tcp_gbps=$tcp udp64_kpps=$udp rtt_us=$rtt"
echo "# 64-byte datagrams offered at 100 kpps, delivered: ${udp100_plain} kpps; while capturing: ${udp100} kpps"
echo "# forwarder CPU per 64-byte datagram at 50 kpps: ${cpu_plain} ns; while capturing: ${cpu} ns"
echo "# ratios: vpclab / ceiling row (tcp and udp: higher is better; rtt: lower is better)"
python3 - "$work/ceiling.txt" "$row" <<'PY'
import sys
def parse(line):
    name, *kv = line.split()
    return name, {k: float(v) for k, v in (p.split("=") for p in kv)}
_, me = parse(sys.argv[2])
for line in open(sys.argv[1]):
    if not line.strip():
        continue
    name, ref = parse(line)
    r = lambda k: f"{me[k] / ref[k]:.2f}x" if ref[k] else "n/a"
    print(f"vpclab/{name:<11} tcp={r('tcp_gbps')} udp64={r('udp64_kpps')} rtt={r('rtt_us')}")
PY
echo "# live changes: an ENI moved under probes every 1 ms; one rule added to a lab of 200 ENIs and 1,000 rules"
python3 scripts/failover.py "$bin"
