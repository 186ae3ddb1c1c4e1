#!/usr/bin/env bash
# vpclab's benchmark (issue 10), in sections; each prints its rows, and vpclab's figures as ratios
# to a ceiling row measured in the same run where one exists. Needs root.
#
#   iperf     ../shared/bench/ceiling.sh's rows (kernel, bridge, bridge+gso), then the same
#             through vpclab: a two-instance lab (one instance per subnet, so every packet is
#             routed by the forwarder): iperf3 TCP (one stream), iperf3 UDP with 64-byte payloads,
#             ping round trip; the same while a capture runs; the internet gateway and NAT gateway
#             paths; forwarder CPU per datagram at 50 kpps (iperf3); ratios to each ceiling row.
#   gen       the same paths loaded by examples/pktgen (64-byte UDP payloads from a raw packet
#             socket inside the instance; iperf3's UDP sender is slower than the forwarder), with
#             the `bridge` copier (../shared/bench/tapbridge.c) measured the same way as ceiling:
#             delivered rate flat out, and CPU per packet at 50 kpps (the copier's / the forwarder's
#             own CPU time over the packets the receiver counted); the send modes compared.
#   copier    examples/tap_copier (no decisions, the forwarder's TAP flags) loaded by pktgen like the
#             gen rows, its I/O done as the forwarder does it (epoll, a read and a write per frame)
#             and with io_uring (reads in flight, submissions batched): delivered rate flat out
#             and CPU per packet at 50 kpps, beside the bridge copier.
#   newflows  a new connection per packet (ports stepped), flat out, each path in a fresh lab:
#             new flows per second delivered (issue 10: at least 200,000).
#   tables    connection tables holding 100 k and 1 M flows: memory and lookup cost
#             (examples/pipeline_bench --case table).
#   sweep     new-flow cost against the rule count (examples/pipeline_bench --case sweep).
#   biglab    a lab of 500 instances: `up` and `down` times (scripts/failover.py biglab).
#   live      an ENI failover's outage; a change to a big lab (scripts/failover.py).
#   workers   worker scaling: 4 instance pairs of 64-byte UDP at once, delivered rate and forwarder
#             CPU per datagram with `up --workers 1` and `--workers 2` (scripts/workers-bench.sh).
#
#   scripts/bench.sh [--secs S] [--only SECTION,...] [--runs N] [--quick] [--pktgen-mode M] [--up-args "ARGS"] [SECONDS]
#     --secs S / SECONDS  seconds per measurement (default 5)
#     --only            the sections to run, comma-separated (default: all, in the order above)
#     --runs N          gen: measure the ceiling and each path N times, print the medians (default 1)
#     --quick           2 s per measurement, sections gen and newflows
#     --up-args         extra arguments for every `vpclab up` of the lab rows (e.g. for a worker count)
#     --pktgen-mode M   pktgen's send mode for the gen and newflows rows: sendmmsg (default) or ring
#
# A step that fails stops the run with its error (set -e; every measurement checks its output).
set -euo pipefail
secs=5 runs=1 only="" up_args="" pktgen_mode=sendmmsg
all_sections="iperf gen copier newflows tables sweep biglab live workers"
while [ $# -gt 0 ]; do
  case $1 in
    --secs) secs=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --quick) secs=2; only=${only:-gen,newflows}; shift ;;
    --up-args) up_args=$2; shift 2 ;;
    --pktgen-mode) pktgen_mode=$2; shift 2 ;;
    [0-9]*) secs=$1; shift ;;
    *) echo "bench: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
sections=${only//,/ }
sections=${sections:-$all_sections}
for s in $sections; do
  case " $all_sections " in *" $s "*) ;; *) echo "bench: unknown section $s (sections: $all_sections)" >&2; exit 2 ;; esac
done
want() { case " $sections " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then exec sudo -E "$0" "$@"; fi
shared=${VPCLAB_SHARED:-../shared}
[ -x "$shared/bench/ceiling.sh" ] || { echo "bench: $shared/bench/ceiling.sh not found (set VPCLAB_SHARED)" >&2; exit 1; }
scripts/install-deps.sh
cargo build --release --locked -q
cargo build --release --locked -q --example pktgen --example pipeline_bench --example tap_copier
bin=$PWD/target/release/vpclab
pktgen=$PWD/target/release/examples/pktgen
work=$(mktemp -d)
labs=() bp=""
cleanup() {
  [ -n "$bp" ] && kill "$bp" 2>/dev/null || true
  for l in "${labs[@]}"; do "$bin" down "$l" >/dev/null 2>&1 || true; done
  ip netns del "gen$$a" 2>/dev/null || true
  ip netns del "gen$$b" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "bench: $*" >&2; exit 1; }
median() { python3 -c "import statistics, sys; print(f'{statistics.median(map(float, sys.argv[1:])):g}')" "$@"; }
ratio() { python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print(f'{a / b:.2f}' if b else 'n/a')" "$1" "$2"; }

# The lab every row uses: client (10.0.1.10, Elastic IP 203.0.113.20) in a public subnet, server
# (10.0.2.10) in a private one behind a NAT gateway, an internet host 198.51.100.7. Both in the
# VPC's default group, whose inbound rule names the group, so every flow is tracked on both ENIs
# and crosses both subnets' network ACLs. $2: each ENI's connection-table bound.
lab_toml() {
  local lab=$1 max=$2
  cat <<TOML
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
connection_tracking = { max_connections = $max }
attachment = { instance = "client", device_index = 0 }
[[network_interface]]
id = "eni-server"
subnet = "subnet-server"
private_ip = "10.0.2.10"
connection_tracking = { max_connections = $max }
attachment = { instance = "server", device_index = 0 }
TOML
}
# Brings up a lab named $1 with connection-table bound $2 and sets $lab and $pid (the daemon's).
# Every `up` goes through here, so $up_args (e.g. a worker count) reaches every lab row.
lab_up() {
  lab=$1
  lab_toml "$lab" "$2" >"$work/$lab.toml"
  # shellcheck disable=SC2086 # $up_args is a list of words on purpose
  "$bin" up "$work/$lab.toml" $up_args >/dev/null
  labs+=("$lab")
  pid=$("$bin" status "$lab" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
}
lab_down() { "$bin" down "$lab" >/dev/null; }

# Nanoseconds of CPU of every thread of process $1 (the forwarder's daemon: forwarding, capture
# writers, control; or the copier).
cpu_ns_of() { local t=0 ns f; for f in /proc/"$1"/task/*/schedstat; do read -r ns _ <"$f" && t=$((t + ns)); done; echo "$t"; }

# ---------------------------------------------------------------------------------------------
# iperf: today's rows (iperf3 and ping through the lab, against ceiling.sh)
# ---------------------------------------------------------------------------------------------
section_iperf() {
  echo "# ceiling rows ($shared/bench/ceiling.sh $secs)"
  "$shared/bench/ceiling.sh" "$secs" | tee "$work/ceiling.txt"
  lab_up "bench$$" 65536
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
    cpu=$(cpu_per_datagram)
  }
  # Nanoseconds of forwarder CPU per datagram of a 64-byte UDP stream at a fixed 50 kpps, below
  # every row's ceiling: what the work costs, less swayed by a busy machine than a rate is.
  cpu_per_datagram() {
    serve 3
    local before after
    before=$(cpu_ns_of "$pid")
    x "$src" -- timeout $((secs + 10)) iperf3 -c "$ip" -u -b 25.6M -l 64 -t "$secs" -J >"$work/fixed.json"
    after=$(cpu_ns_of "$pid")
    python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["end"]["sum"]; print(round((int(sys.argv[3])-int(sys.argv[2]))/s["packets"]))' \
      "$work/fixed.json" "$before" "$after"
  }
  measure
  local row="vpclab tcp_gbps=$tcp udp64_kpps=$udp rtt_us=$rtt"
  local cpu_plain=$cpu udp100_plain=$udp100 tcp_plain=$tcp udp_plain=$udp rtt_plain=$rtt
  echo "# vpclab (two instances in two subnets, routed by the forwarder)"
  echo "$row"
  # The same while `vpclab capture all --snaplen 128 -w FILE` runs: what capturing costs forwarding.
  "$bin" capture --lab "$lab" all --snaplen 128 -w "$work/cap.pcapng" 2>"$work/cap.err" &
  local capture=$!
  for _ in $(seq 100); do [ -s "$work/cap.pcapng" ] && break; sleep 0.05; done
  measure
  kill -INT "$capture"; wait "$capture" || true
  echo "# vpclab while capturing all (both ENIs and the internet side; snaplen 128, to a file): $(cat "$work/cap.err")"
  echo "vpclab+capture tcp_gbps=$tcp udp64_kpps=$udp rtt_us=$rtt"
  echo "# 64-byte datagrams offered at 100 kpps, delivered: ${udp100_plain} kpps; while capturing: ${udp100} kpps"
  echo "# forwarder CPU per 64-byte datagram at 50 kpps: ${cpu_plain} ns; while capturing: ${cpu} ns"
  # The gateway paths beside the ENI path: client (Elastic IP) to an internet host through the
  # internet gateway; server (private) to it through the NAT gateway. TCP as a ratio to
  # bridge+gso, iperf3's UDP to bridge (ceiling.sh's rows of this run).
  local gso bridge
  gso=$(awk '$1 == "bridge+gso" { sub("tcp_gbps=", "", $2); print $2 }' "$work/ceiling.txt")
  bridge=$(awk '$1 == "bridge" { sub("udp64_kpps=", "", $3); print $3 }' "$work/ceiling.txt")
  echo "# gateway paths (to internet host 198.51.100.7), beside the ENI path; cpu_ns: forwarder CPU per datagram at 50 kpps (iperf3)"
  echo "path=eni tcp_gbps=$tcp_plain ($(ratio "$tcp_plain" "$gso")x bridge+gso) udp64_kpps=$udp_plain ($(ratio "$udp_plain" "$bridge")x bridge) udp100_kpps=$udp100_plain rtt_us=$rtt_plain cpu_ns=$cpu_plain"
  for path in igw nat; do
    if [ "$path" = igw ]; then src=client; else src=server; fi
    dst_at=internet ip=198.51.100.7
    measure
    echo "path=$path tcp_gbps=$tcp ($(ratio "$tcp" "$gso")x bridge+gso) udp64_kpps=$udp ($(ratio "$udp" "$bridge")x bridge) udp100_kpps=$udp100 rtt_us=$rtt cpu_ns=$cpu ($(ratio "$cpu" "$cpu_plain")x the eni path)"
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
  lab_down
}

# ---------------------------------------------------------------------------------------------
# gen and newflows: examples/pktgen through the bridge copier and through vpclab
# ---------------------------------------------------------------------------------------------
# The receiver drops the benchmark's datagrams (UDP to 5000-5999) in the raw table, before any
# socket lookup or conntrack, so it answers nothing back through the path and is not the
# bottleneck; its interface's rx_packets, counted before that, is what arrived.
quiet_receiver() { ip netns exec "$1" iptables -t raw -I PREROUTING -p udp --dport 5000:5999 -j DROP; }
rx_packets() { ip netns exec "$1" cat "/sys/class/net/$2/statistics/rx_packets"; }
# Runs pktgen in namespace $1 on its interface $2 towards $3 and counts at namespace $4's
# interface $5, charging the CPU of process $6; the rest of the arguments go to pktgen. Waits until the receiver's count settles.
# Sets g_kpps (delivered per second of sending), g_sent_kpps, g_dropped (the sender's
# interface's tx_dropped), g_rx, and g_cpu_ns (CPU of $6 per delivered packet).
gen_run() {
  local src_ns=$1 src_dev=$2 dst=$3 rx_ns=$4 rx_dev=$5 cpu_pid=$6; shift 6
  local rx0 rx1 last cpu0 cpu1 out
  rx0=$(rx_packets "$rx_ns" "$rx_dev")
  cpu0=$(cpu_ns_of "$cpu_pid")
  out=$(ip netns exec "$src_ns" timeout $((secs + 10)) "$pktgen" --dev "$src_dev" --dst "$dst" --secs "$secs" --mode "$pktgen_mode" "$@")
  rx1=$(rx_packets "$rx_ns" "$rx_dev") last=-1
  for _ in $(seq 50); do
    [ "$rx1" = "$last" ] && break
    sleep 0.02; last=$rx1; rx1=$(rx_packets "$rx_ns" "$rx_dev")
  done
  cpu1=$(cpu_ns_of "$cpu_pid")
  read -r g_kpps g_sent_kpps g_dropped g_rx g_cpu_ns < <(python3 - "$out" "$((rx1 - rx0))" "$((cpu1 - cpu0))" <<'PY'
import sys
kv = dict(p.split("=", 1) for p in sys.argv[1].split()[1:])
rx, cpu = int(sys.argv[2]), int(sys.argv[3])
if rx <= 0:
    sys.exit(f"bench: nothing arrived ({sys.argv[1]})")
secs = float(kv["secs"])
print(f"{rx / secs / 1e3:.1f} {int(kv['sent']) / secs / 1e3:.1f} {kv['tx_dropped']} {rx} {cpu / rx:.0f}")
PY
  )
}

# The `bridge` ceiling: tapbridge (no processing, a read and a write per frame) between two
# namespaces, loaded by pktgen like vpclab's paths. Sets bridge_kpps and bridge_cpu_ns; run once,
# by the first section that needs it.
gen_ceiling() {
  gcc -O2 -o "$work/tapbridge" "$shared/bench/tapbridge.c"
  local a="gen$$a" b="gen$$b"
  ip netns add "$a"; ip netns add "$b"
  "$work/tapbridge" 0 2>/dev/null & bp=$!
  for _ in $(seq 100); do ip link show tbb >/dev/null 2>&1 && break; sleep 0.05; done
  # tapbridge exits if its TAP names are taken (another ceiling run): then tba/tbb are not ours.
  kill -0 "$bp" 2>/dev/null || fail "tapbridge could not create its TAPs tba/tbb (is another ceiling run using them?)"
  ip link set tba netns "$a"
  ip link set tbb netns "$b"
  ip -n "$a" addr add 10.9.0.1/24 dev tba; ip -n "$a" link set tba up
  ip -n "$b" addr add 10.9.0.2/24 dev tbb; ip -n "$b" link set tbb up
  quiet_receiver "$b"
  echo "# pktgen (64-byte UDP payloads, 106-byte frames) through the bridge copier: send modes, flat out"
  local mode keep=$pktgen_mode
  for mode in sendmmsg ring; do
    for bypass in "" --qdisc-bypass; do
      pktgen_mode=$mode
      gen_run "$a" tba 10.9.0.2 "$b" tbb "$bp" $bypass
      echo "gen-mode mode=$mode${bypass:+ qdisc_bypass} sent_kpps=$g_sent_kpps delivered_kpps=$g_kpps tx_dropped=$g_dropped copier_cpu_ns=$g_cpu_ns"
    done
  done
  pktgen_mode=$keep
  local kpps="" flat="" cpu="" _
  for _ in $(seq "$runs"); do
    gen_run "$a" tba 10.9.0.2 "$b" tbb "$bp"
    kpps+=" $g_kpps" flat+=" $g_cpu_ns"
    gen_run "$a" tba 10.9.0.2 "$b" tbb "$bp" --rate 50000
    cpu+=" $g_cpu_ns"
  done
  bridge_kpps=$(median $kpps) bridge_cpu_ns=$(median $cpu)
  echo "# ceiling (mode $pktgen_mode; median of $runs run(s), [all runs]): udp64_kpps delivered flat out;"
  echo "# cpu_ns: the copier's CPU per delivered packet at 50 kpps; flat_cpu_ns: the same flat out"
  echo "gen bridge udp64_kpps=$bridge_kpps [$kpps ] cpu_ns=$bridge_cpu_ns [$cpu ] flat_cpu_ns=$(median $flat) [$flat ]"
  kill "$bp"; wait "$bp" 2>/dev/null || true; bp=""
  ip netns del "$a"; ip netns del "$b"
}

# A path through vpclab: sender instance, destination, receiver namespace.
path_of() {
  case $1 in
    eni) echo "$lab-client 10.0.2.10 $lab-server" ;;
    igw) echo "$lab-client 198.51.100.7 $lab-internet" ;;
    nat) echo "$lab-server 198.51.100.7 $lab-internet" ;;
  esac
}

section_gen() {
  [ -n "${bridge_kpps:-}" ] || gen_ceiling
  lab_up "bgen$$" 65536
  quiet_receiver "$lab-server"; quiet_receiver "$lab-internet"
  echo "# pktgen through vpclab (median of $runs run(s), paths alternating, [all runs]): udp64_kpps delivered flat out"
  echo "# (one flow; vs the bridge row); cpu_ns: forwarder CPU per delivered packet at 50 kpps (targets: eni <= 1.2x"
  echo "# bridge; igw, nat <= 1.1x eni); flat_cpu_ns: the same flat out"
  local path src dst rx _
  declare -A kpps=() sent=() cpu=() flat=()
  for _ in $(seq "$runs"); do
    for path in eni igw nat; do
      read -r src dst rx < <(path_of "$path")
      gen_run "$src" eth0 "$dst" "$rx" eth0 "$pid" --sport 10000 --dport 5001
      kpps[$path]+=" $g_kpps" sent[$path]+=" $g_sent_kpps" flat[$path]+=" $g_cpu_ns"
      gen_run "$src" eth0 "$dst" "$rx" eth0 "$pid" --sport 10000 --dport 5001 --rate 50000
      cpu[$path]+=" $g_cpu_ns"
    done
  done
  local eni_cpu k c verdict
  eni_cpu=$(median ${cpu[eni]})
  for path in eni igw nat; do
    k=$(median ${kpps[$path]}) c=$(median ${cpu[$path]})
    if [ "$path" = eni ]; then
      verdict="$(ratio "$c" "$bridge_cpu_ns")x bridge, target <= 1.20x: $(python3 -c "print('met' if $c <= 1.2 * $bridge_cpu_ns else 'NOT met')")"
    else
      verdict="$(ratio "$c" "$bridge_cpu_ns")x bridge, $(ratio "$c" "$eni_cpu")x eni, target <= 1.10x eni: $(python3 -c "print('met' if $c <= 1.1 * $eni_cpu else 'NOT met')")"
    fi
    echo "gen path=$path udp64_kpps=$k ($(ratio "$k" "$bridge_kpps")x bridge) [${kpps[$path]} ] sent_kpps=$(median ${sent[$path]})" \
      "cpu_ns=$c ($verdict) [${cpu[$path]} ] flat_cpu_ns=$(median ${flat[$path]}) [${flat[$path]} ]"
  done
  lab_down
}

# examples/tap_copier in mode $1 between TAPs moved into two fresh namespaces, loaded by pktgen as
# the bridge row is: sets c_kpps (delivered flat out) and c_cpu_ns (its CPU per packet at 50 kpps).
copier_run() {
  local a="gen$$a" b="gen$$b"
  ip netns add "$a"; ip netns add "$b"
  target/release/examples/tap_copier --a "tca$$" --b "tcb$$" --mode "$1" >"$work/copier.out" 2>&1 & bp=$!
  for _ in $(seq 100); do grep -q ready "$work/copier.out" && break; sleep 0.05; done
  kill -0 "$bp" 2>/dev/null || fail "tap_copier did not start: $(cat "$work/copier.out")"
  ip link set "tca$$" netns "$a"; ip link set "tcb$$" netns "$b"
  ip -n "$a" addr add 10.9.0.1/24 dev "tca$$"; ip -n "$a" link set "tca$$" up
  ip -n "$b" addr add 10.9.0.2/24 dev "tcb$$"; ip -n "$b" link set "tcb$$" up
  quiet_receiver "$b"
  gen_run "$a" "tca$$" 10.9.0.2 "$b" "tcb$$" "$bp"
  c_kpps=$g_kpps
  gen_run "$a" "tca$$" 10.9.0.2 "$b" "tcb$$" "$bp" --rate 50000
  c_cpu_ns=$g_cpu_ns
  kill "$bp"; wait "$bp" || fail "tap_copier failed: $(cat "$work/copier.out")"; bp=""
  ip netns del "$a"; ip netns del "$b"
}

section_copier() {
  [ -n "${bridge_kpps:-}" ] || gen_ceiling
  echo "# examples/tap_copier (the forwarder's TAP flags, no decisions; median of $runs run(s), modes alternating,"
  echo "# [all runs]): udp64_kpps delivered flat out; cpu_ns: its CPU per packet at 50 kpps"
  local mode _
  declare -A kpps=() cpu=()
  for _ in $(seq "$runs"); do
    for mode in epoll uring; do
      copier_run "$mode"
      kpps[$mode]+=" $c_kpps" cpu[$mode]+=" $c_cpu_ns"
    done
  done
  local epoll_cpu c
  epoll_cpu=$(median ${cpu[epoll]})
  for mode in epoll uring; do
    c=$(median ${cpu[$mode]})
    echo "copier mode=$mode udp64_kpps=$(median ${kpps[$mode]}) [${kpps[$mode]} ] cpu_ns=$c ($(ratio "$c" "$bridge_cpu_ns")x bridge, $(ratio "$c" "$epoll_cpu")x epoll) [${cpu[$mode]} ]"
  done
}

section_newflows() {
  [ -n "${bridge_kpps:-}" ] || gen_ceiling
  echo "# new flows per second through real TAPs: pktgen sends a new connection per packet (ports stepped:"
  echo "# destination 5000-5999, source 1024-65535), flat out, each path in a fresh lab whose ENIs track up to"
  echo "# 4,000,000 connections; every delivered packet opened a connection (target: >= 200,000/s)"
  local path src dst rx verdict
  for path in eni igw nat; do
    lab_up "bnew$$$path" 4000000
    quiet_receiver "$lab-server"; quiet_receiver "$lab-internet"
    read -r src dst rx < <(path_of "$path")
    gen_run "$src" eth0 "$dst" "$rx" eth0 "$pid" --flows new --sport 1024-65535 --dport 5000-5999
    verdict=$(python3 -c "print('met' if $g_kpps >= 200 else 'NOT met')")
    echo "newflows path=$path new_flows_per_s=$(python3 -c "print(round($g_kpps * 1000))") ($(ratio "$g_kpps" "$bridge_kpps")x the bridge's packet rate; target >= 200000: $verdict) sent_kpps=$g_sent_kpps forwarder_cpu_ns=$g_cpu_ns"
    lab_down
  done
}

# ---------------------------------------------------------------------------------------------
# tables, sweep: the pure pipeline (examples/pipeline_bench), lines printed as it prints them
# ---------------------------------------------------------------------------------------------
section_tables() {
  echo "# connection tables at scale (examples/pipeline_bench --case table): memory and ns per packet"
  local n
  for n in 100000 1000000; do
    target/release/examples/pipeline_bench --case table --flows "$n"
  done
}
section_sweep() {
  echo "# new-flow cost against the rule count (examples/pipeline_bench --case sweep)"
  target/release/examples/pipeline_bench --case sweep
}
section_biglab() {
  echo "# a lab of 500 instances, up and down"
  python3 scripts/failover.py "$bin" biglab
}
section_workers() {
  echo "# worker scaling: 4 pairs of 64-byte UDP (iperf3) at once, up --workers 1 and 2"
  scripts/workers-bench.sh "$secs" 4 1 2
}
section_live() {
  echo "# live changes: an ENI moved under probes every 1 ms; one rule added to a lab of 200 ENIs and 1,000 rules"
  python3 scripts/failover.py "$bin" failover bigchange
}

echo "# vpclab bench $(date -u '+%Y-%m-%d %H:%M UTC') commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'): sections $sections; $secs s per measurement; $runs run(s); load $(cut -d' ' -f1-3 /proc/loadavg)${up_args:+; up $up_args}"
for s in $sections; do "section_$s"; done
