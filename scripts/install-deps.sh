#!/usr/bin/env bash
# Installs what vpclab's tests, demo and benchmark use inside instances (idempotent, needs root):
# iproute2 (ip, to inspect), iputils-ping, iperf3, tcpdump, python3 (bench's JSON), gcc (ceiling.sh).
set -euo pipefail
want=()
have() { command -v "$1" >/dev/null 2>&1; }
have ip || want+=(iproute2)
have ping || want+=(iputils-ping)
have iperf3 || want+=(iperf3)
have tcpdump || want+=(tcpdump)
have python3 || want+=(python3)
have gcc || want+=(gcc)
have iptables || want+=(iptables)
if [ ${#want[@]} -gt 0 ]; then
  echo "installing: ${want[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
fi
