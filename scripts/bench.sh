#!/usr/bin/env bash
# vpclab's benchmark: a two-instance lab (one instance per subnet, so every packet is routed by
# the forwarder), measured the way ../shared/bench/ceiling.sh measures its rows, in the same run:
# iperf3 TCP (one stream), iperf3 UDP with 64-byte payloads, ping round trip. Prints the
# ceiling rows, then vpclab's row, the same while a capture runs, the internet gateway and NAT
# gateway paths with the forwarder's CPU per datagram on each, vpclab's ratios against each
# ceiling row; then the live-change rows of scripts/failover.py (an ENI failover's outage; a
# change to a big lab). Needs root.
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
route_table = "rtb-public"
[[subnet]]
id = "subnet-server"
vpc = "vpc-bench"
cidr = "10.0.2.0/24"
route_table = "rtb-private"
[[internet_gateway]]
id = "igw-bench"
vpc = "vpc-bench"
[[elastic_ip]]
id = "eipalloc-client"
public_ip = "203.0.113.20"
network_interface = "eni-client"
[[elastic_ip]]
id = "eipalloc-nat"
public_ip = "203.0.113.10"
[[nat_gateway]]
id = "nat-bench"
subnet = "subnet-client"
elastic_ip = "eipalloc-nat"
[[route_table]]
id = "rtb-public"
vpc = "vpc-bench"
routes = [{ destination = "0.0.0.0/0", target = "igw-bench" }]
[[route_table]]
id = "rtb-private"
vpc = "vpc-bench"
routes = [{ destination = "0.0.0.0/0", target = "nat-bench" }]
[internet]
hosts = [{ id = "host", ip = "198.51.100.7" }]
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
# The path measured: iperf3 runs in instance $src towards $ip, served in instance $dst_at or, for
# `internet`, in the emulated internet's namespace. Starts on the ENI-to-ENI path.
src=client dst_at=server ip=10.0.2.10
at() {
  local where=$1; shift
  if [ "$where" = internet ]; then ip netns exec "$lab-internet" "$@"; else x "$where" -- "$@"; fi
}
serve() { at "$dst_at" iperf3 -s -D -1 -I "$work/s$1.pid" >/dev/null; sleep 0.3; }
# Sets tcp, udp, udp100, rtt and cpu: one iperf3 TCP stream, iperf3 UDP with 64-byte payloads as
# fast as it sends and offered at 100 kpps, ping, and the forwarder's CPU per datagram.
measure() {
  serve 1
  tcp=$(x "$src" -- timeout $((secs + 10)) iperf3 -c "$ip" -t "$secs" -J | python3 -c \
    'import json,sys; print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9, 2))')
  serve 2
  udp=$(x "$src" -- timeout $((secs + 10)) iperf3 -c "$ip" -u -b 0 -l 64 -t "$secs" -J | python3 -c \
    'import json,sys; s=json.load(sys.stdin)["end"]["sum"]; print(round((s["packets"]-s["lost_packets"])/s["seconds"]/1e3, 1))')
  # The same datagrams offered at 100 kpps (51.2 Mbit/s of 64-byte payloads): what arrives.
  serve 4
  udp100=$(x "$src" -- timeout $((secs + 10)) iperf3 -c "$ip" -u -b 51.2M -l 64 -t "$secs" -J | python3 -c \
    'import json,sys; s=json.load(sys.stdin)["end"]["sum"]; print(round((s["packets"]-s["lost_packets"])/s["seconds"]/1e3, 1))')
  rtt=$(x "$src" -- ping -c 50 -i 0.01 -q "$ip" | awk -F/ '/rtt/ {printf "%d", $5*1000}')
  cpu=$(cpu_per_packet)
}
# Nanoseconds of forwarder CPU (every thread of the daemon: forwarding, capture writers, control)
# per datagram of a 64-byte UDP stream at a fixed 50 kpps, below every row's ceiling: what the
# work costs, less swayed by a busy machine than a rate is.
daemon_cpu_ns() { local t=0 ns; for f in /proc/"$pid"/task/*/schedstat; do read -r ns _ <"$f" && t=$((t + ns)); done; echo "$t"; }
cpu_per_packet() {
  serve 3
  local before after
  before=$(daemon_cpu_ns)
  x "$src" -- timeout $((secs + 10)) iperf3 -c "$ip" -u -b 25.6M -l 64 -t "$secs" -J >"$work/fixed.json"
  after=$(daemon_cpu_ns)
  python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["end"]["sum"]; print(round((int(sys.argv[3])-int(sys.argv[2]))/s["packets"]))' \
    "$work/fixed.json" "$before" "$after"
}
measure
row="vpclab tcp_gbps=$tcp udp64_kpps=$udp rtt_us=$rtt"
cpu_plain=$cpu udp100_plain=$udp100 tcp_plain=$tcp udp_plain=$udp rtt_plain=$rtt
echo "# vpclab (two instances in two subnets, routed by the forwarder)"
echo "$row"
# The same while `vpclab capture all --snaplen 128 -w FILE` runs: what capturing costs forwarding.
"$bin" capture --lab "$lab" all --snaplen 128 -w "$work/cap.pcapng" 2>"$work/cap.err" &
capture=$!
for _ in $(seq 100); do [ -s "$work/cap.pcapng" ] && break; sleep 0.05; done
measure
kill -INT "$capture"; wait "$capture" || true
echo "# vpclab while capturing all (both ENIs and the internet side; snaplen 128, to a file): $(cat "$work/cap.err")"
echo "vpclab+capture tcp_gbps=$tcp udp64_kpps=$udp rtt_us=$rtt"
echo "# 64-byte datagrams offered at 100 kpps, delivered: ${udp100_plain} kpps; while capturing: ${udp100} kpps"
echo "# forwarder CPU per 64-byte datagram at 50 kpps: ${cpu_plain} ns; while capturing: ${cpu} ns"
# The gateway paths, as issue 10 asks them beside the ENI path: client (Elastic IP) to an internet
# host through the internet gateway; server (private) to it through the NAT gateway.
echo "# gateway paths (to internet host 198.51.100.7), beside the ENI path; cpu_ns: forwarder CPU per datagram at 50 kpps"
echo "path=eni tcp_gbps=$tcp_plain udp64_kpps=$udp_plain udp100_kpps=$udp100_plain rtt_us=$rtt_plain cpu_ns=$cpu_plain"
for path in igw nat; do
  if [ "$path" = igw ]; then src=client; else src=server; fi
  dst_at=internet ip=198.51.100.7
  measure
  echo "path=$path tcp_gbps=$tcp udp64_kpps=$udp udp100_kpps=$udp100 rtt_us=$rtt cpu_ns=$cpu ($(python3 -c "print(f'{$cpu/$cpu_plain:.2f}')")x the eni path)"
done
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
