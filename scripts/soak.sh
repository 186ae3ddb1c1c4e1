#!/usr/bin/env bash
# Soak: runs the default lab for SECONDS under mixed traffic (TCP through iperf3, a ping, floods of
# new UDP flows) while it is changed live (the floating ENI moved back and forth, a rule added and
# revoked, an instance stopped and started) and its forwarder killed and resumed; then checks that
# nothing leaked and every counter adds up:
#   - the forwarder's resident memory and open descriptors did not grow beyond a bound;
#   - frames read = frames written + frames dropped (by reason), over every port;
#   - after `down`: no namespace, no TAP, no run-directory entry of the lab is left.
# Needs root. Exit status 0 only if every check passed.
#
#   scripts/soak.sh [SECONDS]      default 60
set -euo pipefail
secs=${1:-60}
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then exec sudo -E "$0" "$@"; fi
cargo build --release --locked -q
bin=$PWD/target/release/vpclab
lab="soak$$"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  "$bin" down "$lab" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "soak: FAILED: $*" >&2; exit 1; }
v() { "$bin" "$@" --lab "$lab" >/dev/null; }
fpid() { python3 -c "import json;print(json.load(open('/run/vpclab/$lab/record.json'))['pid'])"; }
sample() { # pid -> "rss_kb fds"
  local p=$1
  echo "$(awk '/VmRSS/ {print $2}' /proc/"$p"/status) $(ls /proc/"$p"/fd | wc -l)"
}

"$bin" up --name "$lab" >/dev/null
ns() { echo "$lab-$1"; }
v authorize-security-group-ingress --group-id sg-app --protocol udp --port 9000-9999 --cidr 10.0.0.0/16
ip netns exec "$(ns app)" iperf3 -s -p 8080 >/dev/null 2>&1 & pids+=($!)
ip netns exec "$(ns web)" sh -c 'while true; do iperf3 -c 10.0.2.10 -p 8080 -t 3 >/dev/null 2>&1 || sleep 0.2; done' & pids+=($!)
ip netns exec "$(ns web)" ping -i 0.05 10.0.2.20 >/dev/null 2>&1 & pids+=($!)

flood() { # 2,000 new UDP flows (a new source port each) from web to app: churn, not exhaustion
  # (their entries live 30 s; the ENIs' tables hold 65,536, and a full table would rightly refuse
  # the final check's ping)
  ip netns exec "$(ns web)" python3 -c '
import socket
for i in range(2000):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"soak", ("10.0.2.10", 9000 + i % 1000))
    s.close()'
}

max_rss=0
max_fd=0
check_growth() { # "rss fds" at a forwarder's start and now
  read -r r0 f0 <<<"$1"; read -r r1 f1 <<<"$2"
  [ $((r1 - r0)) -lt 65536 ] || fail "forwarder memory grew by $((r1 - r0)) kB"
  [ $((f1 - f0)) -le 8 ] || fail "forwarder descriptors grew from $f0 to $f1"
  [ $((r1 - r0)) -le $max_rss ] || max_rss=$((r1 - r0))
  [ $((f1 - f0)) -le $max_fd ] || max_fd=$((f1 - f0))
}
float_on=app
end=$((SECONDS + secs))
round=0
pid=$(fpid)
first=$(sample "$pid")
restarts=0
while [ $SECONDS -lt $end ]; do
  case $((round % 5 == 4 && round % 20 != 19 ? 3 : round % 5)) in
    0) v detach-network-interface --network-interface-id eni-app-float
       if [ $float_on = app ]; then float_on=standby; else max_rss=0
max_fd=0
check_growth() { # "rss fds" at a forwarder's start and now
  read -r r0 f0 <<<"$1"; read -r r1 f1 <<<"$2"
  [ $((r1 - r0)) -lt 65536 ] || fail "forwarder memory grew by $((r1 - r0)) kB"
  [ $((f1 - f0)) -le 8 ] || fail "forwarder descriptors grew from $f0 to $f1"
  [ $((r1 - r0)) -le $max_rss ] || max_rss=$((r1 - r0))
  [ $((f1 - f0)) -le $max_fd ] || max_fd=$((f1 - f0))
}
float_on=app; fi
       v attach-network-interface --network-interface-id eni-app-float --instance-id $float_on --device-index 1 ;;
    1) v authorize-security-group-ingress --group-id sg-app --protocol tcp --port 22 --cidr 10.0.0.0/16
       flood
       v revoke-security-group-ingress --group-id sg-app --protocol tcp --port 22 --cidr 10.0.0.0/16 ;;
    2) v stop-instances --instance-ids standby
       v start-instances --instance-ids standby ;;
    3) flood ;;
    4) check_growth "$first" "$(sample "$pid")"
       kill -9 "$(fpid)"
       "$bin" resume "$lab" >/dev/null || fail "resume after kill -9"
       restarts=$((restarts + 1))
       pid=$(fpid)
       first=$(sample "$pid") ;;
  esac
  round=$((round + 1))
  "$bin" status "$lab" >/dev/null || fail "status after round $round"
done
last=$(sample "$pid")
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
pids=()
"$bin" exec --lab "$lab" web -- ping -c 2 -W 1 10.0.2.10 >/dev/null || fail "forwarding after the soak"
sleep 0.5   # let frames in flight land before counters are compared
"$bin" status --json "$lab" > "$work/status.json"
check_growth "$first" "$last"
echo "soak: $round rounds in ${secs}s, $restarts forwarder restarts (kill -9, resume); largest growth over one forwarder's life: ${max_rss} kB resident, ${max_fd} descriptors"
python3 - "$work/status.json" <<'PY' || fail "counters do not add up"
import json, sys
s = json.load(open(sys.argv[1]))
kernel = {"tap_queue_full", "instance_kernel_dropped"}
rx = sum(e["rx_packets"] for e in s["enis"])
tx = sum(e["tx_packets"] for e in s["enis"])
drops = sum(n for e in s["enis"] for r, n in e["drops"].items() if r not in kernel)
print(f"soak: frames read {rx} = written {tx} + dropped {drops} ({rx - tx - drops:+d})")
# A frame read is written once or dropped once; only frames still in flight may differ.
sys.exit(0 if abs(rx - tx - drops) <= 16 else 1)
PY
"$bin" down "$lab" >/dev/null
[ -z "$(ip netns list | grep "^$lab-" || true)" ] || fail "namespaces left: $(ip netns list | grep "^$lab-")"
[ ! -e "/run/vpclab/$lab" ] && [ ! -e "/run/vpclab/$lab.lock" ] || fail "run-directory entries left"
prefix=$(echo "$lab" | cut -c1-6)
[ -z "$(ip -o link | grep " $prefix-" || true)" ] || fail "TAPs left in the host namespace"
echo "soak: passed"
